import UnCLIPTensor

/// The first stage of unCLIP (paper §2.1): CLIP text conditioning → CLIP image embeddings.
///
/// `DiffusionPrior` is the paper's diffusion prior (diffusers' `PriorTransformer`); another prior (the paper's
/// autoregressive one) conforms the same way and is picked by its `_class_name` in `model_index.json`.
public protocol UnCLIPPrior {
    /// CLIP image embeddings [B, E] in raw CLIP space for the B prompts of `text` (its rows are [unconditional;
    /// conditional] when `options.classifierFreeGuidance`).
    func sample(_ text: TextConditioning, batch: Int, options: SamplingOptions, noise: inout some NoiseSource,
                observer: RunObserver) throws -> Tensor
}

/// The diffusion prior: a `PriorTransformer` predicting x̂₀ of the (normalised) image embedding, sampled with the
/// unCLIP scheduler and guided on x̂₀.
public struct DiffusionPrior: UnCLIPPrior {
    public let prior: PriorTransformer
    public let scheduler: UnCLIPScheduler

    public init(prior: PriorTransformer, scheduler: UnCLIPScheduler) {
        self.prior = prior
        self.scheduler = scheduler
    }

    public func sample(_ text: TextConditioning, batch b: Int, options: SamplingOptions, noise: inout some NoiseSource,
                       observer: RunObserver) throws -> Tensor {
        var scheduler = self.scheduler
        try scheduler.setTimesteps(options.priorSteps)
        var loop = DenoisingLoop(scheduler, stage: .prior,
                                 guidance: Guidance(isEnabled: options.classifierFreeGuidance, scale: options.priorGuidance),
                                 observer: observer)
        let x = try loop.initialLatent([b, prior.config.embeddingDim], noise: &noise) * scheduler.initNoiseSigma
        let latents = try loop.run(from: x, noise: &noise) { input, t in
            prior(input, timestep: t, projEmbedding: text.promptEmbeds, encoderHiddenStates: text.hiddenStates,
                  attentionMask: text.mask)
        }
        let embeddings = prior.postProcessLatents(latents)
        observer.emit("image_embeddings", embeddings)
        return embeddings
    }
}
