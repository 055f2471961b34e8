import Foundation
import Hummingbird
import NIOCore
import Synchronization
import UnCLIPImage
import UnCLIPModels

/// The API's operations on one shared model: sampling settings from a request, the job's progress and
/// cancellation, sizing to the requested square, and the answer as `url`s or base64.
public final class ImageService: Sendable {
    public let model: UnCLIPModel
    /// The model's own name, accepted as `model` and listed by `/v1/models` beside `dall-e-2`.
    public let modelName: String
    public let configuration: ServerConfiguration
    let files: FileStore
    let jobs = JobBoard()
    let metrics = ServerMetrics()
    let web: WebAssets
    /// Recent seconds per job (moving average), for `retry-after`.
    private let jobSeconds = Locked(1.0)
    private let finished = Atomic(0)
    /// Jobs ended so far, however they ended.
    var jobsFinished: Int { finished.load(ordering: .relaxed) }

    public init(model: UnCLIPModel, modelName: String, configuration: ServerConfiguration) throws {
        self.model = model
        self.modelName = modelName
        self.configuration = configuration
        files = try FileStore(directory: configuration.filesDirectory, lifetime: configuration.fileLifetime,
                              byteLimit: configuration.filesByteLimit)
        web = try WebAssets()
    }

    /// The names `model` may take.
    var modelNames: Set<String> { ["dall-e-2", modelName] }

    // MARK: Sampling settings

    /// The model's defaults with the request's extension fields: `steps` sets the prior's and the decoder's steps
    /// (and caps the super-resolution's), the guidance scales their stages'. The size drawn is the smallest the
    /// model draws at or above the requested square, capped by `--max-draw-size` (default: the model's default size).
    func samplingOptions(_ r: ImageRequest) -> SamplingOptions {
        var o = model.defaultOptions
        o.imagesPerPrompt = r.n
        o.size = drawSize(for: r.size)
        if let steps = r.steps {
            o.priorSteps = steps
            o.decoderSteps = steps
            o.superResSteps = min(steps, o.superResSteps)
            o.laterSuperResSteps = o.laterSuperResSteps.map { min(steps, $0) }
        }
        if let g = r.priorGuidance { o.priorGuidance = g }
        if let g = r.decoderGuidance { o.decoderGuidance = g }
        return o
    }

    /// The side drawn for a request of `side` × `side` (then resized to it).
    func drawSize(for side: Int) -> Int {
        let sizes = model.imageSizes
        let cap = configuration.maxDrawSize ?? model.defaultOptions.size ?? sizes.last!
        let allowed = sizes.filter { $0 <= cap }
        return allowed.first { $0 >= side } ?? allowed.last ?? sizes[0]
    }

    /// RePaint's defaults, with the jump shortened when a request's `steps` leaves fewer decoder steps than it spans.
    func inpaintingOptions(_ options: SamplingOptions) -> InpaintingOptions {
        var o = InpaintingOptions()
        o.jumpLength = min(o.jumpLength, options.decoderSteps - 1)
        return o
    }

    /// The DDIM pass of the manipulations: 25 steps and plain inversion unless the request says otherwise (the text
    /// diff's defaults, docs/manipulations.md), η 0 so θ = 0 reconstructs the input.
    func ddimOptions(_ r: ImageRequest) -> DDIMOptions {
        DDIMOptions(steps: r.steps ?? 25, eta: r.eta ?? 0, guidance: max(1, r.decoderGuidance ?? 1),
                    superResSteps: min(r.steps ?? 7, 7), inversionRefinements: 0)
    }

    // MARK: Jobs

    /// Runs `body` on the model as job `id` (see `track`), making `images` images.
    func run(_ operation: String, job id: String, images: Int,
             _ body: @escaping @Sendable (UnCLIPPipeline, _ progress: @escaping (PipelineProgress) -> Bool) throws -> [RGBImage]) async throws -> [RGBImage] {
        try await track(operation, job: id) { report in
            try await model.run(scratch: "\(operation) \(images)") { pipeline in try body(pipeline) { report($0); return true } }
        }
    }

    /// Text → images as job `id` through the model's shared batches (`UnCLIPModel.generate`): requests waiting at
    /// the same time with the same settings run as one batch of up to `--max-batch` images.
    func generate(_ prompt: String, options: SamplingOptions, seed: UInt64, job id: String) async throws -> [RGBImage] {
        try await track("generations", job: id) { report in
            try await model.generate(prompts: [prompt], options: options, seed: seed, progress: report)
        }
    }

    /// Runs `work` as job `id`: admitted or 429, its progress on the job board, dropped at its next step when the
    /// calling task is cancelled (the client hung up), timed into the metrics.
    private func track(_ operation: String, job id: String,
                       _ work: (_ progress: @escaping @Sendable (PipelineProgress) -> Void) async throws -> [RGBImage]) async throws -> [RGBImage] {
        jobs.queue(id, operation: operation)
        let board = jobs
        let start = ContinuousClock.now
        defer { finished.add(1, ordering: .relaxed) }
        do {
            let images = try await work { board.progress(id, $0) }
            let seconds = (ContinuousClock.now - start).seconds
            jobSeconds.withLock { $0 = 0.8 * $0 + 0.2 * seconds }
            metrics.images(images.count, operation: operation, seconds: seconds)
            jobs.finish(id, .succeeded)
            return images
        } catch let busy as ModelBusy {
            jobs.finish(id, .failed, error: "busy")
            let wait = jobSeconds.withLock { $0 } * Double(busy.queued)
            throw APIError.busy(busy, retryAfter: Int(min(max(wait.rounded(.up), 1), 120)))
        } catch where error is PipelineCancelled || error is CancellationError {
            jobs.finish(id, .cancelled)
            metrics.cancelled(operation: operation)
            throw error
        } catch let error as PipelineArgumentError {
            jobs.finish(id, .failed, error: error.description)
            throw APIError(.badRequest, error.description)
        } catch {
            jobs.finish(id, .failed, error: "\(error)")
            throw error
        }
    }

    // MARK: Answers

    /// The API's success body: `created` and one `data` entry per image, each `url` or `b64_json`, resized to the
    /// requested square with the project's antialiased bicubic (Pillow's) when the model draws another size.
    func answer(_ images: [RGBImage], _ r: ImageRequest, baseURL: String, extra: [[String: Any]] = []) throws -> Response {
        var data: [[String: Any]] = []
        for (i, image) in images.enumerated() {
            let sized = image.width == r.size && image.height == r.size ? image : image.resized(width: r.size, height: r.size)
            let png = try sized.pngData()
            var item: [String: Any] = extra.indices.contains(i) ? extra[i] : [:]
            switch r.responseFormat {
            case .b64_json: item["b64_json"] = png.base64EncodedString()
            case .url: item["url"] = "\(baseURL)/v1/images/files/\(try files.save(png)).png"
            }
            data.append(item)
        }
        return jsonResponse(["created": Int(Date().timeIntervalSince1970), "data": data])
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
