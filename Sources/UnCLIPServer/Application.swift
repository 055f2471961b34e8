import Foundation
import Hummingbird
import NIOCore
import Logging
import ServiceLifecycle
import UnCLIPTensor

/// The server: the router of `buildRouter` on a Hummingbird HTTP/1 server at the configured address, with the
/// `url` files' sweeper beside it. Run it in a `ServiceGroup` for graceful shutdown (as `unclip serve` does).
public func buildApplication(service: ImageService, logger: Logger,
                             onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) -> some ApplicationProtocol {
    let c = service.configuration
    let idle = TimeAmount.milliseconds(Int64(c.idleTimeout * 1000))
    return Application(router: buildRouter(service: service), server: .http1(configuration: .init(idleTimeout: idle)),
                       configuration: .init(address: .hostname(c.host, port: c.port), serverName: "unclip"),
                       services: [FileSweeper(files: service.files), IdleTrimmer(service: service)],
                       onServerRunning: onServerRunning, logger: logger)
}

/// Deletes expired `url` files every minute, even when nothing new is saved.
struct FileSweeper: Service {
    let files: FileStore

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while true {
                try await Task.sleep(for: .seconds(60))
                files.sweep()
            }
        }
    }
}

/// For the first seconds of quiet after jobs, gives the memory that the model and the answers' threads freed back to
/// the system each second (the model returns its own scratch memory itself; an answer's buffers are freed only once
/// written, after its job ended), so an idle server's RSS is its model's and a second round of load starts where the
/// first did.
struct IdleTrimmer: Service {
    let service: ImageService
    /// Quiet seconds after the last job during which the allocator is trimmed.
    static let quietSeconds = 3

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var seen = service.jobsFinished, quiet = Self.quietSeconds
            while true {
                try await Task.sleep(for: .seconds(1))
                let finished = service.jobsFinished
                if finished != seen || service.model.queued > 0 {
                    seen = finished
                    quiet = 0
                } else if quiet < Self.quietSeconds {
                    quiet += 1
                    BufferPool.returnFreedMemoryToSystem()
                }
            }
        }
    }
}
