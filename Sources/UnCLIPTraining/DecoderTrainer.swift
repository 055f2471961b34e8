import Foundation
import UnCLIPNN
import UnCLIPImage
import UnCLIPModels

/// Settings of the decoder: a UNet2DConditionModel with UnCLIPTextProjModel that generates the 32 × 32 image from a
/// CLIP image embedding and the caption's CLIP text features (unCLIP §2.1, GLIDE-style conditioning).
///
/// Variance: fixed. The UNet predicts ε only (out_channels 3, plain ε-MSE) and `decoder_scheduler` uses
/// `fixed_small_log`, as the super-resolution stage does. Karlo's learned-range variance needs the hybrid loss
/// (ε-MSE plus the variational bound on a stop-gradient mean, Nichol & Dhariwal 2021) to mean anything; with a
/// handful of CPU-hours of training the simple loss is the better use of the model's capacity, and the learned
/// variance only pays off with few sampling steps. The pipeline handles the 3-channel output: under guidance it
/// splits the output channels into [3, out − 3] = [3, 0] and concatenates an empty variance part back.
public struct DecoderTrainingConfiguration: Codable, Sendable {
    public var training = TrainingSchedule(steps: 6000, batchSize: 32, learningRate: 2e-4, minLearningRate: 1e-5,
                                           warmupSteps: 300, weightDecay: 0.0, gradientClip: 1.0, emaDecay: 0.999,
                                           checkpointEvery: 250, seed: 3)
    /// Channels per resolution level (each a multiple of `normGroups`); the first level has no attention.
    public var blockOutChannels = [64, 128, 192]
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
    /// Probability of replacing the caption by the empty caption.
    public var captionDropout: Float = 0.5
    public var precision: WeightPrecision = .fp32

    public init() {}

    enum CodingKeys: String, CodingKey {
        case training, blockOutChannels = "block_out_channels", layersPerBlock = "layers_per_block"
        case attentionHeadDim = "attention_head_dim", crossAttentionDim = "cross_attention_dim"
        case extraContextTokens = "extra_context_tokens", normGroups = "norm_groups"
        case imageEmbeddingDropout = "image_embedding_dropout", captionDropout = "caption_dropout"
        case precision
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = DecoderTrainingConfiguration()
        training = try c.decodeIfPresent(TrainingScheduleOverride.self, forKey: .training)?.applied(to: d.training) ?? d.training
        blockOutChannels = try c.decodeIfPresent([Int].self, forKey: .blockOutChannels) ?? d.blockOutChannels
        layersPerBlock = try c.decodeIfPresent(Int.self, forKey: .layersPerBlock) ?? d.layersPerBlock
        attentionHeadDim = try c.decodeIfPresent(Int.self, forKey: .attentionHeadDim) ?? d.attentionHeadDim
        crossAttentionDim = try c.decodeIfPresent(Int.self, forKey: .crossAttentionDim) ?? d.crossAttentionDim
        extraContextTokens = try c.decodeIfPresent(Int.self, forKey: .extraContextTokens) ?? d.extraContextTokens
        normGroups = try c.decodeIfPresent(Int.self, forKey: .normGroups) ?? d.normGroups
        imageEmbeddingDropout = try c.decodeIfPresent(Float.self, forKey: .imageEmbeddingDropout) ?? d.imageEmbeddingDropout
        captionDropout = try c.decodeIfPresent(Float.self, forKey: .captionDropout) ?? d.captionDropout
        precision = try c.decodeIfPresent(WeightPrecision.self, forKey: .precision) ?? d.precision
    }

    func validate() throws {
        try training.validate(stage: "decoder")
        func check(_ ok: Bool, _ option: String, _ value: Any, _ rule: String) throws {
            if !ok { throw TrainingError.invalidConfiguration(stage: "decoder", option: option, value: "\(value)", rule: rule) }
        }
        try check(blockOutChannels.count >= 2, "block_out_channels", blockOutChannels, "at least two levels")
        try check(blockOutChannels.allSatisfy { $0 % normGroups == 0 && $0 % attentionHeadDim == 0 }, "block_out_channels",
                  blockOutChannels, "multiples of norm_groups (\(normGroups)) and attention_head_dim (\(attentionHeadDim))")
        try check(crossAttentionDim % normGroups == 0, "cross_attention_dim", crossAttentionDim, "a multiple of norm_groups")
        try check(layersPerBlock >= 1, "layers_per_block", layersPerBlock, "at least 1")
        try check((0...1).contains(imageEmbeddingDropout), "image_embedding_dropout", imageEmbeddingDropout, "in [0, 1]")
        try check((0...1).contains(captionDropout), "caption_dropout", captionDropout, "in [0, 1]")
    }

