import Foundation
import HTTPTypes
import Hummingbird
import Logging
import UnCLIPModels

/// An error answered in the OpenAI API's shape: `{"error": {"message", "type", "param", "code"}}`.
///
/// Every non-2xx answer of the server is one of these, so the official clients raise their own exception classes
/// (400 BadRequestError, 401 AuthenticationError, 429 RateLimitError, …) with the message shown to the user.
public struct APIError: Error, Sendable, Equatable {
    public var status: HTTPResponse.Status
    public var message: String
    public var type: String
    /// The request field at fault, when there is one.
    public var param: String?
    public var code: String?
    /// Extra response headers (`retry-after` on 429).
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ message: String, type: String = "invalid_request_error",
                param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    /// A 400 naming `param`, the API's answer to any field that breaks its rules.
    public static func invalid(_ param: String, _ message: String, code: String? = nil) -> APIError {
        APIError(.badRequest, message, param: param, code: code)
    }

    static func tooLarge(limit: Int) -> APIError {
        APIError(.contentTooLarge, "The request body is larger than the limit of \(limit) bytes.", code: "request_too_large")
    }

    static func busy(_ busy: ModelBusy, retryAfter seconds: Int) -> APIError {
        var error = APIError(.tooManyRequests,
                             "The server is at capacity (\(busy.queued) requests running or waiting). Please retry after \(seconds) s.",
                             type: "requests", code: "rate_limit_exceeded")
        error.headers[.retryAfter] = String(seconds)
        return error
    }

    static let unauthorized = APIError(
        .unauthorized, "Incorrect API key provided. Pass it as 'Authorization: Bearer KEY'.", code: "invalid_api_key")

    static func serverError(_ message: String) -> APIError {
        APIError(.internalServerError, message, type: "server_error")
    }

    /// The error as the API's JSON body; `param` and `code` are present as null when absent, as the schema requires.
    var body: [String: Any] {
        ["error": ["message": message, "type": type, "param": param ?? NSNull(), "code": code ?? NSNull()] as [String: Any]]
    }

    func response() -> Response {
        var response = jsonResponse(body, status: status)
        for field in headers { response.headers.append(field) }
        return response
    }
}

/// A JSON object (from `JSONSerialization`-compatible values) as a response.
func jsonResponse(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
    // The objects are built here from strings, numbers, arrays and dictionaries only, so serialisation cannot fail.
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    return Response(status: status, headers: [.contentType: "application/json"],
                    body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
}

/// Turns every error thrown below it into the API's error shape (`errorResponse`).
struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return errorResponse(error, request: request, logger: context.logger)
        }
    }
}

/// An error as the API's answer: `APIError` as it is, Hummingbird's `HTTPError` (404 of the router, 413 of
/// `collect(upTo:)`) in the same shape, a cancelled job as 499, anything else as 500 (and logged).
func errorResponse(_ error: any Error, request: Request, logger: Logger) -> Response {
    switch error {
    case let error as APIError:
        return error.response()
    case let error as HTTPError where error.status == .contentTooLarge:
        return APIError(.contentTooLarge, "The request body is too large.", code: "request_too_large").response()
    case let error as HTTPError:
        let message = error.body ?? (error.status == .notFound ? "Unknown route \(request.method) \(request.uri.path)." : error.status.reasonPhrase)
        return APIError(error.status, message, type: error.status.code < 500 ? "invalid_request_error" : "server_error").response()
    case is PipelineCancelled, is CancellationError:
        // The client has gone (or the server is stopping): nobody reads this answer, nginx's 499 says so in logs.
        return APIError(HTTPResponse.Status(code: 499, reasonPhrase: "Client Closed Request"), "The request was cancelled.",
                        type: "server_error", code: "cancelled").response()
    default:
        logger.error("internal error", metadata: ["error": "\(error)"])
        return APIError.serverError("The server had an error while processing your request.").response()
    }
}
