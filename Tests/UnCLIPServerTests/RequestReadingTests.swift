import Foundation
import UnCLIPServer
import XCTest

/// `RequestReading`, the fuzz target's entry point (Fuzz/FuzzRequest), reads bodies as the routes do: what a route
/// accepts it accepts, however the body is cut into chunks, and what a route refuses it refuses with the same 4xx.
final class RequestReadingTests: XCTestCase {
    let configuration = ServerConfiguration(filesDirectory: FileManager.default.temporaryDirectory)

    func read(_ route: RequestReading.Route, _ body: [UInt8], contentType: String?, chunk: Int = .max) async throws {
        let chunks = stride(from: 0, to: body.count, by: min(chunk, body.count)).map { Array(body[$0..<min($0 + chunk, body.count)]) }
        try await RequestReading.read(route, chunks: chunks, contentType: contentType, configuration: configuration)
    }

    func refusal(_ route: RequestReading.Route, _ body: [UInt8], contentType: String?) async -> APIError? {
        do { try await read(route, body, contentType: contentType); return nil } catch { return error as? APIError }
    }

    func testValidBodiesAreAcceptedWhateverTheChunks() async throws {
        let generation = Array(#"{"prompt": "a red circle", "n": 2, "size": "256x256"}"#.utf8)
        var form = Multipart()
        form.field("prompt", "a blue square")
        form.file("image", try testPNG(side: 16, transparentRightHalf: true))
        let body = Array(form.body.readableBytesView)
        for chunk in [1, 7, 4096, Int.max] {
            try await read(.generations, generation, contentType: "application/json", chunk: chunk)
            try await read(.edits, body, contentType: form.contentType, chunk: chunk)
            try await read(.variations, body, contentType: form.contentType, chunk: chunk)
        }
    }

    func testRefusalsAreTheRoutesOwn() async throws {
        let tooMany = await refusal(.generations, Array(#"{"prompt": "a red circle", "n": 11}"#.utf8), contentType: nil)
        XCTAssertEqual(tooMany?.param, "n")
        XCTAssertEqual(tooMany?.status.code, 400)
        let notForm = await refusal(.variations, Array("{}".utf8), contentType: "application/json")
        XCTAssertEqual(notForm?.code, "invalid_content_type")
        var form = Multipart()
        form.field("prompt", "a red circle")
        form.file("image", try testPNG(side: 16, rgbOnly: true))
        let noMask = await refusal(.edits, Array(form.body.readableBytesView), contentType: form.contentType)
        XCTAssertEqual(noMask?.param, "image")  // an opaque image and no mask: nothing to repaint is marked
        let truncated = await refusal(.variations, Array(form.body.readableBytesView.dropLast(20)), contentType: form.contentType)
        XCTAssertEqual(truncated?.code, "invalid_multipart")
        let huge = await refusal(.generations, Array(repeating: UInt8(ascii: " "), count: configuration.maxJSONBytes + 1), contentType: nil)
        XCTAssertEqual(huge?.status.code, 413)
    }
}
