import Foundation
import UnCLIPNN
import UnCLIPImage
import UnCLIPModels

/// Settings of the diffusion prior: a causal transformer that maps a caption's CLIP text encoding to a CLIP image
/// embedding, trained to predict the normalised embedding x₀ directly (unCLIP §2.2, MSE on x₀).
public struct PriorTrainingConfiguration: Codable, Sendable {
    public var training = TrainingSchedule(steps: 1500, batchSize: 64, learningRate: 5e-4, minLearningRate: 1e-5,
                                           warmupSteps: 100, weightDecay: 0.01, gradientClip: 1.0, emaDecay: 0.995,
                                           checkpointEvery: 250, seed: 2)
    /// Transformer width = heads × head size, and depth.
    public var heads = 4
    public var headDim = 32
    public var layers = 4
    /// Probability of replacing a caption's conditioning by the empty caption's (classifier-free guidance).
    public var captionDropout: Float = 0.1
    /// Entries used to estimate clip_mean / clip_std (evenly spaced over the dataset).
    public var statisticsSamples = 2048
    /// The prior scheduler's clamp of the predicted x₀ (diffusers' Karlo value 5).
    public var clipSampleRange: Double = 5
    public var precision: WeightPrecision = .fp16

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case training, heads, headDim = "head_dim", layers, captionDropout = "caption_dropout"
        case statisticsSamples = "statistics_samples"
        case clipSampleRange = "clip_sample_range", precision
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self, section: "prior")
        let d = PriorTrainingConfiguration()
        training = try c.decodeIfPresent(TrainingScheduleOverride.self, forKey: .training)?.applied(to: d.training) ?? d.training
        heads = try c.decodeIfPresent(Int.self, forKey: .heads) ?? d.heads
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? d.headDim
        layers = try c.decodeIfPresent(Int.self, forKey: .layers) ?? d.layers
        captionDropout = try c.decodeIfPresent(Float.self, forKey: .captionDropout) ?? d.captionDropout
        statisticsSamples = try c.decodeIfPresent(Int.self, forKey: .statisticsSamples) ?? d.statisticsSamples
        clipSampleRange = try c.decodeIfPresent(Double.self, forKey: .clipSampleRange) ?? d.clipSampleRange
        precision = try c.decodeIfPresent(WeightPrecision.self, forKey: .precision) ?? d.precision
    }

    func validate() throws {
        try training.validate(stage: .prior)
        func check(_ ok: Bool, _ option: String, _ value: Any, _ rule: String) throws {
            if !ok { throw TrainingError.invalidConfiguration(stage: Stage.prior.key, option: option, value: "\(value)", rule: rule) }
        }
        try check(heads >= 1 && headDim >= 1 && layers >= 1, "heads/head_dim/layers", "\(heads)/\(headDim)/\(layers)", "all at least 1")
        try check(captionDropout >= 0 && captionDropout <= 1, "caption_dropout", captionDropout, "in [0, 1]")
        try check(statisticsSamples >= 2, "statistics_samples", statisticsSamples, "at least 2")
    }

    /// diffusers' `PriorTransformer` config for `prior/config.json`.
    func priorConfig(embeddingDim: Int, textTokens: Int) -> PriorTransformerConfig {
        var c = PriorTransformerConfig()
        c.numAttentionHeads = heads
        c.attentionHeadDim = headDim
        c.numLayers = layers
        c.embeddingDim = embeddingDim
        c.numEmbeddings = textTokens
        c.additionalEmbeddings = 4
        c.dropout = 0
        return c
    }

    /// The prior scheduler: x₀ ("sample") prediction, fixed_small_log variance, x₀ clamped to ±`clipSampleRange`.
    public var schedulerConfig: UnCLIPSchedulerConfig {
        UnCLIPSchedulerConfig(varianceType: .fixedSmallLog, clipSample: true, clipSampleRange: clipSampleRange, predictionType: .sample)
    }

    /// Trains the prior on the frozen CLIP in `out` and writes `prior/` and `prior_scheduler/`.
    @discardableResult
    public func run(dataset: some CaptionedImageDataset, out: URL, resume: Bool = false,
                    progress: (TrainingEvent) -> Void = { _ in }) throws -> TrainingOutcome {
        try validate()
        guard dataset.count > 0 else { throw TrainingError.emptyDataset(stage: .prior) }
        let clip = try FrozenCLIP(out: out, stage: .prior)
        let e = try clip.embeddingDim(stage: .prior, projector: "the prior")
        let prior = try PriorTransformer(priorConfig(embeddingDim: e, textTokens: clip.tokenizer.modelMaxLength))
        var initRNG = TrainingRandom.initialization(seed: training.seed)
        prior.resetParameters(using: &initRNG)
        prior.requiresGrad(true)
        prior.clip_mean.requiresGrad = false
        prior.clip_std.requiresGrad = false

        let loop = try TrainingLoop(stage: .prior, model: prior, schedule: training,
                                    folder: checkpointFolder(.prior, in: out), configJSON: try jsonString(self))
        try loop.restoreIfRequested(resume, progress: progress)
        if loop.step == 0 {
            // The statistics are part of the model state, so a resumed run keeps the ones it started with.
            let (mean, std) = try embeddingStatistics(dataset, clip: clip, progress: progress)
            prior.clip_mean.copyValues(from: mean)
            prior.clip_std.copyValues(from: std)
        }
        let scheduler = try UnCLIPScheduler(config: schedulerConfig)
        var sampler = BatchSampler(count: dataset.count, batchSize: training.batchSize, seed: training.seed)
        let seed = training.seed
        let outcome = try loop.run(progress: progress) { step in
            let (images, captions) = loadBatch(dataset, indices: sampler.indices(step: step), stage: .prior, progress: progress) {
                try downsampled($0, to: clip.imageSize)
            }
            guard !images.isEmpty else { return nil }
            let b = images.count
            var dropRNG = TrainingRandom.generator(seed: seed, step: step, .dropout)
            let dropped = (0..<b).map { _ in TrainingRandom.unit(using: &dropRNG) < captionDropout }
            let text = clip.encode(captions, dropped: dropped)
            // Normalised target x₀ = (embedding − mean) / std, as `post_process_latents` undoes at sampling time.
            let x0 = withNoGrad { (clip.imageEmbeddings(images) - prior.clip_mean) / prior.clip_std }
            var noiseRNG = TrainingRandom.generator(seed: seed, step: step, .noise)
            let noise = Tensor.randn(x0.shape, using: &noiseRNG)
            var timeRNG = TrainingRandom.generator(seed: seed, step: step, .timesteps)
            return diffusionLoss(batch: b, scheduler: scheduler, rng: &timeRNG) { t, a, s in
                let xt = withNoGrad { x0 * a.perSample(rank: 2) + noise * s.perSample(rank: 2) }
                let prediction = prior(xt, timesteps: t, projEmbedding: text.embeds, encoderHiddenStates: text.hidden,
                                       attentionMask: text.mask)
                return (prediction, x0)
            }
        }
        if outcome.exported {
            try ComponentWriter.writeModel(prior, config: prior.config, as: "prior", in: out, precision: precision)
            try ComponentWriter.writeScheduler(schedulerConfig, as: "prior_scheduler", in: out)
            try ComponentWriter.writeModelIndex(in: out)
            progress(.message(stage: .prior, text: "wrote prior and prior_scheduler (EMA weights)"))
        }
        return outcome
    }

    /// Per-dimension mean and standard deviation [1, E] of the CLIP image embeddings of evenly spaced entries.
    func embeddingStatistics(_ dataset: some CaptionedImageDataset, clip: FrozenCLIP,
                             progress: (TrainingEvent) -> Void) throws -> (Tensor, Tensor) {
        let n = min(dataset.count, statisticsSamples)
        var sum: [Double] = [], sumSquares: [Double] = []
        var seen = 0
        let chunk = 256
        var start = 0
        while start < n {
            let indices = (start..<min(start + chunk, n)).map { $0 * dataset.count / n }
            start += chunk
            let (images, _) = loadBatch(dataset, indices: indices, stage: .prior, progress: progress) {
                try downsampled($0, to: clip.imageSize)
            }
            guard !images.isEmpty else { continue }
            let embeds = clip.imageEmbeddings(images)
            let e = embeds.shape[1]
            if sum.isEmpty { sum = Array(repeating: 0, count: e); sumSquares = sum }
            let p = embeds.data
            for r in 0..<images.count {
                for k in 0..<e { let v = Double(p[r * e + k]); sum[k] += v; sumSquares[k] += v * v }
            }
            seen += images.count
        }
        guard seen >= 2 else { throw TrainingError.emptyDataset(stage: .prior) }
        let mean = sum.map { $0 / Double(seen) }
        // Unbiased variance, floored so a constant dimension cannot divide by zero.
        let std = zip(sumSquares, mean).map { sq, m in max(((sq - Double(seen) * m * m) / Double(seen - 1)).squareRoot(), 1e-4) }
        progress(.message(stage: .prior, text: "CLIP image-embedding statistics from \(seen) images"))
        return (Tensor(shape: [1, mean.count], mean.map(Float.init)), Tensor(shape: [1, std.count], std.map(Float.init)))
    }
}

