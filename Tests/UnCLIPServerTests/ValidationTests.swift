import Foundation
import Hummingbird
import HummingbirdTesting
import UnCLIPImage
@testable import UnCLIPServer
import XCTest

/// Every validation rule of the contract, each answered with a 400 (or 413) in the API's error shape that names the
/// field, before the model is asked for anything.
final class ValidationTests: XCTestCase {
    func testGenerationFieldErrorsNameTheField() async throws {
        let app = makeApp(try makeService())
        let long = String(repeating: "a", count: 1001)
        let cases: [(body: [String: Any], param: String)] = [
            ([:], "prompt"),
            (["prompt": ""], "prompt"),
            (["prompt": 12], "prompt"),
            (["prompt": long], "prompt"),
            (["prompt": "x", "n": 0], "n"),
            (["prompt": "x", "n": 11], "n"),
            (["prompt": "x", "n": "2"], "n"),
            (["prompt": "x", "n": 1.5], "n"),
            (["prompt": "x", "n": true], "n"),
            (["prompt": "x", "size": "300x300"], "size"),
            (["prompt": "x", "size": 256], "size"),
            (["prompt": "x", "response_format": "png"], "response_format"),
            (["prompt": "x", "model": "dall-e-3"], "model"),
            (["prompt": "x", "user": 5], "user"),
            (["prompt": "x", "seed": -1], "seed"),
            (["prompt": "x", "steps": 1], "steps"),
            (["prompt": "x", "steps": 501], "steps"),
            (["prompt": "x", "prior_guidance_scale": "high"], "prior_guidance_scale"),
            (["prompt": "x", "decoder_guidance_scale": -1], "decoder_guidance_scale"),
            (["prompt": "x", "eta": -0.1], "eta"),
        ]
        try await app.test(.router) { client in
            for (body, param) in cases {
                let error = try assertAPIError(try await client.post("/v1/images/generations", json: body), .badRequest, param: param)
                XCTAssertEqual(error["type"] as? String, "invalid_request_error")
            }
            // The messages follow the API's wording.
            let n = try assertAPIError(try await client.post("/v1/images/generations", json: ["prompt": "x", "n": 11]), .badRequest)
            XCTAssertEqual(n["message"] as? String, "Invalid 'n': integer above maximum value. Expected a value <= 10, but got 11 instead.")
            let size = try assertAPIError(try await client.post("/v1/images/generations", json: ["prompt": "x", "size": "1x1"]), .badRequest)
            XCTAssertEqual(size["message"] as? String, "Invalid value: '1x1'. Supported values are: '256x256', '512x512', and '1024x1024'.")
            // Nullable fields read as their defaults; the model may be named either way.
            let ok: [String: Any] = ["prompt": "x", "n": NSNull(), "size": "256x256", "model": "shapes-unclip",
                                     "user": "u-1", "style": "vivid", "steps": 2, "response_format": "b64_json"]
            let accepted = try await client.post("/v1/images/generations", json: ok)
            XCTAssertEqual(try images(accepted).count, 1)

            for raw in ["not json", "[1, 2]", "\"prompt\"", ""] {
                let response = try await client.execute(uri: "/v1/images/generations", method: .post, headers: jsonHeaders,
                                                        body: ByteBuffer(string: raw)) { $0 }
                let error = try assertAPIError(response, .badRequest)
                XCTAssertTrue(error["param"] is NSNull, "\(error)")
            }
        }
    }

