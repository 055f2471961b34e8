import Foundation
import UnCLIPNN
import UnCLIPImage
import UnCLIPModels

/// Settings of the decoder: a UNet2DConditionModel with UnCLIPTextProjModel that generates the 32 × 32 image from a
/// CLIP image embedding and the caption's CLIP text features (unCLIP §2.1, GLIDE-style conditioning).
///
/// Output: out_channels 6, the prediction (x₀ by default, or ε) and a per-pixel variance interpolation value v, with
/// `decoder_scheduler` `learned_range` — Karlo's layout, which also keeps the directory loadable by diffusers'
/// UnCLIPPipeline (its guidance code splits the decoder output into prediction and variance halves and fails on a
/// 3-channel decoder). v is either regressed to −1 (β̃_t: fixed-small variance, the default) or trained with Improved
/// DDPM's L_vb, the KL between the true posterior q(x_{t−1} | x_t, x₀) and the model's Gaussian with a stop-gradient
/// mean (the paper's learned variance; at t = 0 the KL uses the clipped posterior variance instead of the discretised
/// Gaussian likelihood, a simplification for one term in a thousand). docs/training.md has the measurements behind
/// the defaults.
public struct DecoderTrainingConfiguration: Codable, Sendable {
    /// How the decoder's variance channels are trained.
    public enum VarianceLoss: String, Codable, Sendable, CaseIterable {
        case fixedSmall = "fixed_small"
        case kl
    }

    /// What the decoder is conditioned on.
    public enum Conditioning: String, Codable, Sendable, CaseIterable {
        /// unCLIP's decoder: the CLIP image embedding and the caption.
        case imageEmbedding = "image_embedding"
        /// The paper's GLIDE baseline (§5.2): the caption alone. The same UNet and text_proj, with the image
        /// embedding's place always taken by text_proj's learned null embedding (a learned constant), so every
        /// weight the unCLIP decoder has is trained and the architectures stay identical; written as
        /// `glide_decoder`, `glide_text_proj`, `glide_decoder_scheduler` beside the unCLIP decoder.
        case caption
    }

