import UnCLIPTensor

/// The decoder's conditioning for a batch (paper §2.1): text_proj's context tokens and additive time embedding from
/// the CLIP image embeddings and the caption, and the attention mask over the context.
public struct DecoderConditioning {
    /// [B′, K + L, X]: K extra tokens projected from the image embedding, then the L projected caption tokens.
    public var context: Tensor
    /// [B′, Tm], added to the timestep embedding.
    public var additiveTime: Tensor
    /// [B′][K + L].
    public var mask: [[Int]]
    /// Whether the rows are [unconditional; conditional] (the unconditional image embedding is text_proj's learned
    /// null embedding).
    public var guided: Bool

    /// The conditioning of `imageEmbeddings` [B, E] with caption encodings [B′, E], [B′, L, E] and mask [B′][L],
    /// B′ = 2B when `guided`. The one place it is built: sampling, the manipulations and the decoder trainer.
    public init(textProj: UnCLIPTextProjModel, imageEmbeddings: Tensor, promptEmbeds: Tensor, hiddenStates: Tensor,
                textMask: [[Int]], guided: Bool) {
        (context, additiveTime) = textProj(imageEmbeddings: imageEmbeddings, promptEmbeds: promptEmbeds,
                                           textEncoderHiddenStates: hiddenStates, classifierFreeGuidance: guided)
        // Matches diffusers: the extra CLIP tokens are always attended, then the caption's mask.
        let extra = context.shape[1] - (textMask.first?.count ?? 0)
        mask = textMask.map { Array(repeating: 1, count: extra) + $0 }
        self.guided = guided
    }
}

/// The unCLIP decoder stage: text_proj, the `UNet2DConditionModel` and its scheduler.
public struct UnCLIPDecoder {
    public let textProj: UnCLIPTextProjModel
    public let unet: UNet2DConditionModel
    public let scheduler: UnCLIPScheduler

    public init(textProj: UnCLIPTextProjModel, unet: UNet2DConditionModel, scheduler: UnCLIPScheduler) {
        self.textProj = textProj
        self.unet = unet
        self.scheduler = scheduler
    }

    /// The side of the decoder's square images.
    public var sampleSize: Int { unet.config.sampleSize }

    /// The conditioning of image embeddings [B, E] with encoded captions (rows [unconditional; conditional] when
    /// guided).
    public func conditioning(imageEmbeddings: Tensor, text: TextConditioning, guided: Bool) -> DecoderConditioning {
        DecoderConditioning(textProj: textProj, imageEmbeddings: imageEmbeddings, promptEmbeds: text.promptEmbeds,
                            hiddenStates: text.hiddenStates, textMask: text.mask, guided: guided)
    }

    /// The UNet's raw output at (x, t) under `conditioning`.
    func denoiser(_ c: DecoderConditioning) -> (Tensor, Int) -> Tensor {
        { x, t in unet(x, timestep: t, encoderHiddenStates: c.context, classLabels: c.additiveTime, attentionMask: c.mask) }
    }

    /// Guidance on the prediction channels; a learned variance comes from the conditional half.
    func guidance(_ c: DecoderConditioning, scale: Float) -> Guidance {
        Guidance(isEnabled: c.guided, scale: scale, guidedChannels: unet.config.inChannels)
    }

    /// Ancestral sampling with the unCLIP scheduler → images [B, 3, s, s] in [−1, 1].
    public func sample(_ c: DecoderConditioning, batch b: Int, steps: Int, guidance scale: Float,
                       noise: inout some NoiseSource, observer: RunObserver) throws -> Tensor {
        var scheduler = self.scheduler
        try scheduler.setTimesteps(steps)
        var loop = DenoisingLoop(scheduler, stage: .decoder, guidance: guidance(c, scale: scale), observer: observer)
        let s = sampleSize
        let x = try loop.initialLatent([b, unet.config.inChannels, s, s], noise: &noise) * scheduler.initNoiseSigma
        let small = try loop.run(from: x, noise: &noise, model: denoiser(c)).clamped(min: -1, max: 1)
        observer.emit("image_small", small)
        return small
    }

    /// Inpainting (RePaint) with the unCLIP scheduler → images [B, 3, s, s] in [−1, 1]: `sample`'s run with the known
    /// region (at the decoder's resolution) replaced after every step and the jumps of `schedule`; the sampler's draws
    /// are those of `sample`, the known region's and the jumps' come from the decoder's auxiliary streams.
    public func inpaint(_ c: DecoderConditioning, batch b: Int, steps: Int, guidance scale: Float, known: KnownRegion,
                        schedule: ResamplingSchedule, noise: inout some NoiseSource, observer: RunObserver) throws -> Tensor {
        var scheduler = self.scheduler
        try scheduler.setTimesteps(steps)
        var loop = DenoisingLoop(scheduler, stage: .decoder, guidance: guidance(c, scale: scale), observer: observer)
        let s = sampleSize
        let x = try loop.initialLatent([b, unet.config.inChannels, s, s], noise: &noise) * scheduler.initNoiseSigma
        let small = try loop.inpaint(from: x, known: known, schedule: schedule, noise: &noise, model: denoiser(c))
            .clamped(min: -1, max: 1)
        observer.emit("image_small", small)
        return small
    }

    /// DDIM sampling from latents x_T [N, 3, s, s] → images in [−1, 1]; with η > 0 the step noise is drawn for the
    /// decoder stage.
    public func sampleDDIM(latents: Tensor, _ c: DecoderConditioning, options: DDIMOptions, noise: inout some NoiseSource,
                           observer: RunObserver) throws -> Tensor {
        let ddim = try DDIMSampler(scheduler: scheduler, steps: options.steps, depth: options.depth)
        var loop = DenoisingLoop(DDIMSampling(ddim, eta: options.eta), stage: .decoder,
                                 guidance: guidance(c, scale: options.guidance), traceName: "ddim", observer: observer)
        return try loop.run(from: latents, noise: &noise, model: denoiser(c)).clamped(min: -1, max: 1)
    }

    /// DDIM inversion of images [N, 3, s, s] in [−1, 1] → the latents x_T from which η = 0 sampling with the same
    /// steps and guidance redraws them.
    public func invert(images x0: Tensor, _ c: DecoderConditioning, options: DDIMOptions, observer: RunObserver) throws -> Tensor {
        let ddim = try DDIMSampler(scheduler: scheduler, steps: options.steps, depth: options.depth)
        var loop = DenoisingLoop(DDIMInversion(ddim, refinements: options.inversionRefinements), stage: .inversion,
                                 guidance: guidance(c, scale: options.guidance), traceName: "invert", observer: observer)
        var none = NoNoise()
        return try loop.run(from: x0, noise: &none, model: denoiser(c))
    }
}

/// The noise source of a run that draws none (DDIM inversion): asking for a draw is an error.
struct NoNoise: NoiseSource {
    func noise(stage: Stage, index: Int, shape: [Int]) throws -> Tensor {
        throw PipelineArgumentError("the \(stage) stage drew noise in a run that has no noise source")
    }
}
