import UnCLIPNN

/// `UnCLIPTextProjModel` configuration (`text_proj/config.json`).
public struct UnCLIPTextProjConfig: Codable, Sendable, CheckedConfiguration {
    public var clipExtraContextTokens = 4
    public var clipEmbeddingsDim = 768
    public var timeEmbedDim = 1280
    public var crossAttentionDim = 1536

    enum CodingKeys: String, CodingKey {
        case clipExtraContextTokens = "clip_extra_context_tokens", clipEmbeddingsDim = "clip_embeddings_dim"
        case timeEmbedDim = "time_embed_dim", crossAttentionDim = "cross_attention_dim"
    }

    public init() {}
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = UnCLIPTextProjConfig()
        clipExtraContextTokens = try c.value(.clipExtraContextTokens, or: d.clipExtraContextTokens)
        clipEmbeddingsDim = try c.value(.clipEmbeddingsDim, or: d.clipEmbeddingsDim)
        timeEmbedDim = try c.value(.timeEmbedDim, or: d.timeEmbedDim)
        crossAttentionDim = try c.value(.crossAttentionDim, or: d.crossAttentionDim)
    }

    public func validate() throws {
        let check = ConfigurationChecks(component: "UnCLIPTextProjModel")
        try check.size(clipExtraContextTokens, "clip_extra_context_tokens", max: 64)
        try check.size(clipEmbeddingsDim, "clip_embeddings_dim", max: ConfigurationLimits.width)
        try check.size(timeEmbedDim, "time_embed_dim", max: ConfigurationLimits.mlpWidth)
        try check.size(crossAttentionDim, "cross_attention_dim", max: ConfigurationLimits.width)
    }
}

/// The decoder's conditioning: CLIP image and text embeddings → extra context tokens and an additive time embedding.
public final class UnCLIPTextProjModel: Module {
    let learned_classifier_free_guidance_embeddings: Tensor  // [E]: the null image embedding
    let embedding_proj: Linear
    let clip_image_embeddings_project_to_time_embeddings: Linear
    let clip_extra_context_tokens_proj: Linear
    let encoder_hidden_states_proj: Linear
    let text_encoder_hidden_states_norm: LayerNorm
    public let config: UnCLIPTextProjConfig

    public init(_ config: UnCLIPTextProjConfig) throws {
        try config.validate()
        self.config = config
        let e = config.clipEmbeddingsDim, tm = config.timeEmbedDim, x = config.crossAttentionDim
        learned_classifier_free_guidance_embeddings = Tensor.zeros([e])
        embedding_proj = Linear(e, tm)
        clip_image_embeddings_project_to_time_embeddings = Linear(e, tm)
        clip_extra_context_tokens_proj = Linear(e, config.clipExtraContextTokens * x)
        encoder_hidden_states_proj = Linear(e, x)
        text_encoder_hidden_states_norm = LayerNorm(x, eps: 1e-5)
    }

    /// The decoder's context [B′, K + 77, X] and additive time embedding [B′, Tm].
    ///
    /// With classifier-free guidance the B image embeddings get B learned null embeddings in front, and the text
    /// inputs are already [2B, …] in the order [unconditional; conditional].
    /// The learned null image embedding repeated for `batch` rows [batch, E]: what the unconditional half of guidance
    /// gets, and what a GLIDE-style decoder (trained on it alone) gets in every row.
    public func nullEmbeddings(_ batch: Int) -> Tensor {
        let e = config.clipEmbeddingsDim
        return learned_classifier_free_guidance_embeddings.reshaped([1, e]).expanded(to: [batch, e])
    }

    public func callAsFunction(imageEmbeddings: Tensor, promptEmbeds: Tensor, textEncoderHiddenStates: Tensor,
                               classifierFreeGuidance: Bool) -> (encoderHiddenStates: Tensor, additiveTime: Tensor) {
        var img = imageEmbeddings
        let b = img.shape[0], e = config.clipEmbeddingsDim
        if classifierFreeGuidance {
            let null = learned_classifier_free_guidance_embeddings.reshaped([1, e]).expanded(to: [b, e])
            img = Tensor.concat([null, img], axis: 0)
        }
        let additiveTime = clip_image_embeddings_project_to_time_embeddings(img) + embedding_proj(promptEmbeds)
        // Matches diffusers: [B′, K·X] is reshaped to [B′, X, K] (channel-major) and then permuted to [B′, K, X].
        let k = config.clipExtraContextTokens, x = config.crossAttentionDim
        let extra = clip_extra_context_tokens_proj(img).reshaped([img.shape[0], x, k]).permuted([0, 2, 1])
        let text = text_encoder_hidden_states_norm(encoder_hidden_states_proj(textEncoderHiddenStates))
        return (Tensor.concat([extra, text], axis: 1), additiveTime)
    }
}
