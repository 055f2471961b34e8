import UnCLIPNN

/// Token and position embeddings of the CLIP text tower (`text_model.embeddings`).
final class CLIPTextEmbeddings: Module {
    let token_embedding: Embedding
    let position_embedding: Embedding

    init(_ config: CLIPTextConfig) {
        token_embedding = Embedding(config.vocabSize, config.hiddenSize)
        position_embedding = Embedding(config.maxPositionEmbeddings, config.hiddenSize)
    }

    /// ids: B rows of L token ids → [B, L, D].
    func callAsFunction(_ ids: [[Int]]) -> Tensor {
        let b = ids.count, l = ids[0].count
        let tokens = token_embedding.weight.gatherRows(ids.flatMap { $0 }).reshaped([b, l, -1])
        let positions = position_embedding.weight.sliced(axis: 0, 0..<l)  // [L, D], broadcast over the batch
        return tokens + positions
    }
}

/// The CLIP text transformer (`text_model`).
final class CLIPTextTransformer: Module {
    let embeddings: CLIPTextEmbeddings
    let encoder: CLIPEncoder
    let final_layer_norm: LayerNorm

    init(_ config: CLIPTextConfig) throws {
        embeddings = CLIPTextEmbeddings(config)
        encoder = CLIPEncoder(count: config.numHiddenLayers, dim: config.hiddenSize, heads: config.numAttentionHeads,
                              hidden: config.intermediateSize, activation: try Activation(configName: config.hiddenAct),
                              eps: config.layerNormEps)
        final_layer_norm = LayerNorm(config.hiddenSize, eps: config.layerNormEps)
    }
}

/// What the CLIP text encoder returns to unCLIP.
public struct CLIPTextOutput {
    /// The projected pooled embedding [B, E] (not L2-normalised: unCLIP uses it raw).
    public var textEmbeds: Tensor
    /// The final-LayerNorm hidden states [B, L, D]: the "text encoder hidden states" of unCLIP.
    public var lastHiddenState: Tensor
}

/// transformers' `CLIPTextModelWithProjection`.
public final class CLIPTextModelWithProjection: Module {
    let text_model: CLIPTextTransformer
    let text_projection: Linear
    public let config: CLIPTextConfig

    public init(_ config: CLIPTextConfig) throws {
        try config.validate()
        self.config = config
        text_model = try CLIPTextTransformer(config)
        text_projection = Linear(config.hiddenSize, config.projectionDim, bias: false)
    }

    /// Encodes B rows of L token ids. Only the causal mask applies: the unCLIP pipelines pass no padding mask.
    public func callAsFunction(_ ids: [[Int]]) -> CLIPTextOutput {
        precondition(!ids.isEmpty && ids.allSatisfy { $0.count == ids[0].count }, "ids must be a non-empty rectangle")
        let l = ids[0].count
        // Matches transformers' causal mask: the dtype's most negative finite value above the diagonal.
        var mask = [Float](repeating: 0, count: l * l)
        for i in 0..<l { for j in (i + 1)..<max(i + 1, l) { mask[i * l + j] = -Float.greatestFiniteMagnitude } }
        let causal = Tensor(shape: [1, 1, l, l], mask)

        let x = text_model.encoder(text_model.embeddings(ids), bias: causal)
        let hidden = text_model.final_layer_norm(x)  // [B, L, D]

        // Pooling. Matches transformers: with the legacy eos_token_id == 2 the EOS position is argmax(ids) (EOS has
        // the largest id); otherwise the first position holding eos_token_id, and position 0 when none does
        // (`(ids == eos).int().argmax(-1)`: a text encoder whose config names another EOS than its tokenizer's).
        let positions = ids.map { row -> Int in
            if config.eosTokenId == 2 { return row.indices.max { row[$0] < row[$1] }! }  // the first maximum, like torch.argmax
            return row.firstIndex(of: config.eosTokenId) ?? 0
        }
        let d = hidden.shape[2]
        let pooled = hidden.reshaped([-1, d]).gatherRows(positions.enumerated().map { $0.offset * l + $0.element })
        return CLIPTextOutput(textEmbeds: text_projection(pooled), lastHiddenState: hidden)
    }
}
