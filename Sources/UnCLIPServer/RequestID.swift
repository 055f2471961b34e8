import Foundation
import HTTPTypes
import Hummingbird
import Logging

extension HTTPField.Name {
    static let requestID = Self("x-request-id")!
    static let jobID = Self("x-unclip-job-id")!
    static let openAIVersion = Self("openai-version")!
    static let processingMS = Self("openai-processing-ms")!
}

/// Gives every request an id — the client's `x-request-id` when it is a sane one, else a new one — puts it in the
/// request's log metadata and echoes it on the answer, with the headers the OpenAI API sends; logs one line per
/// request (never its headers, so never an API key).
struct RequestIDMiddleware: RouterMiddleware {
    typealias Context = ServerRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let given = request.headers[.requestID].flatMap { JobBoard.isValidID($0) ? $0 : nil }
        context.requestID = given ?? "req_" + FileStore.newID()
        context.logger[metadataKey: "request_id"] = .string(context.requestID)
        let start = ContinuousClock.now
        var response = try await next(request, context)
        let ms = Int((ContinuousClock.now - start).seconds * 1000)
        response.headers[.requestID] = context.requestID
        response.headers[.openAIVersion] = "2020-10-01"
        response.headers[.processingMS] = String(ms)
        context.logger.info("\(request.method) \(request.uri.path) \(response.status.code)", metadata: ["ms": .stringConvertible(ms)])
        return response
    }
}

/// `Authorization: Bearer KEY` against the configured keys, compared in constant time; 401 in the API's shape.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let keys: [[UInt8]]

    init(keys: [String]) { self.keys = keys.map { Array($0.utf8) } }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !keys.isEmpty else { return try await next(request, context) }
        let header = request.headers[.authorization] ?? ""
        guard header.lowercased().hasPrefix("bearer "), accepts(Array(header.utf8.dropFirst(7))) else { throw APIError.unauthorized }
        return try await next(request, context)
    }

    /// Whether `given` is one of the keys, in time that depends on the lengths only (every key is compared).
    func accepts(_ given: [UInt8]) -> Bool {
        var found = false
        for key in keys {
            var diff: UInt8 = given.count == key.count ? 0 : 1
            for i in 0..<max(given.count, key.count) {
                diff |= (i < given.count ? given[i] : 0) ^ (i < key.count ? key[i] : 0)
            }
            found = (diff == 0) || found
        }
        return found
    }
}
