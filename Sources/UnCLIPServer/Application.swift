import Foundation
import Hummingbird
import NIOCore
import Logging
import ServiceLifecycle

/// The server: the router of `buildRouter` on a Hummingbird HTTP/1 server at the configured address, with the
/// `url` files' sweeper beside it. Run it in a `ServiceGroup` for graceful shutdown (as `unclip serve` does).
public func buildApplication(service: ImageService, logger: Logger,
                             onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) -> some ApplicationProtocol {
    let c = service.configuration
    let idle = TimeAmount.milliseconds(Int64(c.idleTimeout * 1000))
    return Application(router: buildRouter(service: service), server: .http1(configuration: .init(idleTimeout: idle)),
                       configuration: .init(address: .hostname(c.host, port: c.port), serverName: "unclip"),
                       services: [FileSweeper(files: service.files)], onServerRunning: onServerRunning, logger: logger)
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