    public var training = TrainingSchedule(steps: 8500, batchSize: 32, learningRate: 5e-4, minLearningRate: 1e-5,
                                           warmupSteps: 150, weightDecay: 0.0, gradientClip: 1.0, emaDecay: 0.995,
                                           checkpointEvery: 200, seed: 3)
    /// Channels per resolution level (each a multiple of `normGroups`); the first level has no attention.
    public var blockOutChannels = [32, 64, 128]
    public var layersPerBlock = 1
    /// Per-head size of the cross-attention (heads = channels / head size).
    public var attentionHeadDim = 32
    /// Width of the context tokens (text_proj's `cross_attention_dim`).
    public var crossAttentionDim = 128
    /// Extra context tokens made from the CLIP image embedding.
    public var extraContextTokens = 4
    public var normGroups = 32
    /// Probability of replacing the image embedding by text_proj's learned null embedding.
    public var imageEmbeddingDropout: Float = 0.1
    /// Probability of replacing the caption by the empty caption (0.5; 0.2, GLIDE's, when `conditioning` is
    /// `caption` and the key is not given).
    public var captionDropout: Float = 0.5
    /// What the UNet's first three channels predict: the clean image x₀ (`sample`, the default) or the noise ε
    /// (`epsilon`, Karlo's choice). x₀ because small ε decoders trained briefly tint whole images — at high noise a
    /// 32 × 32 noise image's mean colour is as large as the signal, and an ε model must be accurate to √ᾱ_t to tell
    /// them apart — while x₀ decoders learn the white background directly (docs/training.md, "Prediction target and
    /// variance").
    public var predictionType: UnCLIPSchedulerConfig.PredictionType = .sample
    /// How the variance channels v are trained. `fixed_small` (the default): v is regressed to −1, which makes the
    /// scheduler's learned_range variance the posterior variance β̃_t, i.e. fixed_small variance, while the
    /// directory keeps the 6-channel decoder diffusers' pipeline needs. `kl`: Improved DDPM's L_vb (the paper's
    /// learned variance); with x₀ prediction its low-noise x₀ errors make the KL ask for variances far above β_t,
    /// outside the [−1, 1] the scheduler expects of v, which ruins sampling (docs/training.md, "Prediction target
    /// and variance").
    public var varianceLoss: VarianceLoss = .fixedSmall
    /// `image_embedding` (unCLIP) or `caption` (the GLIDE-style baseline).
    public var conditioning: Conditioning = .imageEmbedding
    /// γ of the weight of the prediction MSE: clamp(SNR(t), 1, γ) for x₀ prediction (low-noise steps, whose x₀ is
    /// the final picture, count up to γ times more), clamp(1/SNR(t), 1, γ) for ε prediction (high-noise steps'
    /// x₀ errors count up to γ times more); 1 = the plain MSE.
    public var snrWeightCap: Float = 5
    public var precision: WeightPrecision = .fp16
    /// A pipeline directory whose `decoder` and `text_proj` weights start the run instead of random ones (fine-tuning
    /// or extending a finished run); its configs must match these settings.
    public var initializeFrom: String? = nil

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case training, blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block"
        case attentionHeadDim = "attention_head_dim", crossAttentionDim = "cross_attention_dim"
        case extraContextTokens = "extra_context_tokens", normGroups = "norm_groups"
        case imageEmbeddingDropout = "image_embedding_dropout", captionDropout = "caption_dropout"
        case precision, initializeFrom = "initialize_from", predictionType = "prediction_type"
        case snrWeightCap = "snr_weight_cap", varianceLoss = "variance_loss", conditioning
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self, section: "decoder")
        let d = DecoderTrainingConfiguration()
        training = try c.decodeIfPresent(TrainingScheduleOverride.self, forKey: .training)?.applied(to: d.training) ?? d.training
        blockOutChannels = try c.decodeIfPresent([Int].self, forKey: .blockOutChannels) ?? d.blockOutChannels
        layersPerBlock = try c.decodeIfPresent(Int.self, forKey: .layersPerBlock) ?? d.layersPerBlock
        attentionHeadDim = try c.decodeIfPresent(Int.self, forKey: .attentionHeadDim) ?? d.attentionHeadDim
        crossAttentionDim = try c.decodeIfPresent(Int.self, forKey: .crossAttentionDim) ?? d.crossAttentionDim
        extraContextTokens = try c.decodeIfPresent(Int.self, forKey: .extraContextTokens) ?? d.extraContextTokens
        normGroups = try c.decodeIfPresent(Int.self, forKey: .normGroups) ?? d.normGroups
        imageEmbeddingDropout = try c.decodeIfPresent(Float.self, forKey: .imageEmbeddingDropout) ?? d.imageEmbeddingDropout
        conditioning = try c.decodeIfPresent(Conditioning.self, forKey: .conditioning) ?? d.conditioning
        // GLIDE drops the caption 20 % of the time; unCLIP's decoder, which also has the image embedding, 50 %.
        captionDropout = try c.decodeIfPresent(Float.self, forKey: .captionDropout) ?? (conditioning == .caption ? 0.2 : d.captionDropout)
        precision = try c.decodeIfPresent(WeightPrecision.self, forKey: .precision) ?? d.precision
        initializeFrom = try c.decodeIfPresent(String.self, forKey: .initializeFrom)
        predictionType = try c.decodeIfPresent(UnCLIPSchedulerConfig.PredictionType.self, forKey: .predictionType) ?? d.predictionType
        snrWeightCap = try c.decodeIfPresent(Float.self, forKey: .snrWeightCap) ?? d.snrWeightCap
        varianceLoss = try c.decodeIfPresent(VarianceLoss.self, forKey: .varianceLoss) ?? d.varianceLoss
    }

    /// The stage this run trains: the unCLIP decoder or the GLIDE-style baseline (its checkpoints and messages).
    public var stage: Stage { conditioning == .caption ? .baselineDecoder : .decoder }

    /// The component folders it writes: `decoder`, `text_proj`, `decoder_scheduler`, or the baseline's `glide_…`.
    public var componentNames: (decoder: String, textProj: String, scheduler: String) {
        conditioning == .caption ? ("glide_decoder", "glide_text_proj", "glide_decoder_scheduler")
                                 : ("decoder", "text_proj", "decoder_scheduler")
    }

    func validate() throws {
        try training.validate(stage: stage)
        func check(_ ok: Bool, _ option: String, _ value: Any, _ rule: String) throws {
            if !ok { throw TrainingError.invalidConfiguration(stage: Stage.decoder.key, option: option, value: "\(value)", rule: rule) }
        }
        try check(blockOutChannels.count >= 2, "block_out_channels", blockOutChannels, "at least two levels")
        try check(blockOutChannels.allSatisfy { $0 % normGroups == 0 && $0 % attentionHeadDim == 0 }, "block_out_channels",
                  blockOutChannels, "multiples of norm_groups (\(normGroups)) and attention_head_dim (\(attentionHeadDim))")
        try check(crossAttentionDim % normGroups == 0, "cross_attention_dim", crossAttentionDim, "a multiple of norm_groups")
        try check(layersPerBlock >= 1, "layers_per_block", layersPerBlock, "at least 1")
        try check((0...1).contains(imageEmbeddingDropout), "image_embedding_dropout", imageEmbeddingDropout, "in [0, 1]")
        try check((0...1).contains(captionDropout), "caption_dropout", captionDropout, "in [0, 1]")
        try check(snrWeightCap >= 1 && snrWeightCap.isFinite, "snr_weight_cap", snrWeightCap, "a finite number ≥ 1")
    }

    /// diffusers' `UNet2DConditionModel` config for `decoder/config.json` (Karlo's block types at this size).
    func decoderConfig(sampleSize: Int) -> UNet2DConditionConfig {
        let n = blockOutChannels.count
        var c = UNet2DConditionConfig()
        c.sampleSize = sampleSize
        c.inChannels = 3
        c.outChannels = 6
        c.layersPerBlock = .single(layersPerBlock)
        c.blockOutChannels = blockOutChannels
        c.downBlockTypes = ["ResnetDownsampleBlock2D"] + Array(repeating: "SimpleCrossAttnDownBlock2D", count: n - 1)
        c.midBlockType = "UNetMidBlock2DSimpleCrossAttn"
        c.upBlockTypes = Array(repeating: "SimpleCrossAttnUpBlock2D", count: n - 1) + ["ResnetUpsampleBlock2D"]
        c.crossAttentionDim = crossAttentionDim
        c.attentionHeadDim = .single(attentionHeadDim)
        c.classEmbedType = "identity"
        c.resnetTimeScaleShift = .scaleShift
        c.normNumGroups = normGroups
        return c  // norm_eps, flip_sin_to_cos and freq_shift keep diffusers' defaults
    }

    /// `text_proj/config.json`.
    func textProjConfig(embeddingDim: Int) -> UnCLIPTextProjConfig {
        var c = UnCLIPTextProjConfig()
        c.clipExtraContextTokens = extraContextTokens
        c.clipEmbeddingsDim = embeddingDim
        c.timeEmbedDim = 4 * blockOutChannels[0]
        c.crossAttentionDim = crossAttentionDim
        return c
    }

    /// The decoder scheduler: learned-range variance, as Karlo's (see the type's documentation), and the configured
    /// prediction type.
    public var schedulerConfig: UnCLIPSchedulerConfig {
        UnCLIPSchedulerConfig(varianceType: .learnedRange, clipSample: true, clipSampleRange: 1, predictionType: predictionType)
    }

    /// Trains decoder and text_proj on the frozen CLIP in `out`; writes `decoder/`, `text_proj/`, `decoder_scheduler/`
    /// (`glide_decoder/`, `glide_text_proj/`, `glide_decoder_scheduler/` for the caption-only baseline).
    @discardableResult
    public func run(dataset: some CaptionedImageDataset, out: URL, resume: Bool = false,
                    progress: (TrainingEvent) -> Void = { _ in }) throws -> TrainingOutcome {
        try validate()
        let stage = self.stage, names = componentNames, captionOnly = conditioning == .caption
        guard dataset.count > 0 else { throw TrainingError.emptyDataset(stage: stage) }
        let clip = try FrozenCLIP(out: out, stage: stage)
        let e = try clip.embeddingDim(stage: stage, projector: names.textProj)
        // The decoder works at the CLIP resolution (32 × 32 by default): both are box-filtered from the same render.
        let size = clip.imageSize
        let model = DecoderModel(text_proj: try UnCLIPTextProjModel(textProjConfig(embeddingDim: e)),
                                 decoder: try UNet2DConditionModel(decoderConfig(sampleSize: size)))
        var initRNG = TrainingRandom.initialization(seed: training.seed)
        model.resetParameters(using: &initRNG)
        if let initializeFrom {
            let source = try PipelineDirectory(URL(fileURLWithPath: initializeFrom))
            try model.decoder.load(try source.weights(names.decoder))
            try model.text_proj.load(try source.weights(names.textProj))
            progress(.message(stage: stage, text: "initialised \(names.decoder) and \(names.textProj) from \(initializeFrom)"))
        }
        model.requiresGrad(true)
        let nullEmbedding = model.text_proj.stateDict()["learned_classifier_free_guidance_embeddings"]!

        let loop = try TrainingLoop(stage: stage, model: model, schedule: training,
                                    folder: checkpointFolder(stage, in: out), configJSON: try jsonString(self))
        try loop.restoreIfRequested(resume, progress: progress)
        let scheduler = try UnCLIPScheduler(config: schedulerConfig)
        var sampler = BatchSampler(count: dataset.count, batchSize: training.batchSize, seed: training.seed)
        let seed = training.seed
        let outcome = try loop.run(progress: progress) { step in
            let (images, captions) = loadBatch(dataset, indices: sampler.indices(step: step), stage: stage, progress: progress) {
                try downsampled($0, to: size)
            }
            guard !images.isEmpty else { return nil }
            let b = images.count
            var dropRNG = TrainingRandom.generator(seed: seed, step: step, .dropout)
            // The same draws in both conditionings (the baseline replaces every embedding, so it ignores its own).
            let dropImage = (0..<b).map { _ in TrainingRandom.unit(using: &dropRNG) < imageEmbeddingDropout || captionOnly }
            let dropCaption = (0..<b).map { _ in TrainingRandom.unit(using: &dropRNG) < captionDropout }
            let text = clip.encode(captions, dropped: dropCaption)
            var embeddings = captionOnly ? Tensor.zeros([b, e]) : clip.imageEmbeddings(images)  // [B, E]
            if dropImage.contains(true) {
                // The null embedding is what text_proj prepends for the unconditional half at sampling time; selecting
                // it here (with its gradient) trains it.
                let keep = Tensor(shape: [b, 1], dropImage.map { $0 ? 0 : 1 })
                embeddings = Tensor.where(keep, embeddings, nullEmbedding.reshaped([1, e]))
            }
            let conditioning = DecoderConditioning(textProj: model.text_proj, imageEmbeddings: embeddings, promptEmbeds: text.embeds,
                                                   hiddenStates: text.hidden, textMask: text.mask, guided: false)
            let x0 = try RGBImage.batch(images)  // [B, 3, S, S] in [−1, 1]
            var noiseRNG = TrainingRandom.generator(seed: seed, step: step, .noise)
            let noise = Tensor.randn(x0.shape, using: &noiseRNG)
            var timeRNG = TrainingRandom.generator(seed: seed, step: step, .timesteps)
            let timesteps = (0..<b).map { _ in TrainingRandom.int(scheduler.config.numTrainTimesteps, using: &timeRNG) }
            let c = HybridLossCoefficients(scheduler: scheduler, timesteps: timesteps, predictionType: predictionType, snrWeightCap: snrWeightCap)
            let xt = withNoGrad { x0 * c.sqrtAlphaBar + noise * c.sqrtOneMinusAlphaBar }
            let output = model.decoder(xt, timesteps: timesteps, encoderHiddenStates: conditioning.context,
                                       classLabels: conditioning.additiveTime, attentionMask: conditioning.mask)
            let parts = output.split(sizes: [3, 3], axis: 1)  // x₀ or ε, and the variance interpolation v
            return hybridLoss(prediction: parts[0], predictionType: predictionType, v: parts[1], noise: noise, x0: x0, xt: xt, c,
                              varianceLoss: varianceLoss)
        }
        if outcome.exported {
            try ComponentWriter.writeModel(model.decoder, config: model.decoder.config, as: names.decoder, in: out, precision: precision)
            try ComponentWriter.writeModel(model.text_proj, config: model.text_proj.config, as: names.textProj, in: out, precision: precision)
            try ComponentWriter.writeScheduler(schedulerConfig, as: names.scheduler, in: out)
            try ComponentWriter.writeModelIndex(in: out)
            progress(.message(stage: stage, text: "wrote \(names.decoder), \(names.textProj) and \(names.scheduler) (EMA weights)"))
        }
        return outcome
    }
}

