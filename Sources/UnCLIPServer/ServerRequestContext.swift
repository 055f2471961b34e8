import Hummingbird
import Logging

/// The request context of the server: Hummingbird's core storage and the request's id.
public struct ServerRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The id echoed as `x-request-id` and logged with every line of this request.
    public var requestID = ""

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }
}
