import Foundation
import Synchronization
import UnCLIPImage

/// The model is at capacity: `UnCLIPModel.maxWaiting` callers are already waiting (a server answers 429).
public struct ModelBusy: Error, CustomStringConvertible {
    /// Callers running or waiting when this one was turned away.
    public var queued: Int
    public var description: String { "the model is busy: \(queued) requests are running or waiting; try again shortly" }
}

/// One loaded pipeline shared by concurrent callers: a server's requests, a notebook's tasks.
///
/// Jobs run one at a time on the model's own thread (a custom actor executor), so a run of many seconds never
/// blocks Swift's cooperative thread pool, which on a 2-core machine has two threads, and memory stays that of one
/// job: the pipeline's components stay loaded and its scratch pool is reused from job to job. At most `maxWaiting`
/// callers queue behind the running one; one more gets `ModelBusy` at once. A caller whose task is cancelled —
/// a client that hung up — is dropped before its job starts or at the job's next denoising step.
public actor UnCLIPModel {
    private let pipeline: UnCLIPPipeline
    private let executor: ModelExecutor
    private let admitted = Mutex(0)

    /// How many callers may wait behind the running job.
    public nonisolated let maxWaiting: Int
    /// Where the model came from.
    public nonisolated let name: String
    public nonisolated let hasPrior: Bool
    public nonisolated let hasImageEncoder: Bool
    /// The model's sampling defaults (`unclip_defaults.json` over diffusers').
    public nonisolated let defaultOptions: SamplingOptions
    /// The side of the decoder's images and of the final images (after every upsampler).
    public nonisolated let decoderSize: Int

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Shares `pipeline`, which must not be used elsewhere afterwards; its components are kept loaded.
    public init(_ pipeline: sending UnCLIPPipeline, maxWaiting: Int = 16) {
        pipeline.keepLoaded = true
        self.pipeline = pipeline
        self.maxWaiting = max(0, maxWaiting)
        name = pipeline.name
        hasPrior = pipeline.hasPrior
        hasImageEncoder = pipeline.hasImageEncoder
        defaultOptions = pipeline.defaultOptions
        decoderSize = pipeline.decoderSampleSize()
        executor = ModelExecutor(name: "unclip-model")
    }

    /// The model of a diffusers-layout directory.
    public init(directory: URL, variant: String? = nil, maxWaiting: Int = 16) throws {
        self.init(try UnCLIPPipeline(directory: directory, variant: variant), maxWaiting: maxWaiting)
    }

    deinit { executor.stop() }

    /// Callers running or waiting now.
    public nonisolated var queued: Int { admitted.withLock { $0 } }

    /// Admits the caller (or throws `ModelBusy`), then runs `body` on the model when its turn comes.
    public nonisolated func run<R: Sendable>(_ body: @Sendable (UnCLIPPipeline) throws -> R) async throws -> R {
        let capacity = maxWaiting + 1
        let admittedNow = admitted.withLock { count -> Int? in
            guard count < capacity else { return nil }
            count += 1
            return count
        }
        guard admittedNow != nil else { throw ModelBusy(queued: capacity) }
        defer { admitted.withLock { $0 -= 1 } }
        return try await exclusive(body)
    }

    private func exclusive<R: Sendable>(_ body: @Sendable (UnCLIPPipeline) throws -> R) throws -> R {
        if Task.isCancelled { throw PipelineCancelled() }
        return try body(pipeline)
    }

    // MARK: The pipelines, as values in and out

    /// Text → images (`UnCLIPPipeline.generate`) with seeded noise.
    public nonisolated func generate(prompts: [String], options: SamplingOptions, seed: UInt64,
                                     progress: (@Sendable (PipelineProgress) -> Void)? = nil) async throws -> [RGBImage] {
        try await run { pipeline in
            var noise = SeededNoise(seed: seed)
            return UnCLIPPipeline.images(from: try pipeline.generate(prompts: prompts, options: options, noise: &noise,
                                                                     progress: Self.handler(progress)))
        }
    }

    /// Variations of images as diffusers makes them (`UnCLIPPipeline.vary`): their CLIP embeddings, fresh decoder noise.
    public nonisolated func vary(images: [RGBImage], options: SamplingOptions, seed: UInt64,
                                 progress: (@Sendable (PipelineProgress) -> Void)? = nil) async throws -> [RGBImage] {
        try await run { pipeline in
            var noise = SeededNoise(seed: seed)
            let z = try pipeline.imageEmbeddings(of: images)
            return UnCLIPPipeline.images(from: try pipeline.vary(imageEmbeddings: z, options: options, noise: &noise,
                                                                 progress: Self.handler(progress)))
        }
    }

    /// Inpainting (`UnCLIPPipeline.edit`) with seeded noise: `image` with its `mask`ed region repainted to fit `prompt`.
    public nonisolated func edit(image: RGBImage, mask: InpaintingMask, prompt: String, options: SamplingOptions,
                                 inpainting: InpaintingOptions = InpaintingOptions(), seed: UInt64,
                                 progress: (@Sendable (PipelineProgress) -> Void)? = nil) async throws -> [RGBImage] {
        try await run { pipeline in
            var noise = SeededNoise(seed: seed)
            return UnCLIPPipeline.images(from: try pipeline.edit(image, mask: mask, prompt: prompt, options: options,
                                                                 inpainting: inpainting, noise: &noise,
                                                                 progress: Self.handler(progress)))
        }
    }

    static func handler(_ progress: (@Sendable (PipelineProgress) -> Void)?) -> ((PipelineProgress) -> Bool)? {
        progress.map { report in { report($0); return true } }
    }
}

/// A serial executor with a thread of its own.
final class ModelExecutor: SerialExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopped = false

    init(name: String) {
        let thread = Thread { [self] in loop() }
        thread.name = name
        thread.stackSize = 16 << 20
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    /// Ends the thread once the jobs already queued have run.
    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            if jobs.isEmpty { condition.unlock(); return }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedSerialExecutor())
        }
    }
}