    /// diffusers' `UNet2DConditionModel` config for `decoder/config.json` (Karlo's block types at this size).
    func decoderConfig(sampleSize: Int) -> [String: Any] {
        let n = blockOutChannels.count
        return [
            "_class_name": "UNet2DConditionModel", "_diffusers_version": ComponentWriter.diffusersVersion,
            "sample_size": sampleSize, "in_channels": 3, "out_channels": 3, "layers_per_block": layersPerBlock,
            "block_out_channels": blockOutChannels,
            "down_block_types": ["ResnetDownsampleBlock2D"] + Array(repeating: "SimpleCrossAttnDownBlock2D", count: n - 1),
            "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
            "up_block_types": Array(repeating: "SimpleCrossAttnUpBlock2D", count: n - 1) + ["ResnetUpsampleBlock2D"],
            "cross_attention_dim": crossAttentionDim, "attention_head_dim": attentionHeadDim,
            "class_embed_type": "identity", "resnet_time_scale_shift": "scale_shift", "act_fn": "silu",
            "norm_num_groups": normGroups, "norm_eps": 1e-5, "flip_sin_to_cos": true, "freq_shift": 0,
            "center_input_sample": false, "mid_block_scale_factor": 1, "downsample_padding": 1,
            "only_cross_attention": false, "dual_cross_attention": false, "use_linear_projection": false,
            "upcast_attention": false, "resnet_skip_time_act": false, "resnet_out_scale_factor": 1.0,
            "time_embedding_type": "positional", "conv_in_kernel": 3, "conv_out_kernel": 3,
            "addition_embed_type": NSNull(), "encoder_hid_dim": NSNull(), "num_class_embeds": NSNull(),
            "time_embedding_act_fn": NSNull(), "timestep_post_act": NSNull(), "time_cond_proj_dim": NSNull(),
            "cross_attention_norm": NSNull(), "class_embeddings_concat": false, "mid_block_only_cross_attention": NSNull(),
        ]
    }

    /// `text_proj/config.json`.
    func textProjConfig(embeddingDim: Int) -> [String: Any] {
        [
            "_class_name": "UnCLIPTextProjModel", "_diffusers_version": ComponentWriter.diffusersVersion,
            "clip_extra_context_tokens": extraContextTokens, "clip_embeddings_dim": embeddingDim,
            "time_embed_dim": 4 * blockOutChannels[0], "cross_attention_dim": crossAttentionDim,
        ]
    }

    /// The decoder scheduler: ε prediction, fixed_small_log variance (see the type's documentation).
    public var schedulerConfig: UnCLIPSchedulerConfig {
        UnCLIPSchedulerConfig(varianceType: .fixedSmallLog, clipSample: true, clipSampleRange: 1, predictionType: .epsilon)
    }

