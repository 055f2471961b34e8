import Foundation
import UnCLIPNN

/// Configuration of the autoregressive prior (`ar_prior/config.json`, class `AutoregressivePriorTransformer`).
///
/// The sequence is the paper's (§2.1): the caption's encoded tokens and its CLIP text embedding as a prefix, one token
/// for the quantised dot product z_i · z_t, then the K PCA coordinates of z_i, each one of `num_buckets` tokens.
public struct AutoregressivePriorConfig: Codable, Sendable, Equatable, CheckedConfiguration {
    /// CLIP's embedding width E (image and text embeddings, text hidden states).
    public var embeddingDim = 768
    /// Text tokens T of the caption prefix (the tokenizer's model_max_length).
    public var numEmbeddings = 77
    /// K: principal components kept, one token each.
    public var numComponents = 319
    /// Buckets per coordinate (and for the dot product).
    public var numBuckets = 1024
    /// Stored quantiles of the training set's cosine z_i · z_t (0 %, …, 100 %), sampled from the top half.
    public var numDotQuantiles = 101
    public var numLayers = 4
    public var numAttentionHeads = 4
    public var attentionHeadDim = 32
    /// The fraction of the training embeddings' variance the kept components hold (informational).
    public var explainedVariance: Double? = nil

    enum CodingKeys: String, CodingKey {
        case embeddingDim = "embedding_dim", numEmbeddings = "num_embeddings", numComponents = "num_components"
        case numBuckets = "num_buckets", numDotQuantiles = "num_dot_quantiles", numLayers = "num_layers"
        case numAttentionHeads = "num_attention_heads", attentionHeadDim = "attention_head_dim"
        case explainedVariance = "explained_variance"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = AutoregressivePriorConfig()
        embeddingDim = try c.value(.embeddingDim, or: d.embeddingDim)
        numEmbeddings = try c.value(.numEmbeddings, or: d.numEmbeddings)
        numComponents = try c.value(.numComponents, or: d.numComponents)
        numBuckets = try c.value(.numBuckets, or: d.numBuckets)
        numDotQuantiles = try c.value(.numDotQuantiles, or: d.numDotQuantiles)
        numLayers = try c.value(.numLayers, or: d.numLayers)
        numAttentionHeads = try c.value(.numAttentionHeads, or: d.numAttentionHeads)
        attentionHeadDim = try c.value(.attentionHeadDim, or: d.attentionHeadDim)
        explainedVariance = try c.decodeIfPresent(Double.self, forKey: .explainedVariance)
    }

    var innerDim: Int { numAttentionHeads * attentionHeadDim }
    /// Input positions: T text tokens, the text embedding, the dot token, and the first K − 1 coordinates.
    var sequenceLength: Int { numEmbeddings + numComponents + 1 }

    public func validate() throws {
        let check = ConfigurationChecks(component: "AutoregressivePriorTransformer")
        try check.size(embeddingDim, "embedding_dim", max: ConfigurationLimits.width)
        try check.size(numEmbeddings, "num_embeddings", max: ConfigurationLimits.positions)
        try check.size(numComponents, "num_components", max: embeddingDim)
        try check.require((2...65_536).contains(numBuckets), "num_buckets", numBuckets, "an integer in 2 … 65536")
        try check.require((2...10_001).contains(numDotQuantiles), "num_dot_quantiles", numDotQuantiles, "an integer in 2 … 10001")
        try check.size(numLayers, "num_layers", max: ConfigurationLimits.layers)
        try check.size(numAttentionHeads, "num_attention_heads", max: ConfigurationLimits.width)
        try check.size(attentionHeadDim, "attention_head_dim", max: ConfigurationLimits.width)
        try check.require(innerDim <= ConfigurationLimits.width, "num_attention_heads × attention_head_dim", innerDim,
                          "at most \(ConfigurationLimits.width)")
        try check.require(sequenceLength <= ConfigurationLimits.positions, "num_embeddings + num_components + 1", sequenceLength,
                          "at most \(ConfigurationLimits.positions)")
        if let v = explainedVariance { try check.require(v.isFinite && v > 0 && v <= 1.000001, "explained_variance", v, "a fraction in (0, 1]") }
    }
}