    func testUploadErrors() async throws {
        let app = makeApp(try makeService())
        try await app.test(.router) { client in
            func variation(_ build: (inout Multipart) throws -> Void) async throws -> TestResponse {
                var form = Multipart()
                try build(&form)
                return try await client.post("/v1/images/variations", form: form)
            }
            try assertAPIError(try await variation { $0.field("n", "1") }, .badRequest, param: "image")
            try assertAPIError(try await variation { $0.file("image", Array("GIF89a not a png".utf8)) }, .badRequest, param: "image")
            let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0, 0, 16]
            try assertAPIError(try await variation { $0.file("image", jpeg) }, .badRequest, param: "image")
            // Not square.
            let wide = Array(try RGBImage(width: 64, height: 32).pngData())
            try assertAPIError(try await variation { $0.file("image", wide) }, .badRequest, param: "image")
            // A PNG bomb: a valid signature and IHDR declaring 100 000 × 100 000 pixels, in 60 bytes.
            let bomb = Self.pngHeader(width: 100_000, height: 100_000) + [UInt8](repeating: 0, count: 20)
            let refused = try assertAPIError(try await variation { $0.file("image", bomb) }, .badRequest, param: "image")
            XCTAssertEqual(refused["code"] as? String, "image_too_large")
            // Within the size limit but corrupt after the header.
            let corrupt = Self.pngHeader(width: 64, height: 64) + [UInt8](repeating: 7, count: 100)
            try assertAPIError(try await variation { $0.file("image", corrupt) }, .badRequest, param: "image")
            // 4 MB or more.
            let big = try testPNG() + [UInt8](repeating: 0, count: 4 << 20)
            let tooBig = try assertAPIError(try await variation { $0.file("image", big) }, .badRequest, param: "image")
            XCTAssertEqual(tooBig["message"] as? String, "Uploaded image must be a PNG and less than 4 MB.")
            try assertAPIError(try await variation { $0.file("image", try testPNG()); $0.field("n", "eleven") }, .badRequest, param: "n")
            try assertAPIError(try await variation { $0.file("image", try testPNG()); $0.field("size", "2048x2048") }, .badRequest, param: "size")

            // Edits: the mask's rules, and an image without alpha and without a mask.
            func edit(_ build: (inout Multipart) throws -> Void) async throws -> TestResponse {
                var form = Multipart()
                form.field("prompt", "a red circle")
                try build(&form)
                return try await client.post("/v1/images/edits", form: form)
            }
            try assertAPIError(try await edit { $0.file("image", try testPNG(rgbOnly: true)) }, .badRequest, param: "image")
            try assertAPIError(try await edit { $0.file("image", try testPNG()); $0.file("mask", try testPNG(side: 64)) }, .badRequest, param: "mask")
            try assertAPIError(try await edit { $0.file("image", try testPNG()); $0.file("mask", try testPNG(rgbOnly: true)) }, .badRequest, param: "mask")
            var noPrompt = Multipart()
            noPrompt.file("image", try testPNG(transparentRightHalf: true))
            try assertAPIError(try await client.post("/v1/images/edits", form: noPrompt), .badRequest, param: "prompt")

            // The extension routes' own fields.
            var diff = Multipart()
            diff.file("image", try testPNG()); diff.field("from", "a red circle")
            try assertAPIError(try await client.post("/v1/images/text-diffs", form: diff), .badRequest, param: "to")
            diff.field("to", "a blue circle"); diff.field("theta", "1.5")
            try assertAPIError(try await client.post("/v1/images/text-diffs", form: diff), .badRequest, param: "theta")
            var interpolation = Multipart()
            interpolation.file("image", try testPNG())
            try assertAPIError(try await client.post("/v1/images/interpolations", form: interpolation), .badRequest, param: "image2")
            interpolation.file("image2", try testPNG()); interpolation.field("n", "1")
            try assertAPIError(try await client.post("/v1/images/interpolations", form: interpolation), .badRequest, param: "n")
        }
    }

    func testMalformedBodies() async throws {
        let app = makeApp(try makeService { $0.maxMultipartBytes = 1 << 20; $0.maxJSONBytes = 1 << 16 })
        try await app.test(.router) { client in
            // Truncated: the closing boundary never comes, the file stops part-way.
            var form = Multipart()
            form.file("image", try testPNG())
            let cut = ByteBuffer(bytes: Array(form.body.readableBytesView.dropLast(200)))
            let truncated = try await client.execute(uri: "/v1/images/variations", method: .post,
                                                     headers: [.contentType: form.contentType], body: cut) { $0 }
            XCTAssertEqual(try assertAPIError(truncated, .badRequest)["code"] as? String, "invalid_multipart")
            // A body without the final delimiter but with every part complete is truncated too.
            var complete = Multipart()
            complete.file("image", try testPNG())
            let unclosed = try await client.execute(uri: "/v1/images/variations", method: .post,
                                                    headers: [.contentType: complete.contentType],
                                                    body: ByteBuffer(bytes: complete.bytes)) { $0 }
            try assertAPIError(unclosed, .badRequest)
            // Not multipart at all, or no boundary.
            try assertAPIError(try await client.post("/v1/images/variations", json: ["n": 1]), .badRequest)
            let noBoundary = try await client.execute(uri: "/v1/images/edits", method: .post,
                                                      headers: [.contentType: "multipart/form-data"], body: form.body) { $0 }
            try assertAPIError(noBoundary, .badRequest)
            // Over the body limits: 413, whether the length is declared or discovered while reading.
            var huge = Multipart()
            huge.field("prompt", "x")
            huge.file("image", [UInt8](repeating: 1, count: 3 << 20))
            try assertAPIError(try await client.post("/v1/images/edits", form: huge), .contentTooLarge)
            let bigJSON = "{\"prompt\": \"" + String(repeating: "a", count: 1 << 17) + "\"}"
            let response = try await client.execute(uri: "/v1/images/generations", method: .post, headers: jsonHeaders,
                                                    body: ByteBuffer(string: bigJSON)) { $0 }
            try assertAPIError(response, .contentTooLarge)
        }
    }

    /// A PNG signature and an IHDR chunk declaring `width` × `height` (8-bit RGB).
    static func pngHeader(width: UInt32, height: UInt32) -> [UInt8] {
        func be(_ x: UInt32) -> [UInt8] { [UInt8(x >> 24), UInt8(x >> 16 & 255), UInt8(x >> 8 & 255), UInt8(x & 255)] }
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + be(13) + Array("IHDR".utf8) + be(width) + be(height)
            + [8, 2, 0, 0, 0] + be(0)
    }
}

