import Foundation
import UnCLIPNN
import UnCLIPImage
import UnCLIPModels

/// Settings of the paper's autoregressive prior (§2.1): the CLIP image embedding reduced by PCA to the components
/// holding `variance_kept` of its variance, each coordinate quantised into `buckets` bins, and a causal Transformer
/// trained with cross-entropy to predict the coordinates in order, conditioned on the caption's encoded tokens, its
/// CLIP text embedding and a token for the quantised z_i · z_t; the caption (and with it the dot token) is dropped
/// `caption_dropout` of the time for classifier-free guidance.
public struct AutoregressivePriorTrainingConfiguration: Codable, Sendable {
    public var training = TrainingSchedule(steps: 3000, batchSize: 64, learningRate: 5e-4, minLearningRate: 1e-5,
                                           warmupSteps: 100, weightDecay: 0.01, gradientClip: 1.0, emaDecay: 0.995,
                                           checkpointEvery: 250, seed: 3)
    /// Transformer width = heads × head size, and depth.
    public var heads = 4
    public var headDim = 32
    public var layers = 4
    public var captionDropout: Float = 0.1
    /// The fraction of the embeddings' variance the kept principal components must hold (the paper: 319 of 1024
    /// dimensions).
    public var varianceKept = 0.99
    /// Buckets per coordinate and for the dot product (the paper's 1024).
    public var buckets = 1024
    /// Training embeddings (evenly spaced over the dataset) the PCA, the bucket ranges and the dot-product
    /// distribution are fit on.
    public var codeSamples = 4096
    /// fp32 by default: the PCA axes and bucket ranges are part of the weights.
    public var precision: WeightPrecision = .fp32

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case training, heads, headDim = "head_dim", layers, captionDropout = "caption_dropout"
        case varianceKept = "variance_kept", buckets, codeSamples = "code_samples", precision
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self, section: Stage.autoregressivePrior.key)
        let d = AutoregressivePriorTrainingConfiguration()
        training = try c.decodeIfPresent(TrainingScheduleOverride.self, forKey: .training)?.applied(to: d.training) ?? d.training
        heads = try c.decodeIfPresent(Int.self, forKey: .heads) ?? d.heads
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? d.headDim
        layers = try c.decodeIfPresent(Int.self, forKey: .layers) ?? d.layers
        captionDropout = try c.decodeIfPresent(Float.self, forKey: .captionDropout) ?? d.captionDropout
        varianceKept = try c.decodeIfPresent(Double.self, forKey: .varianceKept) ?? d.varianceKept
        buckets = try c.decodeIfPresent(Int.self, forKey: .buckets) ?? d.buckets
        codeSamples = try c.decodeIfPresent(Int.self, forKey: .codeSamples) ?? d.codeSamples
        precision = try c.decodeIfPresent(WeightPrecision.self, forKey: .precision) ?? d.precision
    }

    func validate() throws {
        try training.validate(stage: .autoregressivePrior)
        func check(_ ok: Bool, _ option: String, _ value: Any, _ rule: String) throws {
            if !ok { throw TrainingError.invalidConfiguration(stage: Stage.autoregressivePrior.key, option: option, value: "\(value)", rule: rule) }
        }
        try check(heads >= 1 && headDim >= 1 && layers >= 1, "heads/head_dim/layers", "\(heads)/\(headDim)/\(layers)", "all at least 1")
        try check(captionDropout >= 0 && captionDropout <= 1, "caption_dropout", captionDropout, "in [0, 1]")
        try check(varianceKept > 0 && varianceKept <= 1, "variance_kept", varianceKept, "a fraction in (0, 1]")
        try check((2...65_536).contains(buckets), "buckets", buckets, "in 2 … 65536")
        try check(codeSamples >= 16, "code_samples", codeSamples, "at least 16")
    }

    /// The fit of the code on the training set: PCA and buckets, the cosine's range and quantiles.
    struct Code {
        var quantizer: EmbeddingQuantizer
        var explained: Double
        var dotRange: (Float, Float)
        var dotQuantiles: [Float]
    }

    /// Trains the autoregressive prior on the frozen CLIP in `out` and writes `ar_prior/` (and adds it to
    /// `model_index.json` beside the diffusion prior).
    @discardableResult
    public func run(dataset: some CaptionedImageDataset, out: URL, resume: Bool = false,
                    progress: (TrainingEvent) -> Void = { _ in }) throws -> TrainingOutcome {
        try validate()
        let stage = Stage.autoregressivePrior
        guard dataset.count > 0 else { throw TrainingError.emptyDataset(stage: stage) }
        let clip = try FrozenCLIP(out: out, stage: stage)
        let e = try clip.embeddingDim(stage: stage, projector: "the autoregressive prior")
        let code = try fitCode(dataset, clip: clip, progress: progress)
        var config = AutoregressivePriorConfig()
        config.embeddingDim = e
        config.numEmbeddings = clip.tokenizer.modelMaxLength
        config.numComponents = code.quantizer.count
        config.numBuckets = buckets
        config.numDotQuantiles = code.dotQuantiles.count
        config.numLayers = layers
        config.numAttentionHeads = heads
        config.attentionHeadDim = headDim
        config.explainedVariance = code.explained
        let model = try AutoregressivePriorTransformer(config)
        var initRNG = TrainingRandom.initialization(seed: training.seed)
        model.initialize(using: &initRNG)
        model.setCode(code.quantizer, dotRange: code.dotRange, dotQuantiles: code.dotQuantiles)
        model.requiresGrad(true)
        for t in model.codeTensors { t.requiresGrad = false }

        let loop = try TrainingLoop(stage: stage, model: model, schedule: training,
                                    folder: checkpointFolder(stage, in: out), configJSON: try jsonString(self))
        try loop.restoreIfRequested(resume, progress: progress)
        let quantizer = model.quantizer  // the checkpoint's, when resumed
        var sampler = BatchSampler(count: dataset.count, batchSize: training.batchSize, seed: training.seed)
        let seed = training.seed, k = config.numComponents, n = config.numBuckets
        let outcome = try loop.run(progress: progress) { step in
            let (images, captions) = loadBatch(dataset, indices: sampler.indices(step: step), stage: stage, progress: progress) {
                try downsampled($0, to: clip.imageSize)
            }
            guard !images.isEmpty else { return nil }
            let b = images.count
            var dropRNG = TrainingRandom.generator(seed: seed, step: step, .dropout)
            let dropped = (0..<b).map { _ in TrainingRandom.unit(using: &dropRNG) < captionDropout }
            let real = clip.encode(captions, dropped: Array(repeating: false, count: b))
            let text = dropped.contains(true) ? clip.encode(captions, dropped: dropped) : real
            let z = clip.imageEmbeddings(images)
            let tokens = z.rowArrays().map(quantizer.encode)
            // The dot token of the image with its own caption; "no caption" where the caption was dropped.
            let dots = (0..<b).map { dropped[$0] ? model.noCaptionDotToken : model.dotToken(cosine: Float(cosineSimilarity(z, row: $0, real.embeds, row: $0))) }
            let logits = model(textEmbeds: text.embeds, hiddenStates: text.hidden, mask: text.mask, dotTokens: dots,
                               tokens: tokens.map { Array($0.dropLast()) })
            return logits.reshaped([b * k, n]).crossEntropy(targets: tokens.flatMap { $0 })
        }
        if outcome.exported {
            try ComponentWriter.writeModel(model, config: model.config, as: stage.key, in: out, precision: precision)
            try ComponentWriter.writeModelIndex(in: out)
            progress(.message(stage: stage, text: String(format: "wrote ar_prior (EMA weights): %d principal components (%.2f %% of the variance), %d buckets", k, 100 * code.explained, n)))
        }
        return outcome
    }

    /// PCA, bucket ranges and the cosine's distribution from `codeSamples` evenly spaced training entries.
    func fitCode(_ dataset: some CaptionedImageDataset, clip: FrozenCLIP, progress: (TrainingEvent) -> Void) throws -> Code {
        let stage = Stage.autoregressivePrior
        let n = min(dataset.count, codeSamples)
        var embeddings: [[Float]] = [], cosines: [Float] = []
        let chunk = 256
        for start in stride(from: 0, to: n, by: chunk) {
            let indices = (start..<min(start + chunk, n)).map { $0 * dataset.count / n }
            let (images, captions) = loadBatch(dataset, indices: indices, stage: stage, progress: progress) {
                try downsampled($0, to: clip.imageSize)
            }
            guard !images.isEmpty else { continue }
            let z = clip.imageEmbeddings(images)
            let text = clip.encode(captions, dropped: Array(repeating: false, count: captions.count))
            embeddings += z.rowArrays()
            cosines += (0..<images.count).map { Float(cosineSimilarity(z, row: $0, text.embeds, row: $0)) }
        }
        guard embeddings.count >= 2 else { throw TrainingError.emptyDataset(stage: stage) }
        let (quantizer, explained) = EmbeddingQuantizer.fit(embeddings, varianceKept: varianceKept, buckets: buckets)
        cosines.sort()
        let lo = cosines.first!, hi = cosines.last!
        let pad = max(hi - lo, 1e-6) / Float(2 * buckets)
        let q = 101
        let quantiles = (0..<q).map { i -> Float in
            let x = Double(i) / Double(q - 1) * Double(cosines.count - 1)
            let j = min(Int(x), cosines.count - 2), f = Float(x - Double(j))
            return cosines[j] * (1 - f) + cosines[j + 1] * f
        }
        progress(.message(stage: stage, text: String(format: "code from %d embeddings: %d of %d principal components hold %.2f %% of the variance; z_i · z_t in [%.3f, %.3f], median %.3f",
                                                     embeddings.count, quantizer.count, quantizer.dimension, 100 * explained, lo, hi, quantiles[50])))
        return Code(quantizer: quantizer, explained: explained, dotRange: (lo - pad, hi + pad), dotQuantiles: quantiles)
    }
}
