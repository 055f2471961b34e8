import Foundation
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

/// The autoregressive prior (paper §2.1): samples the quantised PCA coordinates of z_i one at a time with a KV cache,
/// conditioned on a dot-product token drawn from the top half of the training distribution of z_i · z_t (the
/// paper's choice: it gives embeddings closer to the caption), guided on the logits.
///
/// Every random choice comes from the prior stage's noise stream, as uniform numbers Φ(z) of its Gaussian draws:
/// draw 0 picks the dot-product quantile, draw k + 1 samples coordinate k. A seed therefore fixes the embedding, and
/// recorded noise replays it.
public struct AutoregressivePrior: UnCLIPPrior {
    public let model: AutoregressivePriorTransformer
    /// Decode with the KV cache (the default); false recomputes the whole sequence at every position (for tests).
    public var usesCache = true

    public init(model: AutoregressivePriorTransformer) { self.model = model }

    public func sample(_ text: TextConditioning, batch b: Int, options: SamplingOptions, noise: inout some NoiseSource,
                       observer: RunObserver) throws -> Tensor {
        let guided = options.classifierFreeGuidance, k = model.config.numComponents, n = model.config.numBuckets
        let rows = guided ? 2 * b : b
        guard text.promptEmbeds.shape[0] == rows else {
            throw PipelineArgumentError("the autoregressive prior got \(text.promptEmbeds.shape[0]) text rows for a batch of \(b)\(guided ? " with guidance" : "")")
        }
        // Conditional rows: a dot product from the training set's top half; unconditional rows: "no caption".
        let dots = try Self.uniforms(noise.noise(stage: .prior, index: 0, shape: [b])).map { model.dotToken(quantile: 0.5 + 0.5 * $0) }
        let dotTokens = (guided ? Array(repeating: model.noCaptionDotToken, count: b) : []) + dots
        var tokens = [[Int]](repeating: [], count: b)
        var cache: AutoregressivePriorTransformer.Cache?
        var logits: Tensor
        if usesCache {
            let started = model.start(textEmbeds: text.promptEmbeds, hiddenStates: text.hiddenStates, mask: text.mask, dotTokens: dotTokens)
            logits = started.logits
            cache = started.cache
        } else {
            logits = lastLogits(text, dotTokens: dotTokens, tokens: tokens, guided: guided)
        }
        for position in 0..<k {
            let scores = Guidance(isEnabled: guided, scale: options.priorGuidance).combine(logits)  // [b, N]
            let u = try Self.uniforms(noise.noise(stage: .prior, index: position + 1, shape: [b]))
            let picked = Self.sampleCategorical(scores, uniforms: u)
            for r in 0..<b { tokens[r].append(picked[r]) }
            try observer.report(.prior, step: position + 1, of: k)
            guard position + 1 < k else { break }
            let fed = guided ? picked + picked : picked
            logits = usesCache ? model.next(fed, cache: &cache!) : lastLogits(text, dotTokens: dotTokens, tokens: tokens, guided: guided)
            precondition(logits.shape == [rows, n])
        }
        let code = model.quantizer
        let embeddings = Tensor(shape: [b, model.config.embeddingDim], tokens.flatMap { code.decode($0) })
        observer.emit("prior_tokens", Tensor(shape: [b, k], tokens.flatMap { $0.map(Float.init) }))
        observer.emit("image_embeddings", embeddings)
        return embeddings
    }

    /// The uncached path: the whole sequence again, the last position's logits [rows, N].
    private func lastLogits(_ text: TextConditioning, dotTokens: [Int], tokens: [[Int]], guided: Bool) -> Tensor {
        let fed = guided ? tokens + tokens : tokens
        let all = model(textEmbeds: text.promptEmbeds, hiddenStates: text.hiddenStates, mask: text.mask, dotTokens: dotTokens, tokens: fed)
        let m = all.shape[1]
        return all.sliced(axis: 1, (m - 1)..<m).reshaped([all.shape[0], all.shape[2]])
    }

    /// Φ(z): standard normal draws → uniform numbers in (0, 1).
    static func uniforms(_ z: Tensor) -> [Float] {
        z.toArray().map { Float(0.5 * erfc(-Double($0) / 2.0.squareRoot())) }
    }

    /// One index per row of `logits` [B, N], drawn from softmax(row) by inverting its cumulative sum at `uniforms`.
    static func sampleCategorical(_ logits: Tensor, uniforms: [Float]) -> [Int] {
        let (b, n) = (logits.shape[0], logits.shape[1])
        let p = logits.toArray()
        return (0..<b).map { r in
            let row = p[(r * n)..<((r + 1) * n)]
            let top = Double(row.max()!)
            let weights = row.map { exp(Double($0) - top) }
            let target = Double(uniforms[r]) * weights.reduce(0, +)
            var acc = 0.0
            for (i, w) in weights.enumerated() {
                acc += w
                if acc > target { return i }
            }
            return n - 1
        }
    }
}