/// The paper's autoregressive prior: a decoder-only Transformer with a causal mask over
/// [caption tokens, text embedding, dot-product token, c₁ … c_{K−1}] that predicts each quantised PCA coordinate
/// c_k of the CLIP image embedding from the ones before it.
///
/// The code itself (PCA mean and axes, bucket ranges, the dot product's range and quantiles) is stored with the
/// weights, so a folder is a complete prior. The blocks are the diffusion prior's (`PriorTransformerBlock`).
public final class AutoregressivePriorTransformer: Module {
    let encoder_hidden_states_proj: Linear  // caption tokens E → D
    let embedding_proj: Linear  // text embedding E → D
    /// [N + 1, D]: the dot product's buckets, and row N for "no caption" (the dropped condition of guidance).
    let dot_embedding: Embedding
    let token_embedding: Embedding  // [N, D]
    let positional_embedding: Tensor  // [1, T + K + 1, D]
    let transformer_blocks: [PriorTransformerBlock]
    let norm_out: LayerNorm
    let proj_out: Linear  // D → N logits
    /// The code: PCA mean [E], axes [K, E], bucket ranges [K] each; cosine range [2] and quantiles [Q].
    public let pca_mean: Tensor
    public let pca_components: Tensor
    public let bucket_low: Tensor
    public let bucket_high: Tensor
    public let dot_range: Tensor
    public let dot_quantiles: Tensor
    public let config: AutoregressivePriorConfig

    public init(_ config: AutoregressivePriorConfig) throws {
        try config.validate()
        self.config = config
        let d = config.innerDim, e = config.embeddingDim, k = config.numComponents, n = config.numBuckets
        encoder_hidden_states_proj = Linear(e, d)
        embedding_proj = Linear(e, d)
        dot_embedding = Embedding(n + 1, d)
        token_embedding = Embedding(n, d)
        positional_embedding = Tensor.zeros([1, config.sequenceLength, d])
        transformer_blocks = (0..<config.numLayers).map { _ in PriorTransformerBlock(dim: d, heads: config.numAttentionHeads) }
        norm_out = LayerNorm(d, eps: 1e-5)
        proj_out = Linear(d, n)
        pca_mean = Tensor.zeros([e])
        pca_components = Tensor.zeros([k, e])
        bucket_low = Tensor.zeros([k])
        bucket_high = Tensor.ones([k])
        dot_range = Tensor(shape: [2], [-1, 1])
        dot_quantiles = Tensor.zeros([config.numDotQuantiles])
    }

    /// Fresh weights for training: PyTorch's defaults for the layers, then GPT-2's N(0, 0.02) for the token, dot and
    /// position tables. (With nn.Embedding's N(0, 1) the token identity drowns the position in the residual stream,
    /// and every coordinate's distribution depends on its position: the loss then stalls near the marginals.)
    public func initialize(using rng: inout Philox) {
        resetParameters(using: &rng)
        withNoGrad {
            for table in [token_embedding.weight, dot_embedding.weight, positional_embedding] {
                table.assign(Tensor.randn(table.shape, using: &rng) * 0.02)
            }
        }
    }

    /// The trainable weights: everything but the code.
    public var codeTensors: [Tensor] { [pca_mean, pca_components, bucket_low, bucket_high, dot_range, dot_quantiles] }

    // MARK: The code

    /// The PCA and bucket code held in the weights.
    public var quantizer: EmbeddingQuantizer {
        let e = config.embeddingDim, k = config.numComponents
        let axes = pca_components.toArray()
        return EmbeddingQuantizer(mean: pca_mean.toArray(), components: (0..<k).map { Array(axes[($0 * e)..<(($0 + 1) * e)]) },
                                  low: bucket_low.toArray(), high: bucket_high.toArray(), buckets: config.numBuckets)
    }

