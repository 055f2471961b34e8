import Foundation
import XCTest
import UnCLIPImage
import UnCLIPNN
@testable import UnCLIPModels

/// The pipeline's seams: stages built in code, the upsampler cascade, class names in model_index.json, stage names,
/// the shared model actor, and grad mode / scratch memory that belong to a task rather than to the process.
final class PipelineStagesTests: XCTestCase {
    static let parity = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/parity")
    static let tiny = parity.appendingPathComponent("tiny_diffusers")

    static var fast: SamplingOptions {
        var o = SamplingOptions()
        o.priorSteps = 3; o.decoderSteps = 3; o.superResSteps = 2
        return o
    }

    /// Records which draws a run asks for, passing them on to seeded noise.
    struct LoggedNoise: NoiseSource {
        var inner = SeededNoise(seed: 5)
        var draws: [String] = []
        mutating func noise(stage: Stage, index: Int, shape: [Int]) throws -> Tensor {
            draws.append("\(stage.key).\(index)")
            return try inner.noise(stage: stage, index: index, shape: shape)
        }
    }

    func components(_ dir: PipelineDirectory, upsamplers: [Upsampler]? = nil) throws -> UnCLIPComponents {
        UnCLIPComponents(
            tokenizer: try dir.loadTokenizer(), textEncoder: try dir.loadTextEncoder(), prior: try dir.loadPriorStage(),
            decoder: try dir.loadDecoderStage(),
            upsamplers: try upsamplers ?? [Upsampler(first: try dir.loadSuperRes("super_res_first"),
                                                      last: try dir.loadSuperRes("super_res_last"),
                                                      scheduler: try dir.loadScheduler("super_res_scheduler"))])
    }

    func testAPipelineBuiltInCodeDrawsWhatTheDirectoryDraws() throws {
        let dir = try PipelineDirectory(Self.tiny)
        var a = SeededNoise(seed: 11), b = SeededNoise(seed: 11)
        let fromDirectory = try UnCLIPPipeline(directory: Self.tiny).generate(prompts: ["a horse"], options: Self.fast, noise: &a)
        let inCode = try UnCLIPPipeline(components: try components(dir)).generate(prompts: ["a horse"], options: Self.fast, noise: &b)
        XCTAssertEqual(fromDirectory.shape, inCode.shape)
        XCTAssertEqual(fromDirectory.toArray(), inCode.toArray())
    }

    /// The fixture's upsampler, then a second stage at twice its size: the same (fully convolutional) weights at a
    /// larger sample size, as the paper's second ×4 upsampler is a stage of the same kind.
    func twoStageCascade(_ dir: PipelineDirectory) throws -> [Upsampler] {
        let first = try dir.loadSuperRes("super_res_first"), last = try dir.loadSuperRes("super_res_last")
        let scheduler = try dir.loadScheduler("super_res_scheduler")
        var bigger = first.config
        bigger.sampleSize *= 2
        let second = try UNet2DModel(bigger)
        try second.load(try dir.weights("super_res_first"))
        return [Upsampler(first: first, last: last, scheduler: scheduler), Upsampler(index: 1, first: second, scheduler: scheduler)]
    }

