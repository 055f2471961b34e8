import Foundation
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
///
/// With `maxBatchImages` above 1, callers of `generate` waiting at the same time with the same settings share
/// one batch of up to that many images (a server's requests), each with the noise of its own seed.
public actor UnCLIPModel {
    private let pipeline: UnCLIPPipeline
    private let executor: ModelExecutor
    private let admitted = Locked(0)
    /// Admitted callers whose turn on the model has not ended yet. Unlike `admitted`, it is counted down on the
    /// model's own thread as each turn ends, so the last turn knows it is the last.
    private let turnsLeft = Locked(0)
    private let waitingGenerations = BatchQueue()
    private let batchCounts = Locked((batches: 0, images: 0))

    /// How many callers may wait behind the running job.
    public nonisolated let maxWaiting: Int
    /// The most images that waiting callers of `generate` share a batch for (1: every call its own batch).
    public nonisolated let maxBatchImages: Int
    /// Where the model came from.
    public nonisolated let name: String
    public nonisolated let hasPrior: Bool
    public nonisolated let hasImageEncoder: Bool
    /// The model's sampling defaults (`unclip_defaults.json` over diffusers').
    public nonisolated let defaultOptions: SamplingOptions
    /// The side of the decoder's images and of the final images (after every upsampler).
    public nonisolated let decoderSize: Int
    /// The sides the model draws: the decoder's, then each upsampler stage's (`UnCLIPPipeline.imageSizes`).
    public nonisolated let imageSizes: [Int]

    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Shares `pipeline`, which must not be used elsewhere afterwards; its components are kept loaded.
    public init(_ pipeline: sending UnCLIPPipeline, maxWaiting: Int = 16, maxBatchImages: Int = 1) {
        pipeline.keepLoaded = true
        self.pipeline = pipeline
        self.maxWaiting = max(0, maxWaiting)
        self.maxBatchImages = max(1, maxBatchImages)
        name = pipeline.name
        hasPrior = pipeline.hasPrior
        hasImageEncoder = pipeline.hasImageEncoder
        defaultOptions = pipeline.defaultOptions
        decoderSize = pipeline.decoderSampleSize()
        imageSizes = pipeline.imageSizes
        executor = ModelExecutor(name: "unclip-model")
    }

    /// The model of a diffusers-layout directory.
    public init(directory: URL, variant: String? = nil, maxWaiting: Int = 16, maxBatchImages: Int = 1) throws {
        self.init(try UnCLIPPipeline(directory: directory, variant: variant), maxWaiting: maxWaiting,
                  maxBatchImages: maxBatchImages)
    }

    deinit { executor.stop() }

    /// Callers running or waiting now.
    public nonisolated var queued: Int { admitted.withLock { $0 } }

    /// Batches that `generate` has run, and the images they held (their ratio: how many callers shared a batch).
    public nonisolated var generationBatches: (batches: Int, images: Int) { batchCounts.withLock { $0 } }

    /// Admits the caller (or throws `ModelBusy`), then runs `body` on the model when its turn comes.
    ///
    /// `scratch` names the shapes the job computes with (say, its operation and image count). The pipeline caches
    /// the scratch buffers of a job for the next one of the same shapes; a job with another `scratch` than the last
    /// first returns that cache to the system, so a server whose requests vary in size holds the memory of one
    /// job's shapes, not of every size it has seen. Nil keeps the cache.
    public nonisolated func run<R: Sendable>(scratch: String? = nil, _ body: @Sendable (UnCLIPPipeline) throws -> R) async throws -> R {
        try await admitted { try await exclusive(scratch: scratch, body) }
    }

    /// Counts the caller in while `work` runs, or throws `ModelBusy` when `maxWaiting` callers already wait.
    private nonisolated func admitted<R>(_ work: () async throws -> R) async throws -> R {
        let capacity = maxWaiting + 1
        let admittedNow = admitted.withLock { count -> Bool in
            guard count < capacity else { return false }
            count += 1
            return true
        }
        guard admittedNow else { throw ModelBusy(queued: capacity) }
        defer { admitted.withLock { $0 -= 1 } }
        turnsLeft.withLock { $0 += 1 }
        return try await work()
    }

    private func exclusive<R: Sendable>(scratch: String?, _ body: @Sendable (UnCLIPPipeline) throws -> R) throws -> R {
        defer { endTurn() }
        if Task.isCancelled { throw PipelineCancelled() }
        useScratch(scratch)
        return try body(pipeline)
    }

    /// The `scratch` of the last job run.
    private var lastScratch: String?

    private func useScratch(_ key: String?) {
        guard let key else { return }
        if let last = lastScratch, last != key { pipeline.releaseScratchMemory() }
        lastScratch = key
    }

    /// Ends a caller's turn; after the last waiting caller's, the scratch memory goes back to the system, so an
    /// idle model holds its weights only (the next job's first steps allocate afresh, a few milliseconds on the
    /// embedded model).
    private func endTurn() {
        guard turnsLeft.withLock({ $0 -= 1; return $0 }) == 0 else { return }
        pipeline.releaseScratchMemory()
        lastScratch = nil
    }

    // MARK: The pipelines, as values in and out

    /// Text → images (`UnCLIPPipeline.generate`) with seeded noise.
    ///
    /// The call may share its batch with other callers' waiting at the same time with the same `options` (all but
    /// `imagesPerPrompt`), up to `maxBatchImages` images: the first of them to reach the model runs the batch, the
    /// others find their images made. Each member's noise is its own seed's (`StackedNoise`), so its images are those
    /// it would get alone up to the rounding of batched arithmetic. A member that hangs up is left out of the
    /// progress and its images dropped; when the one running the batch hangs up, the batch stops and the others
    /// wait for the next turn, which one of them leads.
    public nonisolated func generate(prompts: [String], options: SamplingOptions, seed: UInt64,
                                     progress: (@Sendable (PipelineProgress) -> Void)? = nil) async throws -> [RGBImage] {
        let member = BatchMember(prompts: prompts, options: options, seed: seed, progress: progress)
        return try await admitted {
            waitingGenerations.append(member)
            return try await withTaskCancellationHandler {
                try await generate(member)
            } onCancel: {
                member.cancel()
            }
        }
    }

    private func generate(_ member: BatchMember) throws -> [RGBImage] {
        defer { endTurn() }
        if let made = member.result { return try made.get() }
        if Task.isCancelled || member.isCancelled {
            waitingGenerations.remove(member)
            throw PipelineCancelled()
        }
        let batch = waitingGenerations.batch(ledBy: member, maxImages: maxBatchImages)
        let images = batch.reduce(0) { $0 + $1.count }
        batchCounts.withLock { $0.batches += 1; $0.images += images }
        useScratch("generate \(images)")
        do {
            var noise = StackedNoise(batch)
            let made = UnCLIPPipeline.images(from: try pipeline.generate(
                prompts: batch.flatMap(\.prompts), options: member.options, noise: &noise,
                progress: { step in
                    var wanted = false
                    for m in batch where !m.isCancelled { m.progress?(step); wanted = true }
                    return wanted
                }))
            var start = 0
            for m in batch {
                m.finish(.success(Array(made[start..<start + m.count])))
                start += m.count
            }
        } catch where error is PipelineCancelled || error is CancellationError {
            waitingGenerations.putBack(Array(batch.dropFirst()))
            throw error
        } catch {
            for m in batch { m.finish(.failure(error)) }
        }
        return try member.result!.get()
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
