import UnCLIPNN

/// diffusers `PriorTransformer` configuration (`prior/config.json`). Karlo uses every default.
public struct PriorTransformerConfig: Codable, Sendable, CheckedConfiguration {
    public var numAttentionHeads = 32
    public var attentionHeadDim = 64
    public var numLayers = 20
    public var embeddingDim = 768
    public var numEmbeddings = 77
    public var additionalEmbeddings = 4
    public var dropout: Float = 0
    public var timeEmbedActFn = "silu"
    public var normInType: String? = nil
    public var embeddingProjNormType: String? = nil
    public var encoderHidProjType: String? = "linear"
    public var addedEmbType: String? = "prd"
    public var timeEmbedDim: Int? = nil
    public var embeddingProjDim: Int? = nil
    public var clipEmbedDim: Int? = nil

    enum CodingKeys: String, CodingKey {
        case numAttentionHeads = "num_attention_heads", attentionHeadDim = "attention_head_dim", numLayers = "num_layers"
        case embeddingDim = "embedding_dim", numEmbeddings = "num_embeddings", additionalEmbeddings = "additional_embeddings"
        case dropout, timeEmbedActFn = "time_embed_act_fn", normInType = "norm_in_type"
        case embeddingProjNormType = "embedding_proj_norm_type", encoderHidProjType = "encoder_hid_proj_type"
        case addedEmbType = "added_emb_type", timeEmbedDim = "time_embed_dim", embeddingProjDim = "embedding_proj_dim"
        case clipEmbedDim = "clip_embed_dim"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = PriorTransformerConfig()
        numAttentionHeads = try c.value(.numAttentionHeads, or: d.numAttentionHeads)
        attentionHeadDim = try c.value(.attentionHeadDim, or: d.attentionHeadDim)
        numLayers = try c.value(.numLayers, or: d.numLayers)
        embeddingDim = try c.value(.embeddingDim, or: d.embeddingDim)
        numEmbeddings = try c.value(.numEmbeddings, or: d.numEmbeddings)
        additionalEmbeddings = try c.value(.additionalEmbeddings, or: d.additionalEmbeddings)
        dropout = try c.value(.dropout, or: d.dropout)
        timeEmbedActFn = try c.value(.timeEmbedActFn, or: d.timeEmbedActFn)
        // These four may be JSON null, which means "none", so they are decoded as optionals (absent → default).
        normInType = c.contains(.normInType) ? try c.decodeIfPresent(String.self, forKey: .normInType) : d.normInType
        embeddingProjNormType = c.contains(.embeddingProjNormType) ? try c.decodeIfPresent(String.self, forKey: .embeddingProjNormType) : d.embeddingProjNormType
        encoderHidProjType = c.contains(.encoderHidProjType) ? try c.decodeIfPresent(String.self, forKey: .encoderHidProjType) : d.encoderHidProjType
        addedEmbType = c.contains(.addedEmbType) ? try c.decodeIfPresent(String.self, forKey: .addedEmbType) : d.addedEmbType
        timeEmbedDim = try c.decodeIfPresent(Int.self, forKey: .timeEmbedDim)
        embeddingProjDim = try c.decodeIfPresent(Int.self, forKey: .embeddingProjDim)
        clipEmbedDim = try c.decodeIfPresent(Int.self, forKey: .clipEmbedDim)
    }

