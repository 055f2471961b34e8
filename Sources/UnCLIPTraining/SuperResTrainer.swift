import Foundation
import UnCLIPNN
import UnCLIPImage
import UnCLIPModels
import UnCLIPShapesWorld

/// Settings of one upsampler of the cascade (UNet2DModel: 6 input channels = noisy high-res + upsampled low-res, x₀
/// or ε output, additive time embedding, no attention), trained on random crops and run fully convolutionally at its
/// full size: the first (`stage` 1, 32 → 128 by default) or the second (`stage` 2, `secondStage`: 128 → 512). One
/// trainer serves every stage; the stage's factor and sizes are settings.
///
/// As in the unCLIP paper (§2.1, following Saharia et al.'s noise conditioning augmentation), the low-resolution
/// input is corrupted during training so that the model tolerates the previous stage's imperfect samples rather
/// than expecting exact box-filtered renders: Gaussian blur and Gaussian noise for the first upsampler, and for the
/// second, as the paper does for its second upsampler, the harsher BSR-style mix (Zhang et al. 2021): blur, resize
/// jitter (down by a random factor and back up), noise and JPEG compression. Only `super_res_first` is trained;
/// `super_res_last` (used by the pipeline for the final step) is written as a copy of the same weights.
public struct SuperResTrainingConfiguration: Codable, Sendable {
    public var training = TrainingSchedule(steps: 2400, batchSize: 16, learningRate: 5e-4, minLearningRate: 1e-5,
                                           warmupSteps: 100, weightDecay: 0.0, gradientClip: 1.0, emaDecay: 0.995,
                                           checkpointEvery: 200, seed: 4)
    /// The upsampler's place in the cascade, from 1: its components are `super_res_first`, … for 1 and
    /// `super_res_2_first`, … for 2.
    public var stage = 1
    /// Output side (the stage's image) and input side (the previous stage's image).
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
    /// Probability and range of the resize jitter: the conditioning image shrunk by a factor drawn from
    /// [resize_scale_min, resize_scale_max) (antialiased bicubic) and enlarged back, losing detail as a smaller source
    /// would.
    public var resizeProbability: Float = 0
    public var resizeScaleMin: Float = 0.5
    public var resizeScaleMax: Float = 1.0
    /// Probability and quality range (libjpeg's 1 … 100) of JPEG compression of the conditioning image (applied last).
    public var jpegProbability: Float = 0
    public var jpegQualityMin = 30
    public var jpegQualityMax = 95
    /// What the UNet predicts: the clean image x₀ (`sample`, the default) or the noise ε (`epsilon`, Karlo's choice).
    /// Super-resolution of these scenes is nearly deterministic given the low-resolution image, so an x₀ model is a
    /// conditional-mean upsampler from the first step on; an ε model must be accurate at every noise level to keep
    /// the image's overall colour, and small models trained briefly tint whole images (measured: docs/training.md).
    public var predictionType: UnCLIPSchedulerConfig.PredictionType = .sample
    public var precision: WeightPrecision = .fp16

    public init() {}

    /// The second upsampler's defaults: 128 → 512 on whole 512 × 512 images (two a step), the BSR-style degradations on
    /// (docs/training.md, "The 512 stage"). Not on crops, as the paper trains its upsamplers: at these widths every
    /// group norm of the UNet normalises one or two channels over the whole picture, and models trained on crops
    /// (128 × 128: a quarter of the side; 256 × 256: a quarter of the area, as the first stage's 64 × 64 crops of 128)
    /// drew tinted backgrounds and shifted colours at 512, where those statistics are a whole image's (measured).
    public static var secondStage: SuperResTrainingConfiguration {
        var c = SuperResTrainingConfiguration()
        c.stage = 2
        c.highResolution = 512
        c.lowResolution = 128
        c.cropSize = 512
        c.training.batchSize = 2
        c.normGroups = 4
        // Half the first stage's widths: at 512 × 512 the top level's convolutions and norms are the cost of every
        // sampling step (16 channels: 0.79 s a step here, 8: 0.38 s), and flat-coloured shapes need little width.
        c.blockOutChannels = [8, 16, 32]
        c.training.steps = 1500
        c.training.seed = 5
        c.blurProbability = 0.4; c.blurSigmaMin = 0.3; c.blurSigmaMax = 1.0
        c.noiseProbability = 0.4; c.noiseMaxStd = 0.04
        c.resizeProbability = 0.4; c.resizeScaleMin = 0.6; c.resizeScaleMax = 1.0
        c.jpegProbability = 0.4; c.jpegQualityMin = 50; c.jpegQualityMax = 95
        return c
    }