    func testTheCascadeRunsWithZeroOneAndTwoUpsamplers() throws {
        let dir = try PipelineDirectory(Self.tiny)
        let two = try twoStageCascade(dir)
        let cascades: [[Upsampler]] = [[], [two[0]], two]
        let sizes = [try dir.loadDecoderStage().sampleSize, two[0].size, two[1].size]
        for (cascade, size) in zip(cascades, sizes) {
            var noise = LoggedNoise()
            let pipeline = UnCLIPPipeline(components: try components(dir, upsamplers: cascade))
            XCTAssertEqual(pipeline.upsamplerCount, cascade.count)
            let image = try pipeline.generate(prompts: ["a horse"], options: Self.fast, noise: &noise)
            XCTAssertEqual(image.shape, [1, size, size, 3], "\(cascade.count) upsamplers")
            XCTAssertTrue(image.toArray().allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 1 })
            // Each upsampler draws from its own stream: its initial latent, then one per step with t > 0.
            for k in 0..<cascade.count {
                let key = Stage.superResolution(k).key
                XCTAssertEqual(noise.draws.filter { $0.hasPrefix(key + ".") }, ["\(key).0", "\(key).1"], "stage \(k)")
            }
            XCTAssertFalse(noise.draws.contains { $0.hasPrefix("super_res_\(cascade.count + 1).") })
        }
    }

    /// `SamplingOptions.size` picks where the cascade stops; a later stage can be entered with its input's size.
    func testTheSizeChoosesWhereTheCascadeStops() throws {
        let dir = try PipelineDirectory(Self.tiny)
        let two = try twoStageCascade(dir)
        let pipeline = UnCLIPPipeline(components: try components(dir, upsamplers: two))
        let sizes = pipeline.imageSizes
        XCTAssertEqual(sizes, [try dir.loadDecoderStage().sampleSize, two[0].size, 2 * two[0].size])
        for (k, size) in sizes.enumerated() {
            var o = Self.fast
            o.size = size
            XCTAssertEqual(try pipeline.upsamplerStages(for: o), k)
            var noise = LoggedNoise()
            XCTAssertEqual(try pipeline.generate(prompts: ["a horse"], options: o, noise: &noise).shape, [1, size, size, 3])
            XCTAssertEqual(noise.draws.contains { $0.hasPrefix("super_res_2.") }, k == 2, "size \(size)")
            XCTAssertNil(pipeline.sizeNote(size))
        }
        var o = Self.fast
        o.size = sizes[2] * 4
        XCTAssertEqual(try pipeline.upsamplerStages(for: o), 2, "more than the cascade draws: its largest")
        XCTAssertTrue(try XCTUnwrap(pipeline.sizeNote(o.size)).contains("at most \(sizes[2])"))
        o.size = sizes[1] + 1
        var unused = LoggedNoise()
        do {
            _ = try pipeline.generate(prompts: ["a horse"], options: o, noise: &unused)
            XCTFail("size \(sizes[1] + 1) is no stage's output")
        } catch {
            XCTAssertTrue("\(error)".contains("\(sizes[1])") && "\(error)".contains("\(sizes[1] + 1)"), "\(error)")
        }
        XCTAssertTrue(unused.draws.isEmpty, "refused before anything ran")
        // Entering at the second stage with the first's output redraws what the whole cascade drew (own noise stream).
        o.size = sizes[1]
        var a = SeededNoise(seed: 2), b = SeededNoise(seed: 2)
        let middle = try pipeline.generate(prompts: ["a horse"], options: o, noise: &a)
        o.size = nil
        let whole = try pipeline.generate(prompts: ["a horse"], options: o, noise: &b)
        let resumed = try pipeline.upscale(middle.permuted([0, 3, 1, 2]) * 2 - 1, options: o, noise: &a)
        XCTAssertEqual(resumed.shape, whole.shape)
        let d = zip(resumed.toArray(), whole.toArray()).map { abs($0 - $1) }
        // The pixel round trip (x·0.5 + 0.5 clamped, then ·2 − 1) moves values by a rounding error, which the
        // sampler's clipping can turn into a few larger differences; the picture is the same.
        XCTAssertLessThan(d.reduce(0, +) / Float(d.count), 1e-5)
        XCTAssertLessThan(d.max()!, 1e-2)
    }

    func testTheDirectoryCascadeIsDiscoveredStageByStage() throws {
        let copy = try temporaryCopy(of: Self.tiny)
        XCTAssertEqual(try UnCLIPPipeline(directory: copy).upsamplerCount, 1)
        // A second stage named super_res_2_*: found without new pipeline code.
        for part in ["first", "scheduler"] {
            try FileManager.default.copyItem(at: copy.appendingPathComponent("super_res_\(part)"),
                                             to: copy.appendingPathComponent("super_res_2_\(part)"))
        }
        try editModelIndex(copy) {
            $0["super_res_2_first"] = ["diffusers", "UNet2DModel"]
            $0["super_res_2_scheduler"] = ["diffusers", "UnCLIPScheduler"]
        }
        let pipeline = try UnCLIPPipeline(directory: copy)
        XCTAssertEqual(pipeline.upsamplerCount, 2)
        var noise = LoggedNoise()
        _ = try pipeline.generate(prompts: ["a horse"], options: Self.fast, noise: &noise)
        XCTAssertEqual(noise.draws.filter { $0.hasPrefix("super_res_2.") }, ["super_res_2.0", "super_res_2.1"])
    }

    func testUnknownClassNamesAreErrorsThatNameThem() throws {
        let copy = try temporaryCopy(of: Self.tiny)
        try editModelIndex(copy) { $0["prior"] = ["unclip", "AutoregressivePrior"] }
        XCTAssertThrowsError(try UnCLIPPipeline(directory: copy)) {
            let message = "\($0)"
            XCTAssertTrue(message.contains("'prior'") && message.contains("AutoregressivePrior") && message.contains("PriorTransformer"), message)
        }
        try editModelIndex(copy) { $0["prior"] = ["diffusers", "PriorTransformer"]; $0["decoder"] = ["diffusers", "UNet2DModel"] }
        XCTAssertThrowsError(try UnCLIPPipeline(directory: copy)) { XCTAssertTrue("\($0)".contains("'decoder' is a UNet2DModel"), "\($0)") }
        try editModelIndex(copy) { $0["decoder"] = ["diffusers", "UNet2DConditionModel"]; $0["_class_name"] = "StableDiffusionPipeline" }
        XCTAssertThrowsError(try UnCLIPPipeline(directory: copy)) { XCTAssertTrue("\($0)".contains("StableDiffusionPipeline"), "\($0)") }
    }

    func testStageKeysAreOneSpellingAndRoundTrip() {
        let stages: [Stage] = [.tokenizer, .clip, .prior, .decoder, .superResolution(0), .superResolution(1), .inversion]
        XCTAssertEqual(stages.map(\.key), ["tokenizer", "clip", "prior", "decoder", "super_res", "super_res_2", "inversion"])
        for stage in stages { XCTAssertEqual(Stage(key: stage.key), stage) }
        XCTAssertNil(Stage(key: "superres"), "an earlier name is read where files may hold it, not a key")
        XCTAssertEqual(Stage.superResolution(0).earlierKeys, ["superres"])
        XCTAssertEqual(Stage.superResolution(1).earlierKeys, [])
        XCTAssertNil(Stage(key: "super_res_1"))
        XCTAssertEqual(Stage.superResolution(0).description, "super-resolution")
        // The seeded streams of the original stages are fixed: a seed keeps its images.
        XCTAssertEqual([Stage.prior, .decoder, .superResolution(0), .inversion].map(\.noiseStream), [0, 1, 2, 3])
        XCTAssertEqual(Set(stages.map(\.noiseStream)).count, stages.count)
    }

    // MARK: Sharing

    func testTheModelServesConcurrentCallersAsIfOneAtATime() async throws {
        let model = try UnCLIPModel(directory: Self.tiny)
        let seeds: [UInt64] = [1, 2, 3]
        let options = Self.fast
        let concurrent = try await withThrowingTaskGroup(of: (UInt64, [RGBImage]).self) { group in
            for seed in seeds {
                group.addTask { (seed, try await model.generate(prompts: ["a horse"], options: options, seed: seed)) }
            }
            var out: [UInt64: [RGBImage]] = [:]
            for try await (seed, images) in group { out[seed] = images }
            return out
        }
        let pipeline = try UnCLIPPipeline(directory: Self.tiny)
        for seed in seeds {
            var noise = SeededNoise(seed: seed)
            let alone = UnCLIPPipeline.images(from: try pipeline.generate(prompts: ["a horse"], options: options, noise: &noise))
            XCTAssertEqual(concurrent[seed], alone, "seed \(seed)")
        }
        XCTAssertEqual(model.queued, 0)
    }

    func testTheModelTurnsAwayCallersPastItsQueueAndDropsCancelledOnes() async throws {
        let model = try UnCLIPModel(directory: Self.tiny, maxWaiting: 1)
        let gate = DispatchSemaphore(value: 0)
        let running = Task { try await model.run { _ in gate.wait() } }
        while model.queued < 1 { try await Task.sleep(nanoseconds: 1_000_000) }
        // One may wait behind the running job; it is cancelled before its turn comes.
        let options = Self.fast
        let waiting = Task { try await model.generate(prompts: ["a horse"], options: options, seed: 1) }
        while model.queued < 2 { try await Task.sleep(nanoseconds: 1_000_000) }
        do {
            _ = try await model.generate(prompts: ["a horse"], options: options, seed: 2)
            XCTFail("a third caller was admitted past the queue")
        } catch let busy as ModelBusy {
            XCTAssertEqual(busy.queued, 2)
        }
        waiting.cancel()
        gate.signal()
        try await running.value
        do {
            _ = try await waiting.value
            XCTFail("a cancelled caller's job ran")
        } catch {
            XCTAssertTrue(error is PipelineCancelled, "\(error)")
        }
        XCTAssertEqual(model.queued, 0)
        // The model still serves.
        let images = try await model.generate(prompts: ["a horse"], options: options, seed: 3)
        XCTAssertEqual(images.count, 1)
    }

    /// Holds the model with a job that waits on `gate`, then starts `calls` and waits until all of them queue.
    private func queued<R: Sendable>(on model: UnCLIPModel, _ calls: [@Sendable () async throws -> R]) async throws -> (gate: DispatchSemaphore, blocker: Task<Void, Error>, tasks: [Task<R, Error>]) {
        let gate = DispatchSemaphore(value: 0)
        let blocker = Task { try await model.run { _ in gate.wait() } }
        while model.queued < 1 { try await Task.sleep(nanoseconds: 1_000_000) }
        var tasks: [Task<R, Error>] = []
        for call in calls {
            tasks.append(Task { try await call() })
            while model.queued < tasks.count + 1 { try await Task.sleep(nanoseconds: 1_000_000) }
        }
        return (gate, blocker, tasks)
    }

    func testWaitingCallersWithTheSameSettingsShareABatchAndKeepTheirSeedsImages() async throws {
        let model = try UnCLIPModel(directory: Self.tiny, maxBatchImages: 8)
        let options = Self.fast
        var two = options
        two.imagesPerPrompt = 2
        let requests: [(prompt: String, options: SamplingOptions, seed: UInt64)] = [("a horse", options, 1), ("a red cube", two, 2), ("a horse", options, 3)]
        let (gate, blocker, tasks) = try await queued(on: model, requests.map { r in
            { try await model.generate(prompts: [r.prompt], options: r.options, seed: r.seed) }
        })
        gate.signal()
        try await blocker.value
        var shared: [[RGBImage]] = []
        for task in tasks { shared.append(try await task.value) }
        // One batch of the four images.
        XCTAssertEqual(model.generationBatches.batches, 1)
        XCTAssertEqual(model.generationBatches.images, 4)
        // Each caller's images are those its seed gives alone, up to the rounding of batched arithmetic.
        let pipeline = try UnCLIPPipeline(directory: Self.tiny)
        for (r, images) in zip(requests, shared) {
            var noise = SeededNoise(seed: r.seed)
            let alone = UnCLIPPipeline.images(from: try pipeline.generate(prompts: [r.prompt], options: r.options, noise: &noise))
            XCTAssertEqual(images.count, alone.count)
            for (a, b) in zip(images, alone) {
                XCTAssertEqual(a.width, b.width)
                let levels = zip(a.pixels, b.pixels).map { abs(Int($0) - Int($1)) }
                XCTAssertLessThanOrEqual(levels.max() ?? 0, 2, "\(r.prompt), seed \(r.seed): more than 2 levels from the image alone")
            }
        }
    }

    func testBatchesHoldOnlyTheSameSettingsUpToTheirSize() async throws {
        let model = try UnCLIPModel(directory: Self.tiny, maxBatchImages: 2)
        let options = Self.fast
        var other = options
        other.decoderGuidance += 1
        let settings = [options, other, options, options]
        let (gate, blocker, tasks) = try await queued(on: model, settings.map { o in
            { try await model.generate(prompts: ["a horse"], options: o, seed: 1) }
        })
        gate.signal()
        try await blocker.value
        for task in tasks {
            let images = try await task.value
            XCTAssertEqual(images.count, 1)
        }
        // [0, 2] share a batch (size 2), then [1] alone (other settings), then [3].
        XCTAssertEqual(model.generationBatches.batches, 3)
        XCTAssertEqual(model.generationBatches.images, 4)
    }

    func testAHungUpCallerLeavesItsBatchToTheOthers() async throws {
        let model = try UnCLIPModel(directory: Self.tiny, maxBatchImages: 8)
        let options = Self.fast
        let (gate, blocker, tasks) = try await queued(on: model, [UInt64(1), 2, 3].map { seed in
            { try await model.generate(prompts: ["a horse"], options: options, seed: seed) }
        })
        // The first, which would lead the batch, and the last hang up before the model is free.
        tasks[0].cancel()
        tasks[2].cancel()
        gate.signal()
        try await blocker.value
        for i in [0, 2] {
            do { _ = try await tasks[i].value; XCTFail("caller \(i) hung up but got images") } catch {
                XCTAssertTrue(error is PipelineCancelled, "\(error)")
            }
        }
        let images = try await tasks[1].value
        var noise = SeededNoise(seed: 2)
        let alone = UnCLIPPipeline.images(from: try UnCLIPPipeline(directory: Self.tiny).generate(prompts: ["a horse"], options: options, noise: &noise))
        XCTAssertEqual(images.count, 1)
        XCTAssertLessThanOrEqual(zip(images[0].pixels, alone[0].pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0, 2)
        XCTAssertEqual(model.queued, 0)
        XCTAssertEqual(model.generationBatches.images, 1)
    }

    func testGradModeAndScratchMemoryBelongToTheTask() throws {
        withNoGrad {
            XCTAssertFalse(GradMode.isEnabled)
            // Another thread is not affected by this one's mode.
            final class Seen: @unchecked Sendable { var value = false }
            let seen = Seen(), done = DispatchSemaphore(value: 0)
            Thread { seen.value = GradMode.isEnabled; done.signal() }.start()
            done.wait()
            XCTAssertTrue(seen.value)
            withGrad { XCTAssertTrue(GradMode.isEnabled) }
            XCTAssertFalse(GradMode.isEnabled)
        }
        XCTAssertTrue(GradMode.isEnabled)

        // A pipeline's run takes scratch memory from its own pool and empties only that pool between stages.
        let shared = BufferPool.shared
        do { _ = Tensor.zeros([1 << 16]) }
        let cached = shared.cachedBytes
        XCTAssertGreaterThan(cached, 0)
        let pipeline = try UnCLIPPipeline(directory: Self.tiny)
        var noise = SeededNoise(seed: 1)
        _ = try pipeline.generate(prompts: ["a horse"], options: Self.fast, noise: &noise)
        XCTAssertGreaterThanOrEqual(shared.cachedBytes, cached)
        let pool = BufferPool()
        pool.withPool { _ = Tensor.zeros([1000]) }
        XCTAssertEqual(pool.cachedBytes, 4000)
        XCTAssertGreaterThanOrEqual(shared.cachedBytes, cached)
    }

    // MARK: Helpers

    func temporaryCopy(of dir: URL) throws -> URL {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-stages-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: dir, to: copy)
        addTeardownBlock { try? FileManager.default.removeItem(at: copy) }
        return copy
    }

    func editModelIndex(_ dir: URL, _ edit: (inout [String: Any]) -> Void) throws {
        let url = dir.appendingPathComponent("model_index.json")
        var index = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        edit(&index)
        try JSONSerialization.data(withJSONObject: index).write(to: url)
    }
}