    /// Writes every key, the "none" options as JSON null (diffusers' form).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(attentionHeadDim, forKey: .attentionHeadDim)
        try c.encode(numLayers, forKey: .numLayers)
        try c.encode(embeddingDim, forKey: .embeddingDim)
        try c.encode(numEmbeddings, forKey: .numEmbeddings)
        try c.encode(additionalEmbeddings, forKey: .additionalEmbeddings)
        try c.encode(dropout, forKey: .dropout)
        try c.encode(timeEmbedActFn, forKey: .timeEmbedActFn)
        try c.encode(normInType, forKey: .normInType)
        try c.encode(embeddingProjNormType, forKey: .embeddingProjNormType)
        try c.encode(encoderHidProjType, forKey: .encoderHidProjType)
        try c.encode(addedEmbType, forKey: .addedEmbType)
        try c.encode(timeEmbedDim, forKey: .timeEmbedDim)
        try c.encode(embeddingProjDim, forKey: .embeddingProjDim)
        try c.encode(clipEmbedDim, forKey: .clipEmbedDim)
    }

    var innerDim: Int { numAttentionHeads * attentionHeadDim }

    /// Rejects sizes no model can have and the options of later models (Kandinsky, Shap-E) that the unCLIP prior
    /// does not use.
    public func validate() throws {
        let check = ConfigurationChecks(component: "PriorTransformer")
        try check.size(numAttentionHeads, "num_attention_heads", max: ConfigurationLimits.width)
        try check.size(attentionHeadDim, "attention_head_dim", max: ConfigurationLimits.width)
        try check.require(innerDim <= ConfigurationLimits.width, "num_attention_heads × attention_head_dim", innerDim,
                          "at most \(ConfigurationLimits.width)")
        try check.size(numLayers, "num_layers", max: ConfigurationLimits.layers)
        try check.size(embeddingDim, "embedding_dim", max: ConfigurationLimits.width)
        try check.size(numEmbeddings, "num_embeddings", max: ConfigurationLimits.positions)
        // The unCLIP prior's four extra tokens: text embedding, time, noisy embedding, prd.
        try check.require(additionalEmbeddings == 4, "additional_embeddings", additionalEmbeddings, "4 (text embedding, time, sample, prd)")
        try check.require(dropout.isFinite && dropout >= 0 && dropout < 1, "dropout", dropout, "a probability in [0, 1)")
        func reject(_ option: String, _ value: String?, allowed: [String?]) throws {
            if !allowed.contains(value) {
                throw UnsupportedConfiguration(component: "PriorTransformer", option: option, value: value ?? "null",
                                               supported: allowed.map { $0 ?? "null" })
            }
        }
        try reject("norm_in_type", normInType, allowed: [nil])
        try reject("embedding_proj_norm_type", embeddingProjNormType, allowed: [nil])
        try reject("encoder_hid_proj_type", encoderHidProjType, allowed: ["linear"])
        try reject("added_emb_type", addedEmbType, allowed: ["prd"])
        try reject("time_embed_act_fn", timeEmbedActFn, allowed: ["silu"])
        if let t = timeEmbedDim, t != innerDim { throw UnsupportedConfiguration(component: "PriorTransformer", option: "time_embed_dim", value: "\(t)", supported: ["null", "\(innerDim)"]) }
        if let e = embeddingProjDim, e != embeddingDim { throw UnsupportedConfiguration(component: "PriorTransformer", option: "embedding_proj_dim", value: "\(e)", supported: ["null", "\(embeddingDim)"]) }
        if let e = clipEmbedDim, e != embeddingDim { throw UnsupportedConfiguration(component: "PriorTransformer", option: "clip_embed_dim", value: "\(e)", supported: ["null", "\(embeddingDim)"]) }
    }
}

/// The prior's feed-forward input projection with exact GELU (`ff.net.0`, holding `proj`).
final class GELUProjection: Module {
    let proj: Linear
    init(dim: Int, hidden: Int) { proj = Linear(dim, hidden) }
    func callAsFunction(_ x: Tensor) -> Tensor { proj(x).gelu() }
}

/// diffusers `BasicTransformerBlock` as the prior configures it: self-attention and a feed-forward, pre-LN.
final class PriorTransformerBlock: Module {
    let norm1: LayerNorm
    let attn1: SelfAttention
    let norm3: LayerNorm  // sic: diffusers names the feed-forward norm "norm3"; there is no norm2/attn2 here
    let ff: FeedForward

    final class FeedForward: Module {
        let net: [Module]  // [GELUProjection, Dropout, Linear]
        init(dim: Int) { net = [GELUProjection(dim: dim, hidden: 4 * dim), Dropout(p: 0), Linear(4 * dim, dim)] }
        func callAsFunction(_ x: Tensor) -> Tensor { (net[2] as! Linear)((net[0] as! GELUProjection)(x)) }
    }

    init(dim: Int, heads: Int) {
        norm1 = LayerNorm(dim, eps: 1e-5)
        attn1 = SelfAttention(dim: dim, heads: heads)
        norm3 = LayerNorm(dim, eps: 1e-5)
        ff = FeedForward(dim: dim)
    }

    func callAsFunction(_ x: Tensor, bias: Tensor?) -> Tensor {
        let h = x + attn1(norm1(x), bias: bias)
        return h + ff(norm3(h))
    }
}

