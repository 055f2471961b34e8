import Foundation
import UnCLIPNN

/// `CLIPTextConfig` as written by transformers (`text_encoder/config.json`).
///
/// A full `CLIPConfig` (with `text_config` / `vision_config` inside) is accepted too: the matching sub-config is used.
public struct CLIPTextConfig: Codable, Sendable, CheckedConfiguration {
    public var vocabSize = 49408
    public var hiddenSize = 512
    public var intermediateSize = 2048
    public var numHiddenLayers = 12
    public var numAttentionHeads = 8
    public var maxPositionEmbeddings = 77
    public var projectionDim = 512
    public var hiddenAct = "quick_gelu"
    public var layerNormEps: Float = 1e-5
    public var eosTokenId = 2
    /// The tokenizer's ids, recorded for transformers (the model itself reads only `eos_token_id`).
    public var bosTokenId: Int? = nil
    public var padTokenId: Int? = nil

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case maxPositionEmbeddings = "max_position_embeddings", projectionDim = "projection_dim"
        case hiddenAct = "hidden_act", layerNormEps = "layer_norm_eps", eosTokenId = "eos_token_id"
        case bosTokenId = "bos_token_id", padTokenId = "pad_token_id"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = CLIPTextConfig()
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? d.intermediateSize
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? d.numHiddenLayers
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? d.numAttentionHeads
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? d.maxPositionEmbeddings
        projectionDim = try c.decodeIfPresent(Int.self, forKey: .projectionDim) ?? d.projectionDim
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? d.hiddenAct
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? d.layerNormEps
        eosTokenId = try c.decodeIfPresent(Int.self, forKey: .eosTokenId) ?? d.eosTokenId
        bosTokenId = try c.decodeIfPresent(Int.self, forKey: .bosTokenId)
        padTokenId = try c.decodeIfPresent(Int.self, forKey: .padTokenId)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(projectionDim, forKey: .projectionDim)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(layerNormEps, forKey: .layerNormEps)
        try c.encode(eosTokenId, forKey: .eosTokenId)
        try c.encodeIfPresent(bosTokenId, forKey: .bosTokenId)
        try c.encodeIfPresent(padTokenId, forKey: .padTokenId)
        try encodeUnreadCLIPKeys(modelType: "clip_text_model", to: encoder)
    }

    /// transformers' own checks (heads divide the width) plus the sizes `ConfigurationLimits` bounds.
    public func validate() throws {
        let check = ConfigurationChecks(component: "CLIPTextModel")
        try check.size(vocabSize, "vocab_size", max: ConfigurationLimits.vocabulary)
        try checkCLIPTower(check, hidden: hiddenSize, intermediate: intermediateSize, layers: numHiddenLayers,
                           heads: numAttentionHeads, projection: projectionDim, act: hiddenAct, eps: layerNormEps)
        try check.size(maxPositionEmbeddings, "max_position_embeddings", max: ConfigurationLimits.positions)
        try check.require((0..<vocabSize).contains(eosTokenId), "eos_token_id", eosTokenId, "an id below vocab_size (\(vocabSize))")
    }
}

/// `CLIPVisionConfig` as written by transformers (`image_encoder/config.json`).
public struct CLIPVisionConfig: Codable, Sendable, CheckedConfiguration {
    public var hiddenSize = 768
    public var intermediateSize = 3072
    public var numHiddenLayers = 12
    public var numAttentionHeads = 12
    public var numChannels = 3
    public var imageSize = 224
    public var patchSize = 32
    public var projectionDim = 512
    public var hiddenAct = "quick_gelu"
    public var layerNormEps: Float = 1e-5

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numChannels = "num_channels", imageSize = "image_size", patchSize = "patch_size"
        case projectionDim = "projection_dim", hiddenAct = "hidden_act", layerNormEps = "layer_norm_eps"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = CLIPVisionConfig()
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? d.intermediateSize
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? d.numHiddenLayers
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? d.numAttentionHeads
        numChannels = try c.decodeIfPresent(Int.self, forKey: .numChannels) ?? d.numChannels
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d.imageSize
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? d.patchSize
        projectionDim = try c.decodeIfPresent(Int.self, forKey: .projectionDim) ?? d.projectionDim
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? d.hiddenAct
        layerNormEps = try c.decodeIfPresent(Float.self, forKey: .layerNormEps) ?? d.layerNormEps
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numChannels, forKey: .numChannels)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(patchSize, forKey: .patchSize)
        try c.encode(projectionDim, forKey: .projectionDim)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        try c.encode(layerNormEps, forKey: .layerNormEps)
        try encodeUnreadCLIPKeys(modelType: "clip_vision_model", to: encoder)
    }

    public func validate() throws {
        let check = ConfigurationChecks(component: "CLIPVisionModel")
        try checkCLIPTower(check, hidden: hiddenSize, intermediate: intermediateSize, layers: numHiddenLayers,
                           heads: numAttentionHeads, projection: projectionDim, act: hiddenAct, eps: layerNormEps)
        try check.size(numChannels, "num_channels", max: ConfigurationLimits.channels)
        try check.size(imageSize, "image_size", max: ConfigurationLimits.sampleSize)
        try check.require(patchSize >= 1 && patchSize <= imageSize && imageSize % patchSize == 0, "patch_size", patchSize,
                          "a positive divisor of image_size (\(imageSize))")
        try check.require((imageSize / patchSize) * (imageSize / patchSize) < ConfigurationLimits.positions, "patch_size", patchSize,
                          "fewer than \(ConfigurationLimits.positions) patches per image")
    }
}

/// The rules both CLIP towers share.
private func checkCLIPTower(_ check: ConfigurationChecks, hidden: Int, intermediate: Int, layers: Int, heads: Int,
                            projection: Int, act: String, eps: Float) throws {
    try check.size(hidden, "hidden_size", max: ConfigurationLimits.width)
    try check.heads(heads, "num_attention_heads", width: hidden, widthOption: "hidden_size")
    try check.size(intermediate, "intermediate_size", max: ConfigurationLimits.mlpWidth)
    try check.size(layers, "num_hidden_layers", max: ConfigurationLimits.layers)
    try check.size(projection, "projection_dim", max: ConfigurationLimits.width)
    try check.require(Activation.configNames[act] != nil, "hidden_act", "\"\(act)\"",
                      "one of \(Activation.configNames.keys.sorted().joined(separator: ", "))")
    try check.finite(eps, "layer_norm_eps")
}

/// Keys of transformers' CLIP configs that this port does not read, written so transformers loads the file as the
/// model it is: its `model_type`, no dropout (the port has none) and transformers' initialisation defaults.
private enum UnreadCLIPKeys: String, CodingKey {
    case modelType = "model_type", attentionDropout = "attention_dropout", dropout
    case initializerFactor = "initializer_factor", initializerRange = "initializer_range"
}

private func encodeUnreadCLIPKeys(modelType: String, to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: UnreadCLIPKeys.self)
    try c.encode(modelType, forKey: .modelType)
    try c.encode(0.0, forKey: .attentionDropout)
    try c.encode(0.0, forKey: .dropout)
    try c.encode(1.0, forKey: .initializerFactor)
    try c.encode(0.02, forKey: .initializerRange)
}
