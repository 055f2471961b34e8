import Hummingbird
import Logging
import NIOCore

/// The request context of the server: Hummingbird's core storage plus the connection, whose closing cancels the
/// request's job (`cancellingOnClose`).
public struct ServerRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The client's connection (in router tests, a testing channel that never closes).
    public let channel: any Channel
    /// The id echoed as `x-request-id` and logged with every line of this request.
    public var requestID = ""

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}
