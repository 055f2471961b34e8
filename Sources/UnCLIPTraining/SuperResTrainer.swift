import Foundation
import UnCLIPNN
import UnCLIPImage
import UnCLIPModels
import UnCLIPShapesWorld

/// Settings of the 32 → 128 super-resolution UNet (UNet2DModel: 6 input channels = noisy high-res + upsampled
/// low-res, x₀ or ε output, additive time embedding, no attention), trained on random crops and run fully convolutionally
/// at 128 × 128.
///
/// As in the unCLIP paper (§2.1, following Saharia et al.'s noise conditioning augmentation), the low-resolution
/// input is corrupted during training (Gaussian blur and Gaussian noise) so that the model tolerates the
/// decoder's imperfect samples rather than expecting exact box-filtered renders. Only `super_res_first` is trained;
/// `super_res_last` (used by the pipeline for the final step) is written as a copy of the same weights.
public struct SuperResTrainingConfiguration: Codable, Sendable {
    public var training = TrainingSchedule(steps: 2400, batchSize: 16, learningRate: 5e-4, minLearningRate: 1e-5,
                                           warmupSteps: 100, weightDecay: 0.0, gradientClip: 1.0, emaDecay: 0.995,
                                           checkpointEvery: 200, seed: 4)
    /// Output side (the pipeline's final image) and input side (the decoder's image).
    public var highResolution = 128
    public var lowResolution = 32
    /// Side of the random training crops of the high-resolution image (and of the matching upsampled low-res crop).
    public var cropSize = 64
    public var blockOutChannels = [16, 32, 64]
    public var layersPerBlock = 1
    public var normGroups = 8
    /// Probability and σ range (low-res pixels) of the Gaussian blur of the conditioning image.
    public var blurProbability: Float = 0.5
    public var blurSigmaMin: Float = 0.4
    public var blurSigmaMax: Float = 1.0
    /// Probability and largest standard deviation (in [−1, 1] units) of the Gaussian noise added to it.
    public var noiseProbability: Float = 0.5
    public var noiseMaxStd: Float = 0.05
    /// What the UNet predicts: the clean image x₀ (`sample`, the default) or the noise ε (`epsilon`, Karlo's choice).
    /// Super-resolution of these scenes is nearly deterministic given the low-resolution image, so an x₀ model is a
    /// conditional-mean upsampler from the first step on; an ε model must be accurate at every noise level to keep
    /// the image's overall colour, and small models trained briefly tint whole images (measured: docs/training.md).
    public var predictionType: UnCLIPSchedulerConfig.PredictionType = .sample
    public var precision: WeightPrecision = .fp16

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case training, highResolution = "high_resolution", lowResolution = "low_resolution", cropSize = "crop_size"
        case blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block", normGroups = "norm_groups"
        case blurProbability = "blur_probability", blurSigmaMin = "blur_sigma_min", blurSigmaMax = "blur_sigma_max"
        case noiseProbability = "noise_probability", noiseMaxStd = "noise_max_std", precision
        case predictionType = "prediction_type"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self, section: Stage.superResolution(0).key)
        let d = SuperResTrainingConfiguration()
        training = try c.decodeIfPresent(TrainingScheduleOverride.self, forKey: .training)?.applied(to: d.training) ?? d.training
        highResolution = try c.decodeIfPresent(Int.self, forKey: .highResolution) ?? d.highResolution
        lowResolution = try c.decodeIfPresent(Int.self, forKey: .lowResolution) ?? d.lowResolution
        cropSize = try c.decodeIfPresent(Int.self, forKey: .cropSize) ?? d.cropSize
        blockOutChannels = try c.decodeIfPresent([Int].self, forKey: .blockOutChannels) ?? d.blockOutChannels
        layersPerBlock = try c.decodeIfPresent(Int.self, forKey: .layersPerBlock) ?? d.layersPerBlock
        normGroups = try c.decodeIfPresent(Int.self, forKey: .normGroups) ?? d.normGroups
        blurProbability = try c.decodeIfPresent(Float.self, forKey: .blurProbability) ?? d.blurProbability
        blurSigmaMin = try c.decodeIfPresent(Float.self, forKey: .blurSigmaMin) ?? d.blurSigmaMin
        blurSigmaMax = try c.decodeIfPresent(Float.self, forKey: .blurSigmaMax) ?? d.blurSigmaMax
        noiseProbability = try c.decodeIfPresent(Float.self, forKey: .noiseProbability) ?? d.noiseProbability
        noiseMaxStd = try c.decodeIfPresent(Float.self, forKey: .noiseMaxStd) ?? d.noiseMaxStd
        precision = try c.decodeIfPresent(WeightPrecision.self, forKey: .precision) ?? d.precision
        predictionType = try c.decodeIfPresent(UnCLIPSchedulerConfig.PredictionType.self, forKey: .predictionType) ?? d.predictionType
    }

    func validate() throws {
        try training.validate(stage: .superResolution(0))
        func check(_ ok: Bool, _ option: String, _ value: Any, _ rule: String) throws {
            if !ok { throw TrainingError.invalidConfiguration(stage: Stage.superResolution(0).key, option: option, value: "\(value)", rule: rule) }
        }
        let levels = 1 << (blockOutChannels.count - 1)
        try check(highResolution % lowResolution == 0, "high_resolution", highResolution, "a multiple of low_resolution (\(lowResolution))")
        try check(cropSize <= highResolution && cropSize % levels == 0, "crop_size", cropSize,
                  "at most high_resolution and a multiple of \(levels) (one halving per extra level)")
        try check(blockOutChannels.allSatisfy { $0 % normGroups == 0 }, "block_out_channels", blockOutChannels, "multiples of norm_groups (\(normGroups))")
        try check(layersPerBlock >= 1, "layers_per_block", layersPerBlock, "at least 1")
        try check(blurSigmaMin > 0 && blurSigmaMin <= blurSigmaMax, "blur_sigma_min", blurSigmaMin, "positive and ≤ blur_sigma_max")
    }

    /// diffusers' `UNet2DModel` config (Karlo's super-resolution layout at this size).
    func unetConfig() -> UNet2DConfig {
        let n = blockOutChannels.count
        var c = UNet2DConfig()
        c.sampleSize = highResolution
        c.inChannels = 6
        c.outChannels = 3
        c.layersPerBlock = layersPerBlock
        c.blockOutChannels = blockOutChannels
        c.downBlockTypes = Array(repeating: "ResnetDownsampleBlock2D", count: n)
        c.upBlockTypes = Array(repeating: "ResnetUpsampleBlock2D", count: n)
        c.midBlockType = "UNetMidBlock2D"
        c.addAttention = false
        c.attentionHeadDim = 8
        c.resnetTimeScaleShift = .additive
        c.normNumGroups = normGroups
        return c  // norm_eps, flip_sin_to_cos and freq_shift keep diffusers' defaults
    }

    /// The super-resolution scheduler: fixed_small_log variance, the configured prediction type.
    public var schedulerConfig: UnCLIPSchedulerConfig {
        UnCLIPSchedulerConfig(varianceType: .fixedSmallLog, clipSample: true, clipSampleRange: 1, predictionType: predictionType)
    }

    /// Trains the super-resolution UNet; writes `super_res_first/`, `super_res_last/` and `super_res_scheduler/`.
    @discardableResult
    public func run(dataset: some CaptionedImageDataset, out: URL, resume: Bool = false,
                    progress: (TrainingEvent) -> Void = { _ in }) throws -> TrainingOutcome {
        try validate()
        guard dataset.count > 0 else { throw TrainingError.emptyDataset(stage: .superResolution(0)) }
        let unet = try UNet2DModel(unetConfig())
        var initRNG = TrainingRandom.initialization(seed: training.seed)
        unet.resetParameters(using: &initRNG)
        unet.requiresGrad(true)

        let loop = try TrainingLoop(stage: .superResolution(0), model: unet, schedule: training,
                                    folder: checkpointFolder(.superResolution(0), in: out), configJSON: try jsonString(self))
        try loop.restoreIfRequested(resume, progress: progress)
        let scheduler = try UnCLIPScheduler(config: schedulerConfig)
        var sampler = BatchSampler(count: dataset.count, batchSize: training.batchSize, seed: training.seed)
        let seed = training.seed, high = highResolution, crop = cropSize
        let outcome = try loop.run(progress: progress) { step in
            let (pairs, _) = loadBatch(dataset, indices: sampler.indices(step: step), stage: .superResolution(0), progress: progress) { image in
                let h = try downsampled(image, to: high)
                return (h, try h.boxDownsampled(factor: high / lowResolution))
            }
            let highs = pairs.map(\.0), lows = pairs.map(\.1)
            guard !highs.isEmpty else { return nil }
            let b = highs.count
            var augmentRNG = TrainingRandom.generator(seed: seed, step: step, .augmentation)
            let low = degraded(try RGBImage.batch(lows), using: &augmentRNG)
            // Matches UnCLIPPipeline.runSuperResolution: antialiased bicubic, align_corners = False.
            let upsampled = low.resizedBicubicAntialiased(height: high, width: high)
            var cropRNG = TrainingRandom.generator(seed: seed, step: step, .crop)
            let origins = (0..<b).map { _ in
                (TrainingRandom.int(high - crop + 1, using: &cropRNG), TrainingRandom.int(high - crop + 1, using: &cropRNG))
            }
            let x0 = cropped(try RGBImage.batch(highs), origins: origins, size: crop)
            let condition = cropped(upsampled, origins: origins, size: crop)
            var noiseRNG = TrainingRandom.generator(seed: seed, step: step, .noise)
            let noise = Tensor.randn(x0.shape, using: &noiseRNG)
            var timeRNG = TrainingRandom.generator(seed: seed, step: step, .timesteps)
            return diffusionLoss(batch: b, scheduler: scheduler, rng: &timeRNG) { t, a, s in
                let input = withNoGrad { Tensor.concat([x0 * a.perSample(rank: 4) + noise * s.perSample(rank: 4), condition], axis: 1) }
                return (unet(input, timesteps: t), predictionType == .sample ? x0 : noise)
            }
        }
        if outcome.exported {
            for name in ["super_res_first", "super_res_last"] {
                try ComponentWriter.writeModel(unet, config: unet.config, as: name, in: out, precision: precision)
            }
            try ComponentWriter.writeScheduler(schedulerConfig, as: "super_res_scheduler", in: out)
            try ComponentWriter.writeModelIndex(in: out)
            progress(.message(stage: .superResolution(0), text: "wrote super_res_first, super_res_last (same weights) and super_res_scheduler (EMA weights)"))
        }
        return outcome
    }

    /// The low-resolution batch [B, 3, h, w] with random Gaussian blur and Gaussian noise per image, clamped to [−1, 1].
    func degraded(_ images: Tensor, using rng: inout Philox) -> Tensor {
        let b = images.shape[0], h = images.shape[2], w = images.shape[3], plane = h * w
        let out = images.clone()
        for n in 0..<b {
            let blur = TrainingRandom.unit(using: &rng) < blurProbability
            let sigma = blurSigmaMin + (blurSigmaMax - blurSigmaMin) * TrainingRandom.unit(using: &rng)
            let addNoise = TrainingRandom.unit(using: &rng) < noiseProbability
            let std = noiseMaxStd * TrainingRandom.unit(using: &rng)
            let noise = Tensor.randn([3 * plane], using: &rng)  // drawn always, so the stream layout never depends on the coin flips
            let p = out.data + n * 3 * plane
            if blur { gaussianBlur(p, channels: 3, height: h, width: w, sigma: sigma) }
            if addNoise {
                let z = noise.data
                for i in 0..<(3 * plane) { p[i] += std * z[i] }
            }
            for i in 0..<(3 * plane) { p[i] = Swift.min(Swift.max(p[i], -1), 1) }
        }
        return out
    }
}