/// The mean-squared error of a diffusion model over a batch with one random timestep per sample.
///
/// `forward(timesteps, √ᾱ_t, √(1 − ᾱ_t))` runs the model on the whole batch — the two coefficients as [B] tensors,
/// one per sample — and returns (prediction, target); the loss is the mean over all elements.
func diffusionLoss(batch b: Int, scheduler: UnCLIPScheduler, rng: inout Philox,
                   _ forward: ([Int], Tensor, Tensor) -> (Tensor, Tensor)) -> Tensor {
    let timesteps = (0..<b).map { _ in TrainingRandom.int(scheduler.config.numTrainTimesteps, using: &rng) }
    let alphaBar = timesteps.map { scheduler.alphasCumprod[$0] }
    let (prediction, target) = forward(timesteps, Tensor(shape: [b], alphaBar.map { $0.squareRoot() }),
                                       Tensor(shape: [b], alphaBar.map { (1 - $0).squareRoot() }))
    let diff = prediction - target
    return (diff * diff).mean()
}

extension Tensor {
    /// A [B] tensor shaped to broadcast over the trailing axes of a tensor of rank `rank` ([B, 1, …, 1]).
    func perSample(rank: Int) -> Tensor { reshaped([count] + Array(repeating: 1, count: rank - 1)) }
}
