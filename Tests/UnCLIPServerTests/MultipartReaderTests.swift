import Foundation
@testable import UnCLIPServer
import XCTest

/// The server's multipart parser: what clients send reads back whole however the network cuts it, and what is
/// malformed or oversized is a 400 naming why, never a trap (the MultipartKit crash `FuzzRequest` found is pinned).
final class MultipartReaderTests: XCTestCase {
    let boundary = "xYz-boundary"

    func parse(_ body: [UInt8], chunk: Int = .max, maxFileBytes: Int = 1 << 20) throws -> FormData {
        var reader = MultipartReader(boundary: boundary, maxFileBytes: maxFileBytes)
        for start in stride(from: 0, to: body.count, by: min(chunk, max(body.count, 1))) {
            try reader.feed(body[start..<min(start + chunk, body.count)])
        }
        return try reader.finish()
    }

    func refusal(_ body: [UInt8], maxFileBytes: Int = 1 << 20) -> APIError? {
        do { _ = try parse(body, maxFileBytes: maxFileBytes); return nil } catch { return error as? APIError }
    }

    func part(_ name: String, _ content: [UInt8], filename: String? = nil) -> [UInt8] {
        let disposition = "form-data; name=\"\(name)\"" + (filename.map { "; filename=\"\($0)\"" } ?? "")
        return Array("--\(boundary)\r\nContent-Disposition: \(disposition)\r\nContent-Type: image/png\r\n\r\n".utf8) + content + Array("\r\n".utf8)
    }

    var closing: [UInt8] { Array("--\(boundary)--\r\n".utf8) }

    func testFieldsAndFilesReadBackWholeAtEveryChunkSize() throws {
        // File bytes that begin the delimiter again and again without completing it, and a CR at the very end.
        let tricky = Array("\r\n--xYz-bound\r\n-\r\r\n--xYz-boundar".utf8) + [0x00, 0xFF, 0x0D]
        let body = Array("preamble to drop\r\n".utf8) + part("prompt", Array("a red circle".utf8))
            + part("image", tricky, filename: "café.png") + part("n", Array("2".utf8)) + closing + Array("epilogue".utf8)
        for chunk in [1, 2, 3, 5, 13, 64, body.count] {
            let form = try parse(body, chunk: chunk)
            XCTAssertEqual(form.fields, ["prompt": "a red circle", "n": "2"], "chunk \(chunk)")
            XCTAssertEqual(form.files["image"]?.data, tricky, "chunk \(chunk)")
            XCTAssertEqual(form.files["image"]?.filename, "café.png")
        }
    }

    func testADelimiterMayOpenTheBodyAndPaddingMayFollowIt() throws {
        let body = Array("--\(boundary) \t\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n".utf8) + closing
        XCTAssertEqual(try parse(body).fields, ["a": "x"])
        XCTAssertEqual(try parse(Array("--\(boundary)--".utf8)).fields, [:])  // an empty form
    }

    func testMalformedBodiesAreRefusedWithTheReason() {
        let highByteName = Array("--\(boundary)\r\nContent-Disposi".utf8) + [0xDA, 0xFF] + Array("tion: form-data; name=a\r\n\r\nx\r\n".utf8) + closing
        let cases: [(String, [UInt8])] = [
            ("a header name byte ≥ 0x80 (MultipartKit 4.7.1 trapped on it)", highByteName),
            ("a header line with no colon", Array("--\(boundary)\r\nno colon here\r\n\r\nx\r\n".utf8) + closing),
            ("a header line ended by LF alone", Array("--\(boundary)\r\nContent-Disposition: form-data; name=a\n\r\nx\r\n".utf8) + closing),
            ("text after a delimiter", Array("--\(boundary)junk\r\n\r\nx\r\n".utf8) + closing),
            ("one dash after a delimiter", Array("--\(boundary)-x".utf8)),
            ("a header line of 9 KiB", Array("--\(boundary)\r\nX-Long: \(String(repeating: "a", count: 9 << 10))\r\n\r\n".utf8) + closing),
            ("17 headers", Array("--\(boundary)\r\n\(String(repeating: "A: b\r\n", count: 17))\r\nx\r\n".utf8) + closing),
            ("65 parts", (0..<65).flatMap { part("f\($0)", [1]) } + closing),
            ("a long epilogue", closing + Array(repeating: 0x41, count: 2000)),
        ]
        for (what, body) in cases {
            let error = refusal(body)
            XCTAssertEqual(error?.status.code, 400, what)
            XCTAssertEqual(error?.code, "invalid_multipart", what)
        }
    }

    func testTruncatedBodiesAndOversizedPartsAreRefused() {
        let body = part("image", Array(repeating: 7, count: 100), filename: "a.png") + closing
        for cut in [0, 10, 60, body.count - 3] {
            let error = refusal(Array(body.prefix(cut)))
            XCTAssertEqual(error?.code, "invalid_multipart", "cut at \(cut)")
            XCTAssertTrue(error?.message.contains("truncated") ?? false, "cut at \(cut)")
        }
        XCTAssertEqual(refusal(body, maxFileBytes: 100)?.code, "invalid_image")
        XCTAssertNil(refusal(body, maxFileBytes: 101))
        XCTAssertEqual(refusal(part("prompt", Array(repeating: 0x61, count: 100)) + closing, maxFileBytes: 50)?.code, "field_too_long")
    }
}
