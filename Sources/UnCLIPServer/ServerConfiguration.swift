import Foundation

/// Everything `unclip serve` can be told; every default written once, here.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Where `url` responses' PNGs live; replicas behind one proxy share it.
    public var filesDirectory: URL
    /// How long a `url` stays valid (the API's 60 minutes).
    public var fileLifetime: TimeInterval = 3600
    /// The most bytes of PNGs kept for `url` responses; the oldest go first.
    public var filesByteLimit = 2 << 30
    /// Accepted API keys (`Authorization: Bearer KEY`); empty: no key needed.
    public var apiKeys: [String] = []
    /// The scheme and host that `url`s start with (e.g. behind a proxy); default: the request's own Host.
    public var publicBaseURL: String?
    /// The most requests waiting behind the running one before new ones get 429.
    public var maxWaiting = 16
    /// The most images of generation requests with the same settings run as one batch (1: no shared batches).
    public var maxBatchImages = 8
    /// The largest side the model draws for a request; nil: the model's default size (the embedded model's 128). A
    /// request for a larger square gets the smallest size the model draws at or above it, up to this, resized.
    public var maxDrawSize: Int?
    /// A connection that sends nothing for this long while its request is being read, or between requests, is
    /// closed (a stalled upload, an idle keep-alive); a running job's connection is not.
    public var idleTimeout: TimeInterval = 60
    /// Bodies larger than these are refused with 413 before they are read whole.
    public var maxJSONBytes = 1 << 20
    public var maxMultipartBytes = 9 << 20
    /// The largest side of an uploaded PNG, checked on its header before decoding (the PNG-bomb guard).
    public var maxInputSide = 2048
    /// Cancel a job when its client's connection closes, seen as the end of the connection's inbound stream
    /// (Hummingbird's `consumeWithCancellationOnInboundClose`). Needs a real connection: router tests, whose
    /// requests have none, turn it off.
    public var cancelOnDisconnect = true
    /// How long SIGTERM / SIGINT wait for running and queued jobs before cancelling them.
    public var gracePeriod: TimeInterval = 30

    public init(filesDirectory: URL) { self.filesDirectory = filesDirectory }
}