/// The store behind `url`s: ids, expiry and the byte cap.
final class FileStoreTests: XCTestCase {
    func directory() -> URL { FileManager.default.temporaryDirectory.appendingPathComponent("unclip-files-\(UUID().uuidString)") }

    func testIDsAreRandomHexAndNothingElseReachesTheDisk() throws {
        let store = try FileStore(directory: directory())
        let ids = Set((0..<100).map { _ in FileStore.newID() })
        XCTAssertEqual(ids.count, 100)
        XCTAssertTrue(ids.allSatisfy { FileStore.isValidID($0) })
        for bad in ["../../etc/passwd", "", String(repeating: "A", count: 32), String(repeating: "0", count: 31) + "/",
                    String(repeating: "0", count: 33), String(repeating: "0", count: 31) + "\u{0}"] {
            XCTAssertFalse(FileStore.isValidID(bad), bad)
            XCTAssertNil(store.read(bad))
        }
        let id = try store.save(Data([1, 2, 3]))
        XCTAssertEqual(store.read(id), Data([1, 2, 3]))
    }

    func testExpiryAndByteCap() throws {
        let dir = directory()
        let expiring = try FileStore(directory: dir, lifetime: 0.2)
        let id = try expiring.save(Data([1]))
        XCTAssertNotNil(expiring.read(id))
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertNil(expiring.read(id))

        let capped = try FileStore(directory: directory(), byteLimit: 2500)
        var saved: [String] = []
        for _ in 0..<5 {
            saved.append(try capped.save(Data(repeating: 7, count: 1000)))
            Thread.sleep(forTimeInterval: 0.02)  // distinct modification times, oldest first
        }
        capped.sweep()
        XCTAssertLessThanOrEqual(capped.bytes, 2500)
        XCTAssertNil(capped.read(saved[0]))
        XCTAssertNotNil(capped.read(saved[4]))
    }
}
