import Foundation
import Hummingbird

/// A file of a multipart form.
struct FormFile: Sendable {
    var filename: String?
    var data: [UInt8]
}

/// A `multipart/form-data` body: text fields and files, read as it streams in with bounded memory.
struct FormData: Sendable {
    var fields: [String: String] = [:]
    var files: [String: FormFile] = [:]

    /// Reads `body` with `MultipartReader`.
    ///
    /// Nothing beyond `maxBytes` is ever held: a declared `content-length` over it is refused before reading
    /// (`check`), and a body that grows past it is refused at the chunk that crosses the limit (413). A file part of
    /// `maxFileBytes` or more is refused as the API does (400, "less than 4 MB"). A body that ends before the closing
    /// boundary (a client that dropped, a proxy that cut it) is a 400, never a half-read form.
    static func read(_ body: RequestBody, contentType: String?, contentLength: Int?, maxBytes: Int,
                     maxFileBytes: Int) async throws -> FormData {
        let boundary = try check(contentType: contentType, contentLength: contentLength, maxBytes: maxBytes)
        var reader = MultipartReader(boundary: boundary, maxFileBytes: maxFileBytes)
        var total = 0
        try await readChunks(body) { chunk in
            total += chunk.readableBytes
            if total > maxBytes { throw APIError.tooLarge(limit: maxBytes) }
            try reader.feed(chunk.readableBytesView)
        }
        return try reader.finish()
    }

    /// The boundary of a multipart request, after refusing a declared length over `maxBytes` (413): what can be
    /// refused before the body is touched.
    @discardableResult
    static func check(contentType: String?, contentLength: Int?, maxBytes: Int) throws -> String {
        let boundary = try Self.boundary(of: contentType)
        if let contentLength, contentLength > maxBytes { throw APIError.tooLarge(limit: maxBytes) }
        return boundary
    }

    /// Hands each chunk of `body` to `handle`; after its first error, reads the rest and drops it, then throws.
    ///
    /// The rest is read, not left, because a job route's body comes through Hummingbird's hang-up watcher
    /// (`consumeWithCancellationOnInboundClose`), which holds the answer until the body has ended; dropped chunks are
    /// never kept. (A declared length over the limit is refused before the watcher, at once: `Routes.precheck`.) A
    /// body that stops arriving (the client hung up, or sent less than it declared) is a 400, not a server error.
    static func readChunks(_ body: RequestBody, _ handle: (ByteBuffer) throws -> Void) async throws {
        var failure: (any Error)?
        do {
            for try await chunk in body where failure == nil {
                do { try handle(chunk) } catch { failure = error }
            }
        } catch {
            throw failure ?? APIError(.badRequest, "The request body ended before it was complete.", code: "incomplete_body")
        }
        if let failure { throw failure }
    }

    /// The boundary parameter of a `multipart/form-data` content type.
    static func boundary(of contentType: String?) throws -> String {
        let parts = (contentType ?? "").split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.first?.lowercased() == "multipart/form-data" else {
            throw APIError(.badRequest, "This route expects a multipart/form-data body (got content type '\(contentType ?? "none")').",
                           code: "invalid_content_type")
        }
        for part in parts.dropFirst() where part.lowercased().hasPrefix("boundary=") {
            let value = part.dropFirst("boundary=".count).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            if !value.isEmpty && value.count <= 200 { return value }
        }
        throw APIError(.badRequest, "The multipart/form-data content type has no boundary.", code: "invalid_content_type")
    }
}