    /// The defaults of upsampler `stage` (1: the initialiser's, 2: `secondStage`).
    public static func defaults(stage: Int) -> SuperResTrainingConfiguration {
        stage == 2 ? secondStage : SuperResTrainingConfiguration()
    }

    /// The cascade stage it trains.
    public var cascadeStage: Stage { .superResolution(max(stage, 1) - 1) }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case training, stage, highResolution = "high_resolution", lowResolution = "low_resolution", cropSize = "crop_size"
        case blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block", normGroups = "norm_groups"
        case blurProbability = "blur_probability", blurSigmaMin = "blur_sigma_min", blurSigmaMax = "blur_sigma_max"
        case noiseProbability = "noise_probability", noiseMaxStd = "noise_max_std", precision
        case resizeProbability = "resize_probability", resizeScaleMin = "resize_scale_min", resizeScaleMax = "resize_scale_max"
        case jpegProbability = "jpeg_probability", jpegQualityMin = "jpeg_quality_min", jpegQualityMax = "jpeg_quality_max"
        case predictionType = "prediction_type"
    }

    /// The `userInfo` key of a decoder's default `stage` (an `Int`; 1 without it): `unclip train super-res --stage 2`
    /// reads a file without a "stage" key as stage 2's settings.
    public static let defaultStageKey = CodingUserInfoKey(rawValue: "unclip.superResolutionStage")!

    /// A section's settings over the defaults of its `stage` (the decoder's default stage unless it names one).
    public init(from decoder: Decoder) throws {
        try self.init(from: decoder, defaultStage: decoder.userInfo[Self.defaultStageKey] as? Int ?? 1)
    }

    /// A section's settings over the defaults of its `stage`; a section of stage `defaultStage` need not name it,
    /// and one that names another stage is an error when `defaultStage` is not 1 (a train-all file's "super_res_2").
    init(from decoder: Decoder, defaultStage: Int) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self, section: Stage.superResolution(defaultStage - 1).key)
        let stage = try c.decodeIfPresent(Int.self, forKey: .stage) ?? defaultStage
        guard (1...2).contains(stage) else {
            throw DecodingError.dataCorruptedError(forKey: .stage, in: c, debugDescription: "stage \(stage): the cascade has upsampler stages 1 and 2")
        }
        guard defaultStage == 1 || stage == defaultStage else {
            throw DecodingError.dataCorruptedError(forKey: .stage, in: c, debugDescription:
                "these are stage \(defaultStage)'s settings (\(Stage.superResolution(defaultStage - 1).key)); \"stage\": \(stage) contradicts them")
        }
        let d = SuperResTrainingConfiguration.defaults(stage: stage)
        self.stage = stage
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
        resizeProbability = try c.decodeIfPresent(Float.self, forKey: .resizeProbability) ?? d.resizeProbability
        resizeScaleMin = try c.decodeIfPresent(Float.self, forKey: .resizeScaleMin) ?? d.resizeScaleMin
        resizeScaleMax = try c.decodeIfPresent(Float.self, forKey: .resizeScaleMax) ?? d.resizeScaleMax
        jpegProbability = try c.decodeIfPresent(Float.self, forKey: .jpegProbability) ?? d.jpegProbability
        jpegQualityMin = try c.decodeIfPresent(Int.self, forKey: .jpegQualityMin) ?? d.jpegQualityMin
        jpegQualityMax = try c.decodeIfPresent(Int.self, forKey: .jpegQualityMax) ?? d.jpegQualityMax
        precision = try c.decodeIfPresent(WeightPrecision.self, forKey: .precision) ?? d.precision
        predictionType = try c.decodeIfPresent(UnCLIPSchedulerConfig.PredictionType.self, forKey: .predictionType) ?? d.predictionType
    }

    func validate() throws {
        let stage = cascadeStage
        try training.validate(stage: stage)
        func check(_ ok: Bool, _ option: String, _ value: Any, _ rule: String) throws {
            if !ok { throw TrainingError.invalidConfiguration(stage: stage.key, option: option, value: "\(value)", rule: rule) }
        }
        let levels = 1 << (blockOutChannels.count - 1)
        try check((1...2).contains(self.stage), "stage", self.stage, "1 or 2 (the cascade's upsamplers)")
        try check(lowResolution >= 8 && lowResolution <= 1024, "low_resolution", lowResolution, "8 … 1024")
        try check(highResolution > lowResolution && highResolution <= 2048 && highResolution % lowResolution == 0,
                  "high_resolution", highResolution, "a multiple of low_resolution (\(lowResolution)) above it, at most 2048")
        try check(cropSize <= highResolution && cropSize % levels == 0, "crop_size", cropSize,
                  "at most high_resolution and a multiple of \(levels) (one halving per extra level)")
        try check(!blockOutChannels.isEmpty && blockOutChannels.allSatisfy { $0 > 0 && $0 % normGroups == 0 }, "block_out_channels", blockOutChannels, "positive multiples of norm_groups (\(normGroups))")
        try check(layersPerBlock >= 1, "layers_per_block", layersPerBlock, "at least 1")
        for (name, p) in [("blur_probability", blurProbability), ("noise_probability", noiseProbability),
                          ("resize_probability", resizeProbability), ("jpeg_probability", jpegProbability)] {
            try check(p >= 0 && p <= 1, name, p, "a probability in [0, 1]")
        }
        try check(blurSigmaMin > 0 && blurSigmaMin <= blurSigmaMax && blurSigmaMax <= 8, "blur_sigma_min", blurSigmaMin, "positive and ≤ blur_sigma_max (at most 8)")
        try check(noiseMaxStd >= 0 && noiseMaxStd <= 1, "noise_max_std", noiseMaxStd, "in [0, 1]")
        try check(resizeScaleMin > 0 && resizeScaleMin <= resizeScaleMax && resizeScaleMax <= 1, "resize_scale_min", resizeScaleMin,
                  "in (0, resize_scale_max], with resize_scale_max ≤ 1")
        try check(Int(Float(lowResolution) * resizeScaleMin) >= 2, "resize_scale_min", resizeScaleMin, "large enough to leave at least 2 pixels of the low-resolution side")
        try check(jpegQualityMin >= 1 && jpegQualityMin <= jpegQualityMax && jpegQualityMax <= 100, "jpeg_quality_min", jpegQualityMin,
                  "1 … jpeg_quality_max, with jpeg_quality_max ≤ 100")
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

    /// Trains the stage's UNet; writes `{key}_first/`, `{key}_last/` and `{key}_scheduler/` (`super_res_…` for stage
    /// 1, `super_res_2_…` for stage 2). The data set gives its images at `high_resolution`
    /// (`CaptionedImageDataset.sample(_:side:)`); the conditioning image is their box-filtered reduction, degraded.
    @discardableResult
    public func run(dataset: some CaptionedImageDataset, out: URL, resume: Bool = false,
                    progress: (TrainingEvent) -> Void = { _ in }) throws -> TrainingOutcome {
        try validate()
        let stage = cascadeStage
        guard dataset.count > 0 else { throw TrainingError.emptyDataset(stage: stage) }
        let unet = try UNet2DModel(unetConfig())
        var initRNG = TrainingRandom.initialization(seed: training.seed)
        unet.resetParameters(using: &initRNG)
        unet.requiresGrad(true)

        let loop = try TrainingLoop(stage: stage, model: unet, schedule: training,
                                    folder: checkpointFolder(stage, in: out), configJSON: try jsonString(self))
        try loop.restoreIfRequested(resume, progress: progress)
        let scheduler = try UnCLIPScheduler(config: schedulerConfig)
        var sampler = BatchSampler(count: dataset.count, batchSize: training.batchSize, seed: training.seed)
        let seed = training.seed, high = highResolution, crop = cropSize
        let outcome = try loop.run(progress: progress) { step in
            let (pairs, _) = loadBatch(dataset, indices: sampler.indices(step: step), side: high, stage: stage, progress: progress) { image in
                (image, try image.boxDownsampled(factor: high / lowResolution))
            }
            let highs = pairs.map(\.0), lows = pairs.map(\.1)
            guard !highs.isEmpty else { return nil }
            let b = highs.count
            var augmentRNG = TrainingRandom.generator(seed: seed, step: step, .augmentation)
            var degradeRNG = TrainingRandom.generator(seed: seed, step: step, .degradation)
            let low = try degraded(try RGBImage.batch(lows), using: &augmentRNG, &degradeRNG)
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
            let key = stage.key
            for name in ["\(key)_first", "\(key)_last"] {
                try ComponentWriter.writeModel(unet, config: unet.config, as: name, in: out, precision: precision)
            }
            try ComponentWriter.writeScheduler(schedulerConfig, as: "\(key)_scheduler", in: out)
            try ComponentWriter.writeModelIndex(in: out)
            progress(.message(stage: stage, text: "wrote \(key)_first, \(key)_last (same weights) and \(key)_scheduler (EMA weights)"))
        }
        return outcome
    }

    /// The low-resolution batch [B, 3, h, w], each image degraded at random and clamped to [−1, 1]: Gaussian blur,
    /// resize jitter, Gaussian noise, JPEG, in that order (BSR's order, one pass). Blur and noise draw from `rng`
    /// exactly as the first upsampler always has (so its training is unchanged); resize and JPEG from `extra`.
    func degraded(_ images: Tensor, using rng: inout Philox, _ extra: inout Philox) throws -> Tensor {
        let b = images.shape[0], h = images.shape[2], w = images.shape[3], plane = h * w
        let out = images.clone()
        for n in 0..<b {
            let blur = TrainingRandom.unit(using: &rng) < blurProbability
            let sigma = blurSigmaMin + (blurSigmaMax - blurSigmaMin) * TrainingRandom.unit(using: &rng)
            let addNoise = TrainingRandom.unit(using: &rng) < noiseProbability
            let std = noiseMaxStd * TrainingRandom.unit(using: &rng)
            let noise = Tensor.randn([3 * plane], using: &rng)  // drawn always, so the stream layout never depends on the coin flips
            let resize = TrainingRandom.unit(using: &extra) < resizeProbability
            let scale = resizeScaleMin + (resizeScaleMax - resizeScaleMin) * TrainingRandom.unit(using: &extra)
            let jpeg = TrainingRandom.unit(using: &extra) < jpegProbability
            let quality = jpegQualityMin + TrainingRandom.int(jpegQualityMax - jpegQualityMin + 1, using: &extra)
            let p = out.data + n * 3 * plane
            if blur { gaussianBlur(p, channels: 3, height: h, width: w, sigma: sigma) }
            if resize {
                let image = Tensor(shape: [1, 3, h, w], Array(UnsafeBufferPointer(start: p, count: 3 * plane)))
                let sh = Swift.max(2, Int(Float(h) * scale)), sw = Swift.max(2, Int(Float(w) * scale))
                let back = image.resizedBicubicAntialiased(height: sh, width: sw).resizedBicubicAntialiased(height: h, width: w)
                p.update(from: back.data, count: 3 * plane)
            }
            if addNoise {
                let z = noise.data
                for i in 0..<(3 * plane) { p[i] += std * z[i] }
            }
            for i in 0..<(3 * plane) { p[i] = Swift.min(Swift.max(p[i], -1), 1) }
            if jpeg {
                let slice = Tensor(shape: [1, 3, h, w], Array(UnsafeBufferPointer(start: p, count: 3 * plane)))
                let image = try RGBImage(data: try RGBImage(tensor: slice).jpegData(quality: quality))
                p.update(from: image.tensor().data, count: 3 * plane)
            }
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
