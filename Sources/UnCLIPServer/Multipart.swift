import Foundation
import Hummingbird
import MultipartKit

/// A file of a multipart form.
struct FormFile: Sendable {
    var filename: String?
    var data: [UInt8]
}

/// A `multipart/form-data` body: text fields and files, read as it streams in with bounded memory.
struct FormData: Sendable {
    var fields: [String: String] = [:]
    var files: [String: FormFile] = [:]

    /// Reads `body` through MultipartKit's streaming parser.
    ///
    /// Nothing beyond `maxBytes` is ever held: a declared `content-length` over it is refused before reading
    /// (`check`), and a body that grows past it is refused at the chunk that crosses the limit (413). A file part of
    /// `maxFileBytes` or more is refused as the API does (400, "less than 4 MB"). A body that ends before the closing
    /// boundary (a client that dropped, a proxy that cut it) is a 400, never a half-read form.
    static func read(_ body: RequestBody, contentType: String?, contentLength: Int?, maxBytes: Int,
                     maxFileBytes: Int) async throws -> FormData {
        let boundary = try check(contentType: contentType, contentLength: contentLength, maxBytes: maxBytes)
        let collector = Collector(maxFileBytes: maxFileBytes)
        let parser = MultipartParser(boundary: boundary)
        parser.onHeader = { name, value in collector.header(name, value) }
        parser.onBody = { chunk in collector.body(&chunk) }
        parser.onPartComplete = { collector.complete() }
        // The closing delimiter "--boundary--" must be among the body's last bytes (an epilogue is allowed, briefly).
        let closing = Array("--\(boundary)--".utf8)
        var tail: [UInt8] = []
        var total = 0
        try await readChunks(body) { chunk in
            total += chunk.readableBytes
            if total > maxBytes { throw APIError.tooLarge(limit: maxBytes) }
            do { try parser.execute(chunk) } catch {
                throw APIError(.badRequest, "The multipart/form-data body could not be parsed.", code: "invalid_multipart")
            }
            if let error = collector.error { throw error }
            tail.append(contentsOf: chunk.readableBytesView.suffix(closing.count + 64))
            if tail.count > 2 * (closing.count + 64) { tail.removeFirst(tail.count - (closing.count + 64)) }
        }
        guard !collector.partOpen, tail.firstRange(of: closing) != nil else {
            throw APIError(.badRequest, "The multipart/form-data body is truncated: it ends before its closing boundary.",
                           code: "invalid_multipart")
        }
        return collector.form
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

    /// Gathers the parser's callbacks into fields and files.
    private final class Collector {
        let maxFileBytes: Int
        var form = FormData()
        var error: APIError?
        var partOpen = false
        private var name: String?
        private var filename: String?
        private var data: [UInt8] = []

        init(maxFileBytes: Int) { self.maxFileBytes = maxFileBytes }

        func header(_ field: String, _ value: String) {
            partOpen = true
            guard field.lowercased() == "content-disposition" else { return }
            name = Self.parameter("name", of: value)
            filename = Self.parameter("filename", of: value)
        }

        func body(_ chunk: inout ByteBuffer) {
            partOpen = true
            guard error == nil else { return }
            data.append(contentsOf: chunk.readableBytesView)
            if filename != nil, data.count >= maxFileBytes {
                error = .invalid(name ?? "image", "Uploaded image must be a PNG and less than 4 MB.", code: "invalid_image")
                data = []
            }
        }

        func complete() {
            defer { name = nil; filename = nil; data = []; partOpen = false }
            guard let name, error == nil else { return }
            if let filename {
                form.files[name] = FormFile(filename: filename, data: data)
            } else {
                form.fields[name] = String(decoding: data, as: UTF8.self)
            }
        }

        /// `name="value"` of a Content-Disposition header (quotes optional).
        static func parameter(_ key: String, of header: String) -> String? {
            for item in header.split(separator: ";") {
                let pair = item.trimmingCharacters(in: .whitespaces)
                guard pair.lowercased().hasPrefix(key + "=") else { continue }
                return String(pair.dropFirst(key.count + 1)).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
            return nil
        }
    }
}