    /// Trains decoder and text_proj on the frozen CLIP in `out`; writes `decoder/`, `text_proj/`, `decoder_scheduler/`.
    @discardableResult
    public func run(dataset: some CaptionedImageDataset, out: URL, resume: Bool = false,
                    progress: (TrainingEvent) -> Void = { _ in }) throws -> TrainingOutcome {
        try validate()
        guard dataset.count > 0 else { throw TrainingError.emptyDataset(stage: "decoder") }
        let clip = try FrozenCLIP(out: out, stage: "decoder")
        let e = clip.text.config.projectionDim
        guard clip.text.config.hiddenSize == e else {
            throw TrainingError.invalidConfiguration(stage: "decoder", option: "text_encoder hidden_size", value: "\(clip.text.config.hiddenSize)",
                                                     rule: "equal to projection_dim (\(e)): text_proj projects both with one width")
        }
        // The decoder works at the CLIP resolution (32 × 32 by default): both are box-filtered from the same render.
        let size = clip.imageSize
        let unetJSON = decoderConfig(sampleSize: size), projJSON = textProjConfig(embeddingDim: e)
        let model = DecoderModel(
            text_proj: UnCLIPTextProjModel(try ComponentWriter.decode(UnCLIPTextProjConfig.self, from: projJSON)),
            decoder: try UNet2DConditionModel(try ComponentWriter.decode(UNet2DConditionConfig.self, from: unetJSON)))
        var initRNG = TrainingRandom.initialization(seed: training.seed)
        model.resetParameters(using: &initRNG)
        model.requiresGrad(true)
        let nullEmbedding = model.text_proj.stateDict()["learned_classifier_free_guidance_embeddings"]!

        let loop = try TrainingLoop(stage: "decoder", model: model, schedule: training,
                                    folder: out.appendingPathComponent("checkpoints/decoder"), configJSON: try jsonString(self))
        try loop.restoreIfRequested(resume, progress: progress)
        let scheduler = try UnCLIPScheduler(config: schedulerConfig)
        var sampler = BatchSampler(count: dataset.count, batchSize: training.batchSize, seed: training.seed)
        let seed = training.seed
        let outcome = try loop.run(progress: progress) { step in
            let (images, captions) = loadBatch(dataset, indices: sampler.indices(step: step), stage: "decoder", progress: progress) {
                try downsampled($0, to: size)
            }
            guard !images.isEmpty else { return nil }
            let b = images.count
            var dropRNG = TrainingRandom.generator(seed: seed, step: step, .dropout)
            let dropImage = (0..<b).map { _ in TrainingRandom.unit(using: &dropRNG) < imageEmbeddingDropout }
            let dropCaption = (0..<b).map { _ in TrainingRandom.unit(using: &dropRNG) < captionDropout }
            let text = clip.encode(captions, dropped: dropCaption)
            var embeddings = clip.imageEmbeddings(images)  // [B, E]
            if dropImage.contains(true) {
                // The null embedding is what text_proj prepends for the unconditional half at sampling time; selecting
                // it here (with its gradient) trains it.
                let keep = Tensor(shape: [b, 1], dropImage.map { $0 ? 0 : 1 })
                embeddings = Tensor.where(keep, embeddings, nullEmbedding.reshaped([1, e]))
            }
            let (context, additiveTime) = model.text_proj(imageEmbeddings: embeddings, promptEmbeds: text.embeds,
                                                          textEncoderHiddenStates: text.hidden, classifierFreeGuidance: false)
            // Matches UnCLIPPipeline.runDecoder: the extra CLIP tokens are always attended, then the caption mask.
            let extra = context.shape[1] - text.mask[0].count
            let mask = text.mask.map { Array(repeating: 1, count: extra) + $0 }
            let x0 = RGBImageBatch.tensor(images)  // [B, 3, S, S] in [−1, 1]
            var noiseRNG = TrainingRandom.generator(seed: seed, step: step, .noise)
            let noise = Tensor.randn(x0.shape, using: &noiseRNG)
            var timeRNG = TrainingRandom.generator(seed: seed, step: step, .timesteps)
            return diffusionLoss(batch: b, scheduler: scheduler, rng: &timeRNG) { t, a, s in
                let xt = withNoGrad { x0 * a.perSample(rank: 4) + noise * s.perSample(rank: 4) }
                let prediction = model.decoder(xt, timesteps: t, encoderHiddenStates: context, classLabels: additiveTime,
                                               attentionMask: mask)
                return (prediction, noise)
            }
        }
        if outcome.exported {
            try ComponentWriter.writeModel(model.decoder, config: unetJSON, to: out.appendingPathComponent("decoder"),
                                           transformers: false, precision: precision)
            try ComponentWriter.writeModel(model.text_proj, config: projJSON, to: out.appendingPathComponent("text_proj"),
                                           transformers: false, precision: precision)
            try ComponentWriter.writeScheduler(schedulerConfig, to: out.appendingPathComponent("decoder_scheduler"))
            try ComponentWriter.writeModelIndex(in: out)
            progress(.message(stage: "decoder", text: "wrote decoder, text_proj and decoder_scheduler (EMA weights)"))
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

/// Images as one [N, 3, H, W] tensor in [−1, 1].
enum RGBImageBatch {
    static func tensor(_ images: [RGBImage]) -> Tensor {
        let h = images[0].height, w = images[0].width, plane = h * w
        let out = Tensor(uninitializedShape: [images.count, 3, h, w])
        let dst = out.data
        for (n, image) in images.enumerated() {
            image.pixels.withUnsafeBufferPointer { src in
                for c in 0..<3 {
                    let base = dst + (n * 3 + c) * plane
                    // Matches RGBImage.tensor: x / 127.5 − 1.
                    for i in 0..<plane { base[i] = Float(src[3 * i + c]) / 127.5 - 1 }
                }
            }
        }
        return out
    }
}