/// The unCLIP diffusion prior: a causal transformer that predicts the normalised CLIP image embedding x̂₀.
public final class PriorTransformer: Module {
    let time_embedding: TimestepEmbedding
    let proj_in: Linear
    let embedding_proj: Linear
    let encoder_hidden_states_proj: Linear
    let positional_embedding: Tensor  // [1, T, D], T = text tokens + 4
    let prd_embedding: Tensor  // [1, 1, D]
    let transformer_blocks: [PriorTransformerBlock]
    let norm_out: LayerNorm
    let proj_to_clip_embeddings: Linear
    /// CLIP image-embedding statistics [1, E]: x = x_normalised · clip_std + clip_mean.
    public let clip_mean: Tensor
    public let clip_std: Tensor
    public let config: PriorTransformerConfig

    public init(_ config: PriorTransformerConfig) throws {
        try config.validate()
        self.config = config
        let d = config.innerDim, e = config.embeddingDim
        time_embedding = TimestepEmbedding(inChannels: d, timeEmbedDim: d)
        proj_in = Linear(e, d)
        embedding_proj = Linear(e, d)
        encoder_hidden_states_proj = Linear(e, d)
        positional_embedding = Tensor.zeros([1, config.numEmbeddings + config.additionalEmbeddings, d])
        prd_embedding = Tensor.zeros([1, 1, d])
        transformer_blocks = (0..<config.numLayers).map { _ in PriorTransformerBlock(dim: d, heads: config.numAttentionHeads) }
        norm_out = LayerNorm(d, eps: 1e-5)
        proj_to_clip_embeddings = Linear(d, e)
        clip_mean = Tensor.zeros([1, e])
        clip_std = Tensor.zeros([1, e])
    }

    /// Predicts x̂₀ [B, E] from the noisy normalised embedding `sample` [B, E] at `timestep`, the CLIP text embedding
    /// `projEmbedding` [B, E], the text hidden states [B, 77, E] and the tokenizer mask (1 keep, 0 pad) [B, 77].
    public func callAsFunction(_ sample: Tensor, timestep: Int, projEmbedding: Tensor,
                               encoderHiddenStates: Tensor, attentionMask: [[Int]]) -> Tensor {
        self(sample, timesteps: Array(repeating: timestep, count: sample.shape[0]), projEmbedding: projEmbedding,
             encoderHiddenStates: encoderHiddenStates, attentionMask: attentionMask)
    }

    /// The same with one timestep per sample (training draws a timestep for each embedding).
    public func callAsFunction(_ sample: Tensor, timesteps: [Int], projEmbedding: Tensor,
                               encoderHiddenStates: Tensor, attentionMask: [[Int]]) -> Tensor {
        let b = sample.shape[0], d = config.innerDim
        precondition(timesteps.count == b, "\(timesteps.count) timesteps for a batch of \(b)")
        let time = time_embedding(timestepEmbedding(timesteps.map(Float.init), dim: d))
        let text = encoder_hidden_states_proj(encoderHiddenStates)  // [B, 77, D]
        // Token order (matters): 77 text tokens, text embedding, time, noisy x, prd.
        var z = Tensor.concat([text, embedding_proj(projEmbedding).reshaped([b, 1, d]), time.reshaped([b, 1, d]),
                               proj_in(sample).reshaped([b, 1, d]), prd_embedding.expanded(to: [b, 1, d])], axis: 1)
        z = z + positional_embedding
        let bias = Self.attentionBias(mask: attentionMask, extra: config.additionalEmbeddings)
        for block in transformer_blocks { z = block(z, bias: bias) }
        z = norm_out(z)
        let last = z.sliced(axis: 1, (z.shape[1] - 1)..<z.shape[1]).reshaped([b, d])  // the prd token
        return proj_to_clip_embeddings(last)
    }

    /// [B, 1, T, T]: key padding (1 − mask)·(−10000) over the text keys plus −10000 above the diagonal.
    ///
    /// Matches diffusers: −10000, not −∞, so masked logits are −10000 or −20000; the same bias for every head.
    static func attentionBias(mask: [[Int]], extra: Int) -> Tensor {
        let b = mask.count, t = mask[0].count + extra
        var bias = [Float](repeating: 0, count: b * t * t)
        for n in 0..<b {
            for i in 0..<t {
                for j in 0..<t {
                    var v: Float = j > i ? -10000 : 0
                    if j < mask[n].count { v += Float(1 - mask[n][j]) * -10000 }
                    bias[(n * t + i) * t + j] = v
                }
            }
        }
        return Tensor(shape: [b, 1, t, t], bias)
    }

    /// Normalised prior latent → raw CLIP image embedding (diffusers `post_process_latents`).
    public func postProcessLatents(_ x: Tensor) -> Tensor { x * clip_std + clip_mean }
}