    /// Stores `quantizer` and the dot product's range and quantiles (the fit of the training set).
    public func setCode(_ quantizer: EmbeddingQuantizer, dotRange: (Float, Float), dotQuantiles: [Float]) {
        precondition(quantizer.dimension == config.embeddingDim && quantizer.count == config.numComponents && quantizer.buckets == config.numBuckets,
                     "setCode: a \(quantizer.count)-component code of width \(quantizer.dimension) for \(config.numComponents) × \(config.embeddingDim)")
        precondition(dotQuantiles.count == config.numDotQuantiles, "setCode: \(dotQuantiles.count) quantiles for \(config.numDotQuantiles)")
        withNoGrad {
            pca_mean.copyValues(from: Tensor(shape: [config.embeddingDim], quantizer.mean))
            pca_components.copyValues(from: Tensor(shape: [config.numComponents, config.embeddingDim], quantizer.components.flatMap { $0 }))
            bucket_low.copyValues(from: Tensor(shape: [config.numComponents], quantizer.low))
            bucket_high.copyValues(from: Tensor(shape: [config.numComponents], quantizer.high))
            dot_range.copyValues(from: Tensor(shape: [2], [dotRange.0, dotRange.1]))
            dot_quantiles.copyValues(from: Tensor(shape: [config.numDotQuantiles], dotQuantiles))
        }
    }

    /// The bucket of the cosine of z_i and z_t over the training set's full range.
    public func dotToken(cosine: Float) -> Int {
        let r = dot_range.toArray()
        return EmbeddingQuantizer.bucket(cosine, low: r[0], high: r[1], buckets: config.numBuckets)
    }

    /// The bucket of the training set's cosine at quantile `q` ∈ [0, 1] (linear between the stored quantiles).
    public func dotToken(quantile q: Float) -> Int {
        let qs = dot_quantiles.toArray()
        let x = min(max(q, 0), 1) * Float(qs.count - 1)
        let i = min(Int(x), qs.count - 2), f = x - Float(i)
        return dotToken(cosine: qs[i] * (1 - f) + qs[i + 1] * f)
    }

    /// The token that stands for "no caption" in the dot-product slot (the unconditional branch of guidance).
    public var noCaptionDotToken: Int { config.numBuckets }

    // MARK: Forward

    /// Logits [B, m + 1, N] for coordinates 0 … m given the caption (text embeddings [B, E], hidden states [B, T, E],
    /// mask [B][T]), dot tokens [B] and the first m coordinates' tokens `tokens` [B][m] (m < K): position j's logits
    /// predict coordinate j. Training calls it with m = K − 1.
    public func callAsFunction(textEmbeds: Tensor, hiddenStates: Tensor, mask: [[Int]], dotTokens: [Int], tokens: [[Int]]) -> Tensor {
        let b = textEmbeds.shape[0], d = config.innerDim, t = config.numEmbeddings
        let m = tokens.first?.count ?? 0
        precondition(tokens.count == b && tokens.allSatisfy { $0.count == m } && m < config.numComponents,
                     "AutoregressivePriorTransformer: tokens must be [\(b)][m] with m < \(config.numComponents)")
        var z = prefix(textEmbeds: textEmbeds, hiddenStates: hiddenStates, dotTokens: dotTokens)
        if m > 0 { z = Tensor.concat([z, token_embedding(ids: tokens.flatMap { $0 }).reshaped([b, m, d])], axis: 1) }
        let length = t + 2 + m
        z = z + positional_embedding.sliced(axis: 1, 0..<length)
        let bias = Self.attentionBias(mask: mask, queries: 0..<length, keys: length)
        for block in transformer_blocks { z = block(z, bias: bias) }
        let out = norm_out(z.sliced(axis: 1, (t + 1)..<length))  // the dot token's output predicts c₀
        return proj_out(out)
    }

    /// [B, T + 2, D]: projected caption tokens, the text embedding, the dot token (positions not yet added).
    func prefix(textEmbeds: Tensor, hiddenStates: Tensor, dotTokens: [Int]) -> Tensor {
        let b = textEmbeds.shape[0], d = config.innerDim
        precondition(hiddenStates.shape == [b, config.numEmbeddings, config.embeddingDim] && textEmbeds.shape == [b, config.embeddingDim],
                     "AutoregressivePriorTransformer: caption [\(b), \(config.numEmbeddings), \(config.embeddingDim)] and embedding [\(b), \(config.embeddingDim)] expected, got \(hiddenStates.shape) and \(textEmbeds.shape)")
        precondition(dotTokens.count == b && dotTokens.allSatisfy { (0...config.numBuckets).contains($0) }, "AutoregressivePriorTransformer: dot tokens")
        return Tensor.concat([encoder_hidden_states_proj(hiddenStates), embedding_proj(textEmbeds).reshaped([b, 1, d]),
                              dot_embedding(ids: dotTokens).reshaped([b, 1, d])], axis: 1)
    }

