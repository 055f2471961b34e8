import Foundation
import Hummingbird

/// The web page (`Web/`: plain HTML, CSS and JavaScript, no build step, nothing from outside), read once at start.
struct WebAssets: Sendable {
    static let types = ["html": "text/html; charset=utf-8", "css": "text/css; charset=utf-8",
                        "js": "text/javascript; charset=utf-8"]
    private let files: [String: Data]

    init() throws {
        guard let directory = Bundle.module.url(forResource: "Web", withExtension: nil) else {
            throw APIError.serverError("the web page's resources (Web/) are missing from this build")
        }
        var files: [String: Data] = [:]
        for url in try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
        where Self.types[url.pathExtension] != nil {
            files[url.lastPathComponent] = try Data(contentsOf: url)
        }
        self.files = files
    }

    /// The file named `name` (one of the page's own; nothing else is reachable), or 404.
    func response(_ name: String) throws -> Response {
        guard let data = files[name], let type = Self.types[(name as NSString).pathExtension] else {
            throw APIError(.notFound, "No such file: \(name).")
        }
        return Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-cache"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}
