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

/// Once the server has been idle for a second after answering jobs, gives the memory that the answers' threads
/// freed back to the system (the model returns its own scratch memory itself), so an idle server's RSS is its
/// model's and a second round of load starts where the first did.
struct IdleTrimmer: Service {
    let service: ImageService

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var trimmedAt = -1
            while true {
                try await Task.sleep(for: .seconds(1))
                let finished = service.jobsFinished
                if finished != trimmedAt && service.model.queued == 0 {
                    BufferPool.returnFreedMemoryToSystem()
                    trimmedAt = finished
                }
            }
        }
    }
}
