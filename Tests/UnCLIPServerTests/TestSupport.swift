import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import UnCLIPImage
import UnCLIPModels
import UnCLIPServer
import UnCLIPShapesModel
import XCTest

/// The embedded model, loaded once for every test (jobs queue on it like a server's requests).
let sharedModel: UnCLIPModel = {
    guard let url = EmbeddedModel.url else { fatalError("the embedded model's resources are missing") }
    do { return try UnCLIPModel(directory: url, maxWaiting: 8) } catch { fatalError("cannot load the embedded model: \(error)") }
}()

/// A service on `model` with its files in a fresh temporary directory.
func makeService(model: UnCLIPModel = sharedModel, configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> ImageService {
    let files = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-server-tests-\(UUID().uuidString)")
    var configuration = ServerConfiguration(filesDirectory: files)
    configuration.cancelOnDisconnect = false  // the router-test client has no connection to watch
    configure(&configuration)
    return try ImageService(model: model, modelName: "shapes-unclip", configuration: configuration)
}

func makeApp(_ service: ImageService) -> some ApplicationProtocol {
    var logger = Logger(label: "unclip.tests")
    logger.logLevel = .warning
    return buildApplication(service: service, logger: logger)
}

/// A multipart/form-data body as a client library writes it.
struct Multipart {
    let boundary = "unclip-test-\(UUID().uuidString)"
    private(set) var bytes: [UInt8] = []

    var contentType: String { "multipart/form-data; boundary=\(boundary)" }

    mutating func field(_ name: String, _ value: String) {
        bytes += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8)
    }

    mutating func file(_ name: String, _ data: [UInt8], filename: String = "image.png") {
        bytes += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"; filename=\"\(filename)\"\r\nContent-Type: image/png\r\n\r\n".utf8)
        bytes += data + Array("\r\n".utf8)
    }

    /// The body with its closing delimiter.
    var body: ByteBuffer { ByteBuffer(bytes: bytes + Array("--\(boundary)--\r\n".utf8)) }
}

/// A square test PNG: a ShapesWorld-like red disc on white, opaque, or with the right half transparent.
func testPNG(side: Int = 128, transparentRightHalf: Bool = false, rgbOnly: Bool = false) throws -> [UInt8] {
    var pixels = [UInt8](repeating: 255, count: side * side * 3)
    for y in 0..<side { for x in 0..<side {
        let dx = x - side / 4, dy = y - side / 2
        if dx * dx + dy * dy < (side / 6) * (side / 6) { pixels[3 * (y * side + x) + 1] = 0; pixels[3 * (y * side + x) + 2] = 0 }
    } }
    let image = RGBImage(width: side, height: side, pixels: pixels)
    if rgbOnly { return Array(try image.pngData()) }
    let alpha = (0..<(side * side)).map { i -> UInt8 in transparentRightHalf && i % side >= side / 2 ? 0 : 255 }
    return Array(try AlphaImage(image: image, alpha: alpha).pngData())
}

/// The response's JSON object.
func json(_ response: TestResponse, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
    let object = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))
    return try XCTUnwrap(object as? [String: Any], "not a JSON object: \(String(buffer: response.body))", file: file, line: line)
}

/// Asserts the API's error shape — exactly {"error": {message, type, param, code}} — and returns the error.
@discardableResult
func assertAPIError(_ response: TestResponse, _ status: HTTPResponse.Status, param: String? = nil,
                    file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
    XCTAssertEqual(response.status, status, String(buffer: response.body), file: file, line: line)
    XCTAssertEqual(response.headers[.contentType], "application/json", file: file, line: line)
    let body = try json(response, file: file, line: line)
    XCTAssertEqual(Array(body.keys), ["error"], file: file, line: line)
    let error = try XCTUnwrap(body["error"] as? [String: Any], file: file, line: line)
    XCTAssertEqual(Set(error.keys), ["message", "type", "param", "code"], file: file, line: line)
    XCTAssertFalse((error["message"] as? String ?? "").isEmpty, file: file, line: line)
    XCTAssertNotNil(error["type"] as? String, file: file, line: line)
    if let param { XCTAssertEqual(error["param"] as? String, param, "\(error)", file: file, line: line) }
    return error
}

/// The PNGs of a success body, decoded from `b64_json`.
func images(_ response: TestResponse, file: StaticString = #filePath, line: UInt = #line) throws -> [RGBImage] {
    XCTAssertEqual(response.status, .ok, String(buffer: response.body), file: file, line: line)
    let body = try json(response, file: file, line: line)
    XCTAssertNotNil(body["created"] as? Int, file: file, line: line)
    let data = try XCTUnwrap(body["data"] as? [[String: Any]], file: file, line: line)
    return try data.map { item in
        let b64 = try XCTUnwrap(item["b64_json"] as? String, "\(item.keys)", file: file, line: line)
        return try RGBImage(data: try XCTUnwrap(Data(base64Encoded: b64), file: file, line: line))
    }
}

let jsonHeaders: HTTPFields = [.contentType: "application/json"]

extension TestClientProtocol {
    /// POSTs a JSON object.
    func post(_ uri: String, json object: [String: Any], headers: HTTPFields = [:]) async throws -> TestResponse {
        var all = jsonHeaders
        all.append(contentsOf: headers)
        let data = try JSONSerialization.data(withJSONObject: object)
        return try await execute(uri: uri, method: .post, headers: all, body: ByteBuffer(bytes: data)) { $0 }
    }

    /// POSTs a multipart form.
    func post(_ uri: String, form: Multipart, headers: HTTPFields = [:]) async throws -> TestResponse {
        var all: HTTPFields = [.contentType: form.contentType]
        all.append(contentsOf: headers)
        return try await execute(uri: uri, method: .post, headers: all, body: form.body) { $0 }
    }

    func get(_ uri: String, headers: HTTPFields = [:]) async throws -> TestResponse {
        try await execute(uri: uri, method: .get, headers: headers) { $0 }
    }
}
