#if Server
import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import UnCLIPModels
import UnCLIPServer
import UnCLIPTensor

/// `unclip serve`: the OpenAI Images API (DALL·E 2) over HTTP, with a web page (docs/serving.md).
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the OpenAI Images API (generations, edits, variations) and a web page over HTTP.",
        discussion: """
            Point the official openai client's base_url at http://HOST:PORT/v1 and its images.generate, \
            images.edit and images.create_variation work unchanged; the page is at http://HOST:PORT/. One job runs \
            at a time on the model (generation requests waiting with the same settings share one batch of up to \
            --max-batch images); --max-waiting more wait, beyond that the answer is 429 with retry-after. \
            SIGTERM or SIGINT stops accepting, lets running and queued jobs finish for --grace-period seconds, \
            cancels what is left and exits 0. See docs/serving.md.
            """)

    @OptionGroup var model: ModelOptions

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port; the one chosen is printed).")
    var port = 8080

    @Option(help: ArgumentHelp("Directory of the PNGs behind url responses (replicas may share one).", valueName: "dir"))
    var filesDir = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-files").path

    @Option(help: "Most megabytes of url PNGs kept (the oldest go first).")
    var filesCapMb = 2048

    @Option(help: ArgumentHelp("A file of accepted API keys, one per line; without it no key is needed.", valueName: "file"))
    var apiKeyFile: String?

    @Option(help: "Requests that may wait behind the running one before new ones get 429.")
    var maxWaiting = 16

    @Option(help: "Most images of generation requests with the same settings run as one batch (1: each request alone).")
    var maxBatch = 8

    @Option(help: ArgumentHelp("The largest side the model draws for a request (default: the model's default size, the embedded model's 128; 512 runs its second upsampler for 512 and 1024 requests, about 2 s more an image). Images are resized to the requested square.", valueName: "px"))
    var maxDrawSize: Int?

    @Option(help: "Seconds a connection may send nothing while its request is read, or between requests, before it is closed.")
    var idleTimeout: Double = 60

    @Option(help: "Seconds SIGTERM/SIGINT waits for running and queued jobs before cancelling them.")
    var gracePeriod: Double = 30

    @Option(help: ArgumentHelp("Scheme and host that url responses start with (default: the request's Host).", valueName: "url"))
    var publicUrl: String?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0…65535 (got \(port))") }
        guard maxWaiting >= 0 else { throw ValidationError("--max-waiting must be ≥ 0 (got \(maxWaiting))") }
        guard (1...64).contains(maxBatch) else { throw ValidationError("--max-batch must be in 1…64 (got \(maxBatch))") }
        guard idleTimeout > 0 && idleTimeout.isFinite else { throw ValidationError("--idle-timeout must be > 0 seconds (got \(idleTimeout))") }
        guard filesCapMb >= 1 else { throw ValidationError("--files-cap-mb must be at least 1 (got \(filesCapMb))") }
        guard gracePeriod >= 0 && gracePeriod.isFinite else { throw ValidationError("--grace-period must be ≥ 0 (got \(gracePeriod))") }
        if let maxDrawSize, !(1...SamplingOptions.maxSize).contains(maxDrawSize) {
            throw ValidationError("--max-draw-size must be in 1 … \(SamplingOptions.maxSize) pixels (got \(maxDrawSize))")
        }
    }

    func run() throws {
        // A long-running process: one allocator arena, so idle trims return the whole free heap
        // (BufferPool.limitAllocatorArenas).
        BufferPool.limitAllocatorArenas(1)
        var configuration = ServerConfiguration(filesDirectory: URL(fileURLWithPath: filesDir))
        configuration.host = host
        configuration.port = port
        configuration.filesByteLimit = filesCapMb << 20
        configuration.maxWaiting = maxWaiting
        configuration.maxBatchImages = maxBatch
        configuration.idleTimeout = idleTimeout
        configuration.gracePeriod = gracePeriod
        configuration.publicBaseURL = publicUrl.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        if let apiKeyFile {
            let text: String
            do { text = try String(contentsOfFile: apiKeyFile, encoding: .utf8) } catch {
                throw ValidationError("--api-key-file: cannot read \(apiKeyFile): \(error.localizedDescription)")
            }
            configuration.apiKeys = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("#") }
            guard !configuration.apiKeys.isEmpty else { throw ValidationError("--api-key-file: \(apiKeyFile) holds no key") }
        }
        configuration.maxDrawSize = maxDrawSize
        let pipeline = try model.pipeline()
        if let maxDrawSize, !pipeline.imageSizes.contains(maxDrawSize) {
            throw ValidationError("--max-draw-size \(maxDrawSize): \(pipeline.name) draws \(pipeline.imageSizes.map(String.init).joined(separator: ", ")) px images; give one of those")
        }
        let name = pipeline.directory?.url.lastPathComponent ?? "unclip"
        let shared = UnCLIPModel(pipeline, maxWaiting: maxWaiting, maxBatchImages: maxBatch)
        let service = try ImageService(model: shared, modelName: name, configuration: configuration)
        // ArgumentParser runs this synchronously; the server is async, so the main thread waits for it.
        let outcome = ServeOutcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do { try await serve(service, outcome) } catch { outcome.error = error }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw error }
    }

    private func serve(_ service: ImageService, _ outcome: ServeOutcome) async throws {
        var logger = Logger(label: "unclip.serve")
        logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .info
        let keyed = service.configuration.apiKeys.isEmpty ? "no API key needed" : "API keys required"
        let app = buildApplication(service: service, logger: logger) { channel in
            let port = channel.localAddress?.port ?? service.configuration.port
            outcome.started = true
            print("unclip serve: listening on http://\(service.configuration.host):\(port) (model \(service.modelName), \(keyed))")
            fflush(stdout)
        }
        var group = ServiceGroupConfiguration(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        group.maximumGracefulShutdownDuration = .milliseconds(Int64(service.configuration.gracePeriod * 1000))
        do {
            try await ServiceGroup(configuration: group).run()
        } catch where outcome.started {
            // Past the grace period the group cancels what is left: that is the shutdown we asked for, not a failure.
            logger.warning("stopped after the grace period; unfinished jobs were cancelled", metadata: ["error": "\(error)"])
        }
        print("unclip serve: stopped")
    }
}

/// What the server task tells the waiting main thread: whether the server came up, and the error that ended it.
/// Written before `done.signal()` and read after `done.wait()` (and `started` once, before any shutdown).
private final class ServeOutcome: @unchecked Sendable {
    var started = false
    var error: Error?
}
#endif