/// text_proj and the decoder UNet, trained together (checkpoint keys `text_proj.*`, `decoder.*`).
final class DecoderModel: Module {
    let text_proj: UnCLIPTextProjModel
    let decoder: UNet2DConditionModel
    init(text_proj: UnCLIPTextProjModel, decoder: UNet2DConditionModel) {
        self.text_proj = text_proj
        self.decoder = decoder
    }
}

/// Per-sample diffusion coefficients [B, 1, 1, 1] for the hybrid loss, from the training schedule.
struct HybridLossCoefficients {
    let sqrtAlphaBar, sqrtOneMinusAlphaBar: Tensor
    /// Per-sample weight of the prediction MSE: clamp(SNR(t), 1, cap) for x₀, clamp(1/SNR(t), 1, cap) for ε.
    let mseWeight: Tensor
    /// Posterior mean μ̃ = meanX0·x₀ + meanXt·x_t, and the log variances ln β̃_t (clipped) and ln β_t.
    let meanX0, meanXt: Tensor
    let posteriorLogVariance, betaLogVariance: Tensor

    init(scheduler: UnCLIPScheduler, timesteps: [Int], predictionType: UnCLIPSchedulerConfig.PredictionType = .epsilon,
         snrWeightCap: Float = 1) {
        func column(_ values: [Double]) -> Tensor { Tensor(shape: [values.count, 1, 1, 1], values.map { Float($0) }) }
        let abar = scheduler.alphasCumprod.map(Double.init), beta = scheduler.betas.map(Double.init)
        // ln β̃_t with β̃_0 = 0 replaced by β̃_1, as Improved DDPM's `posterior_log_variance_clipped`.
        func posteriorVariance(_ t: Int) -> Double {
            let prev = t > 0 ? abar[t - 1] : 1
            return (1 - prev) / (1 - abar[t]) * beta[t]
        }
        sqrtAlphaBar = column(timesteps.map { abar[$0].squareRoot() })
        mseWeight = column(timesteps.map { t in
            let snr = abar[t] / (1 - abar[t])
            return min(max(predictionType == .sample ? snr : 1 / snr, 1), Double(snrWeightCap))
        })
        sqrtOneMinusAlphaBar = column(timesteps.map { (1 - abar[$0]).squareRoot() })
        meanX0 = column(timesteps.map { t in (t > 0 ? abar[t - 1] : 1).squareRoot() * beta[t] / (1 - abar[t]) })
        meanXt = column(timesteps.map { t in (1 - beta[t]).squareRoot() * (1 - (t > 0 ? abar[t - 1] : 1)) / (1 - abar[t]) })
        posteriorLogVariance = column(timesteps.map { t in Foundation.log(posteriorVariance(t > 0 ? t : 1)) })
        betaLogVariance = column(timesteps.map { Foundation.log(beta[$0]) })
    }
}