/// Separable Gaussian blur in place over `channels` planes, radius ⌈3σ⌉, reflected borders.
func gaussianBlur(_ p: UnsafeMutablePointer<Float>, channels: Int, height h: Int, width w: Int, sigma: Float) {
    let r = Int((3 * sigma).rounded(.up))
    var kernel = (-r...r).map { Foundation.exp(-Float($0 * $0) / (2 * sigma * sigma)) }
    let total = kernel.reduce(0, +)
    kernel = kernel.map { $0 / total }
    func reflect(_ i: Int, _ n: Int) -> Int {
        var i = i
        while i < 0 || i >= n { i = i < 0 ? -i : 2 * (n - 1) - i }
        return i
    }
    var row = [Float](repeating: 0, count: Swift.max(h, w))
    for c in 0..<channels {
        let plane = p + c * h * w
        for y in 0..<h {
            for x in 0..<w {
                var acc: Float = 0
                for k in -r...r { acc += kernel[k + r] * plane[y * w + reflect(x + k, w)] }
                row[x] = acc
            }
            for x in 0..<w { plane[y * w + x] = row[x] }
        }
        for x in 0..<w {
            for y in 0..<h {
                var acc: Float = 0
                for k in -r...r { acc += kernel[k + r] * plane[reflect(y + k, h) * w + x] }
                row[y] = acc
            }
            for y in 0..<h { plane[y * w + x] = row[y] }
        }
    }
}

/// [B, C, H, W] → [B, C, size, size]: image n cut at origin (y, x) = origins[n].
func cropped(_ t: Tensor, origins: [(Int, Int)], size: Int) -> Tensor {
    let b = t.shape[0], c = t.shape[1], h = t.shape[2], w = t.shape[3]
    if size == h && size == w { return t }
    let out = Tensor(uninitializedShape: [b, c, size, size])
    let src = t.data, dst = out.data
    for n in 0..<b {
        let (y0, x0) = origins[n]
        for ch in 0..<c {
            for y in 0..<size {
                (dst + ((n * c + ch) * size + y) * size).update(from: src + ((n * c + ch) * h + y0 + y) * w + x0, count: size)
            }
        }
    }
    return out
}
