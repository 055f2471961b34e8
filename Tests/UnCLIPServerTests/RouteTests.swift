import Foundation
import Hummingbird
import HummingbirdTesting
import UnCLIPImage
import UnCLIPModels
@testable import UnCLIPServer
import UnCLIPShapesModel
import XCTest

/// Every route, in process (`.router`) and once over a socket (`.live`), on the embedded model with few steps.
final class RouteTests: XCTestCase {
    /// Two steps per stage: the routes are under test here, not the images.
    let fast: [String: Any] = ["steps": 2, "seed": 7]

    func testHealthModelsPageAndMetrics() async throws {
        let app = makeApp(try makeService())
        try await app.test(.router) { client in
            let health = try await client.get("/health")
            XCTAssertEqual(health.status, .ok)
            XCTAssertEqual(try json(health)["status"] as? String, "ok")

            let models = try json(try await client.get("/v1/models"))
            let ids = (models["data"] as? [[String: Any]])?.compactMap { $0["id"] as? String }
            XCTAssertEqual(Set(ids ?? []), ["dall-e-2", "shapes-unclip"])
            let response1 = try await client.get("/v1/models/dall-e-2")
            XCTAssertEqual(try json(response1)["id"] as? String, "dall-e-2")
            try assertAPIError(try await client.get("/v1/models/dall-e-3"), .notFound, param: "model")

            let page = try await client.get("/")
            XCTAssertEqual(page.status, .ok)
            XCTAssertEqual(page.headers[.contentType], "text/html; charset=utf-8")
            XCTAssertTrue(String(buffer: page.body).contains("<script src=\"/web/app.js\">"))
            for asset in ["app.js", "style.css"] {
                let response = try await client.get("/web/\(asset)")
                XCTAssertEqual(response.status, .ok, asset)
            }
            try assertAPIError(try await client.get("/web/..%2FPackage.swift"), .notFound)
            try assertAPIError(try await client.get("/web/index.htm"), .notFound)

            try assertAPIError(try await client.get("/v1/nothing-here"), .notFound)
            let metrics = try await client.get("/metrics")
            XCTAssertEqual(metrics.status, .ok)
            let text = String(buffer: metrics.body)
            XCTAssertTrue(text.contains(#"unclip_requests_total{route="/health",status="200"} 1"#), text)
            XCTAssertTrue(text.contains(#"status="404""#), text)
            XCTAssertTrue(text.contains("unclip_queue_depth 0"), text)
        }
    }

    func testGenerationsBothFormatsRequestIDAndDeterminism() async throws {
        let service = try makeService()
        let app = makeApp(service)
        try await app.test(.router) { client in
            var body = fast
            body["prompt"] = "a red circle"
            body["n"] = 2
            body["size"] = "256x256"
            body["response_format"] = "b64_json"
            body["unknown_field"] = ["ignored": true]
            body["quality"] = "standard"
            let first = try await client.post("/v1/images/generations", json: body, headers: [.requestID: "abc-123"])
            XCTAssertEqual(first.headers[.requestID], "abc-123")
            XCTAssertNotNil(first.headers[.processingMS])
            let pngs = try images(first)
            XCTAssertEqual(pngs.count, 2)
            XCTAssertTrue(pngs.allSatisfy { $0.width == 256 && $0.height == 256 })
            // Same seed, same images.
            let response2 = try await client.post("/v1/images/generations", json: body)
            XCTAssertEqual(try images(response2), pngs)

            body["response_format"] = "url"
            body["n"] = 1
            body["size"] = nil  // the API's default, 1024x1024
            let answer = try await client.post("/v1/images/generations", json: body)
            XCTAssertTrue(answer.headers[.requestID]?.hasPrefix("req_") ?? false)
            let url = try XCTUnwrap((try json(answer)["data"] as? [[String: Any]])?.first?["url"] as? String)
            let path = try XCTUnwrap(URLComponents(string: url)?.path)
            XCTAssertTrue(path.hasPrefix("/v1/images/files/") && path.hasSuffix(".png"), path)
            let file = try await client.get(path)
            XCTAssertEqual(file.status, .ok)
            XCTAssertEqual(file.headers[.contentType], "image/png")
            let image = try RGBImage(data: Data(file.body.readableBytesView))
            XCTAssertEqual(image.width, 1024)
            try assertAPIError(try await client.get("/v1/images/files/" + String(repeating: "0", count: 32) + ".png"), .notFound)
            try assertAPIError(try await client.get("/v1/images/files/..%2F..%2Fetc%2Fpasswd"), .notFound)

            let metrics = String(buffer: try await client.get("/metrics").body)
            XCTAssertTrue(metrics.contains(#"unclip_images_generated_total{operation="generations"} 5"#), metrics)
            XCTAssertTrue(metrics.contains("unclip_image_seconds_count 5"), metrics)
        }
    }

    func testVariationsEditsInterpolationsTextDiffs() async throws {
        let app = makeApp(try makeService())
        try await app.test(.router) { client in
            var form = Multipart()
            form.file("image", try testPNG())
            form.field("n", "2"); form.field("size", "256x256"); form.field("response_format", "b64_json")
            form.field("steps", "2"); form.field("seed", "3")
            let response3 = try await client.post("/v1/images/variations", form: form)
            XCTAssertEqual(try images(response3).count, 2)

            // The paper's variations (DDIM inversion at η) when `eta` is sent.
            form.field("eta", "0.5")
            let response4 = try await client.post("/v1/images/variations", form: form)
            XCTAssertEqual(try images(response4).count, 2)

            // An edit whose mask is the image's own alpha, then one with a separate mask.
            var edit = Multipart()
            edit.file("image", try testPNG(transparentRightHalf: true))
            edit.field("prompt", "a red circle to the left of a green triangle")
            edit.field("response_format", "b64_json"); edit.field("size", "256x256"); edit.field("steps", "2")
            let response5 = try await client.post("/v1/images/edits", form: edit)
            XCTAssertEqual(try images(response5).count, 1)
            var masked = Multipart()
            masked.file("image", try testPNG(rgbOnly: true))
            masked.file("mask", try testPNG(transparentRightHalf: true), filename: "mask.png")
            masked.field("prompt", "a red circle"); masked.field("response_format", "b64_json"); masked.field("steps", "2")
            let response6 = try await client.post("/v1/images/edits", form: masked)
            XCTAssertEqual(try images(response6).first?.width, 1024)

            var interpolation = Multipart()
            interpolation.file("image", try testPNG())
            interpolation.file("image2", try testPNG(side: 64))
            interpolation.field("n", "3"); interpolation.field("steps", "2"); interpolation.field("size", "256x256")
            interpolation.field("response_format", "b64_json")
            let strip = try await client.post("/v1/images/interpolations", form: interpolation)
            XCTAssertEqual(try images(strip).count, 3)
            let thetas = (try json(strip)["data"] as? [[String: Any]])?.compactMap { $0["theta"] as? Double }
            XCTAssertEqual(thetas, [0, 0.5, 1])

            var diff = Multipart()
            diff.file("image", try testPNG())
            diff.field("from", "a red circle"); diff.field("to", "a blue circle"); diff.field("theta", "0.4")
            diff.field("steps", "2"); diff.field("size", "256x256"); diff.field("response_format", "b64_json")
            let diffed = try await client.post("/v1/images/text-diffs", form: diff)
            XCTAssertEqual(try images(diffed).count, 1)
            XCTAssertEqual((try json(diffed)["data"] as? [[String: Any]])?.first?["theta"] as? Double ?? 0, 0.4, accuracy: 1e-6)
        }
    }

    func testJobProgressRoute() async throws {
        let service = try makeService()
        let app = makeApp(service)
        try await app.test(.router) { client in
            var body = fast
            body["prompt"] = "a blue square"
            body["response_format"] = "b64_json"
            let answer = try await client.post("/v1/images/generations", json: body, headers: [.jobID: "page-job-1"])
            XCTAssertEqual(answer.headers[.jobID], "page-job-1")
            let job = try json(try await client.get("/v1/jobs/page-job-1"))
            XCTAssertEqual(job["status"] as? String, "succeeded")
            XCTAssertEqual(job["stage"] as? String, "super_res")
            XCTAssertEqual(job["stages_done"] as? Int, 2)  // prior, decoder, then super-resolution
            let response7 = try await client.get("/v1/jobs/not-started-yet")
            XCTAssertEqual(try json(response7)["status"] as? String, "pending")
            try assertAPIError(try await client.get("/v1/jobs/a.b"), .badRequest, param: "id")
            // A server-chosen id when the client sends none (or a bad one).
            let other = try await client.post("/v1/images/generations", json: body, headers: [.jobID: "../x"])
            XCTAssertTrue(other.headers[.jobID]?.hasPrefix("job_") ?? false)
        }
    }

    func testAPIKeys() async throws {
        let app = makeApp(try makeService { $0.apiKeys = ["sk-first", "sk-second"] })
        try await app.test(.router) { client in
            let error = try assertAPIError(try await client.get("/v1/models"), .unauthorized)
            XCTAssertEqual(error["code"] as? String, "invalid_api_key")
            try assertAPIError(try await client.get("/v1/models", headers: [.authorization: "Bearer sk-firs"]), .unauthorized)
            try assertAPIError(try await client.get("/v1/models", headers: [.authorization: "sk-first"]), .unauthorized)
            try assertAPIError(try await client.post("/v1/images/generations", json: ["prompt": "x"]), .unauthorized)
            let response8 = try await client.get("/v1/models", headers: [.authorization: "Bearer sk-second"])
            XCTAssertEqual(response8.status, .ok)
            let response9 = try await client.get("/health")
            XCTAssertEqual(response9.status, .ok)
            let response10 = try await client.get("/")
            XCTAssertEqual(response10.status, .ok)
        }
        let keys = APIKeyMiddleware<ServerRequestContext>(keys: ["abc", "abcd"])
        XCTAssertTrue(keys.accepts(Array("abc".utf8)))
        XCTAssertTrue(keys.accepts(Array("abcd".utf8)))
        XCTAssertFalse(keys.accepts(Array("ab".utf8)))
        XCTAssertFalse(keys.accepts(Array("abcde".utf8)))
        XCTAssertFalse(keys.accepts([]))
    }

    /// Past the queue's capacity: 429 in the API's shape, with retry-after.
    func testBusyModelAnswers429WithRetryAfter() async throws {
        let narrow = try UnCLIPModel(directory: try XCTUnwrap(EmbeddedModel.url), maxWaiting: 0)
        let service = try makeService(model: narrow)
        let app = makeApp(service)
        try await app.test(.router) { client in
            let slow: [String: Any] = ["prompt": "a red circle", "steps": 200, "n": 2, "response_format": "b64_json"]
            let running = Task { try await client.post("/v1/images/generations", json: slow) }
            while narrow.queued == 0 { try await Task.sleep(for: .milliseconds(10)) }
            let refused = try await client.post("/v1/images/generations", json: ["prompt": "a red circle"])
            let error = try assertAPIError(refused, .tooManyRequests)
            XCTAssertEqual(error["code"] as? String, "rate_limit_exceeded")
            XCTAssertGreaterThanOrEqual(Int(refused.headers[.retryAfter] ?? "") ?? 0, 1)
            let finished = try await running.value
            XCTAssertEqual(finished.status, .ok)
        }
    }

    /// The same router over a real socket, watching for hang-ups (so each job route's answer closes its connection).
    func testLiveServer() async throws {
        let app = makeApp(try makeService { $0.cancelOnDisconnect = true })
        try await app.test(.live) { client in
            let answer = try await client.post("/v1/images/generations",
                                               json: ["prompt": "a green triangle", "steps": 2, "response_format": "b64_json", "size": "256x256"])
            XCTAssertEqual(try images(answer).count, 1)
            XCTAssertEqual(answer.headers[.connection], "close")
        }
        try await app.test(.live) { client in
            _ = try assertAPIError(try await client.post("/v1/images/generations", json: ["n": 1]), .badRequest, param: "prompt")
        }
    }
}
