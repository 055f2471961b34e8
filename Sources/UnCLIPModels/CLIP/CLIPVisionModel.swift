import UnCLIPNN

/// Patch, class and position embeddings of the CLIP vision tower (`vision_model.embeddings`).
final class CLIPVisionEmbeddings: Module {
    let class_embedding: Tensor  // [D]
    let patch_embedding: Conv2d  // kernel = stride = patch size, no bias
    let position_embedding: Embedding  // [1 + patches, D]

    init(_ config: CLIPVisionConfig) {
        let d = config.hiddenSize
        let patches = (config.imageSize / config.patchSize) * (config.imageSize / config.patchSize)
        class_embedding = Tensor.zeros([d])
        patch_embedding = Conv2d(config.numChannels, d, kernelSize: config.patchSize,
                                 stride: config.patchSize, padding: 0, bias: false)
        position_embedding = Embedding(patches + 1, d)
    }

    /// pixels [B, 3, S, S] → [B, 1 + patches, D]; token 0 is the class token.
    func callAsFunction(_ pixels: Tensor) -> Tensor {
        let b = pixels.shape[0], d = class_embedding.count
        let patches = patch_embedding(pixels)  // [B, D, g, g]
        let tokens = patches.reshaped([b, d, -1]).transposed(1, 2)  // [B, g·g, D], row-major over the grid
        let cls = class_embedding.reshaped([1, 1, d]).expanded(to: [b, 1, d])
        return Tensor.concat([cls, tokens], axis: 1) + position_embedding.weight
    }
}

/// The CLIP vision transformer (`vision_model`).
final class CLIPVisionTransformer: Module {
    let embeddings: CLIPVisionEmbeddings
    let pre_layrnorm: LayerNorm  // sic: the checkpoint key is spelled "layrnorm"
    let encoder: CLIPEncoder
    let post_layernorm: LayerNorm

    init(_ config: CLIPVisionConfig) throws {
        embeddings = CLIPVisionEmbeddings(config)
        pre_layrnorm = LayerNorm(config.hiddenSize, eps: config.layerNormEps)
        encoder = CLIPEncoder(count: config.numHiddenLayers, dim: config.hiddenSize, heads: config.numAttentionHeads,
                              hidden: config.intermediateSize, activation: try Activation(configName: config.hiddenAct),
                              eps: config.layerNormEps)
        post_layernorm = LayerNorm(config.hiddenSize, eps: config.layerNormEps)
    }
}

/// transformers' `CLIPVisionModelWithProjection`: pixels → CLIP image embedding.
public final class CLIPVisionModelWithProjection: Module {
    let vision_model: CLIPVisionTransformer
    let visual_projection: Linear
    public let config: CLIPVisionConfig

    public init(_ config: CLIPVisionConfig) throws {
        try config.validate()
        self.config = config
        vision_model = try CLIPVisionTransformer(config)
        visual_projection = Linear(config.hiddenSize, config.projectionDim, bias: false)
    }

    /// pixel_values [B, 3, S, S] (already preprocessed) → image_embeds [B, E], not L2-normalised.
    public func callAsFunction(_ pixels: Tensor) -> Tensor {
        let x = vision_model.encoder(vision_model.pre_layrnorm(vision_model.embeddings(pixels)), bias: nil)
        let cls = x.sliced(axis: 1, 0..<1).reshaped([x.shape[0], x.shape[2]])  // only the class token is post-normed
        return visual_projection(vision_model.post_layernorm(cls))
    }
}