    /// [B, 1, Q, L]: query positions `queries` against keys 0 ..< L, −10000 on future keys and on padded caption
    /// tokens (as the diffusion prior; exp underflows to exactly 0, so a masked key has no influence at all).
    static func attentionBias(mask: [[Int]], queries: Range<Int>, keys: Int) -> Tensor {
        let b = mask.count, q = queries.count
        var bias = [Float](repeating: 0, count: b * q * keys)
        for n in 0..<b {
            for (r, i) in queries.enumerated() {
                for j in 0..<keys {
                    var v: Float = j > i ? -10000 : 0
                    if j < mask[n].count, mask[n][j] == 0 { v = -10000 }
                    bias[(n * q + r) * keys + j] = v
                }
            }
        }
        return Tensor(shape: [b, 1, q, keys], bias)
    }

    // MARK: Cached decoding

    /// Keys and values of every layer for the positions decoded so far.
    public struct Cache {
        var keys: [Tensor?]
        var values: [Tensor?]
        var mask: [[Int]]
        public internal(set) var length = 0
    }

    /// Runs the prefix once, filling `cache`; returns the logits [B, N] for coordinate 0.
    public func start(textEmbeds: Tensor, hiddenStates: Tensor, mask: [[Int]], dotTokens: [Int]) -> (logits: Tensor, cache: Cache) {
        var cache = Cache(keys: Array(repeating: nil, count: transformer_blocks.count),
                          values: Array(repeating: nil, count: transformer_blocks.count), mask: mask)
        let z = prefix(textEmbeds: textEmbeds, hiddenStates: hiddenStates, dotTokens: dotTokens)
        return (decode(z, cache: &cache), cache)
    }

    /// Feeds coordinate tokens [B] at the next position; returns the logits [B, N] for the coordinate after it.
    public func next(_ tokens: [Int], cache: inout Cache) -> Tensor {
        precondition(cache.length < config.sequenceLength, "AutoregressivePriorTransformer: the sequence is complete")
        return decode(token_embedding(ids: tokens).reshaped([tokens.count, 1, config.innerDim]), cache: &cache)
    }

    /// Positions cache.length ..< cache.length + L of embeddings z [B, L, D] through the blocks, caching keys and
    /// values; the last position's logits [B, N].
    private func decode(_ z: Tensor, cache: inout Cache) -> Tensor {
        let (b, l) = (z.shape[0], z.shape[1]), start = cache.length
        var x = z + positional_embedding.sliced(axis: 1, start..<(start + l))
        let bias = Self.attentionBias(mask: cache.mask, queries: start..<(start + l), keys: start + l)
        for (i, block) in transformer_blocks.enumerated() {
            x = block.cached(x, bias: bias, keys: &cache.keys[i], values: &cache.values[i])
        }
        cache.length += l
        return proj_out(norm_out(x.sliced(axis: 1, (l - 1)..<l).reshaped([b, config.innerDim])))
    }
}

extension PriorTransformerBlock {
    /// The block on new positions x [B, L, D], attending over the cached keys and values followed by its own.
    func cached(_ x: Tensor, bias: Tensor, keys: inout Tensor?, values: inout Tensor?) -> Tensor {
        let h = x + attn1.cached(norm1(x), bias: bias, keys: &keys, values: &values)
        return h + ff(norm3(h))
    }
}

extension SelfAttention {
    /// Self-attention of new tokens x [B, L, D] over the cache and themselves; appends their keys and values.
    func cached(_ x: Tensor, bias: Tensor, keys: inout Tensor?, values: inout Tensor?) -> Tensor {
        let dh = x.shape[2] / heads
        let k = splitHeads(to_k(x), heads: heads), v = splitHeads(to_v(x), heads: heads)
        keys = keys.map { Tensor.concat([$0, k], axis: 2) } ?? k
        values = values.map { Tensor.concat([$0, v], axis: 2) } ?? v
        let o = scaledDotProductAttention(query: splitHeads(to_q(x), heads: heads), key: keys!, value: values!, bias: bias,
                                          scale: 1 / Float(dh).squareRoot())
        return (to_out[0] as! Linear)(mergeHeads(o))
    }
}