/// The MSE of the prediction (x₀ or ε) plus the variational-bound term that trains the learned variance (Improved
/// DDPM's hybrid loss).
///
/// The model's mean is computed from a stop-gradient prediction, so L_vb only moves v; v ∈ [−1, 1] interpolates the
/// log variance between ln β̃_t and ln β_t exactly as `UnCLIPScheduler`'s learned_range does at sampling time.
func hybridLoss(prediction: Tensor, predictionType: UnCLIPSchedulerConfig.PredictionType, v: Tensor, noise: Tensor,
                x0: Tensor, xt: Tensor, _ c: HybridLossCoefficients,
                varianceLoss: DecoderTrainingConfiguration.VarianceLoss = .kl) -> Tensor {
    let diff = prediction - (predictionType == .sample ? x0 : noise)
    let mse = (diff * diff * c.mseWeight).mean()
    if varianceLoss == .fixedSmall {
        // v = −1 selects ln β̃_t in learned_range: the fixed_small variance.
        let gap = v + 1
        return mse + (gap * gap).mean()
    }
    let (trueMean, modelMean) = withNoGrad { () -> (Tensor, Tensor) in
        let x0Predicted = predictionType == .sample
            ? prediction.detached() : (xt - c.sqrtOneMinusAlphaBar * prediction.detached()) / c.sqrtAlphaBar
        return (c.meanX0 * x0 + c.meanXt * xt, c.meanX0 * x0Predicted + c.meanXt * xt)
    }
    let frac = (v + 1) * 0.5
    let modelLogVariance = frac * c.betaLogVariance + (1 - frac) * c.posteriorLogVariance
    let meanGap = trueMean - modelMean
    // KL(N(μ̃, β̃) ‖ N(μθ, σθ²)) per element, in bits.
    let kl = ((modelLogVariance - c.posteriorLogVariance) + (c.posteriorLogVariance - modelLogVariance).exp()
              + meanGap * meanGap * (-modelLogVariance).exp() - 1) * Float(0.5 / Foundation.log(2.0))
    return mse + kl.mean()
}
