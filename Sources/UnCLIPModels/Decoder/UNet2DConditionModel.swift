import UnCLIPNN

/// An `Int` or a per-block list in a diffusers config (`attention_head_dim`, `layers_per_block`).
public enum IntOrList: Codable, Sendable {
    case single(Int)
    case list([Int])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let v = try? c.decode(Int.self) { self = .single(v) } else { self = .list(try c.decode([Int].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self { case .single(let v): try c.encode(v); case .list(let vs): try c.encode(vs) }
    }

    func value(at i: Int) -> Int {
        switch self { case .single(let v): return v; case .list(let vs): return vs[min(i, vs.count - 1)] }
    }

    /// Every value, for checks (a single value stands for all blocks).
    var values: [Int] { switch self { case .single(let v): return [v]; case .list(let vs): return vs } }
}

extension ConfigurationChecks {
    /// The rules the decoder and the super-resolution UNets share: block and channel counts, group norms that divide
    /// every channel count (diffusers' GroupNorm requires it), resnet counts, and a sample side that survives every
    /// halving (the skip connections need matching sizes).
    func unet(sampleSize: Int, inChannels: Int, outChannels: Int, blockOutChannels: [Int], layersPerBlock: IntOrList,
              normNumGroups: Int, normEps: Float, freqShift: Float) throws {
        try require((1...ConfigurationLimits.blocks).contains(blockOutChannels.count), "block_out_channels", blockOutChannels,
                    "1 … \(ConfigurationLimits.blocks) entries")
        for c in blockOutChannels { try size(c, "block_out_channels", max: ConfigurationLimits.width) }
        try require(normNumGroups >= 1 && blockOutChannels.allSatisfy { $0 % normNumGroups == 0 }, "norm_num_groups", normNumGroups,
                    "a positive divisor of every block_out_channels entry (\(blockOutChannels))")
        try size(inChannels, "in_channels", max: ConfigurationLimits.channels)
        try size(outChannels, "out_channels", max: ConfigurationLimits.channels)
        let layers = layersPerBlock.values
        try require(!layers.isEmpty && layers.allSatisfy { (1...ConfigurationLimits.layers).contains($0) }, "layers_per_block",
                    layers, "integers in 1 … \(ConfigurationLimits.layers)")
        if case .list(let list) = layersPerBlock {
            try require(list.count == blockOutChannels.count, "layers_per_block", list, "one entry per block_out_channels entry (\(blockOutChannels.count))")
        }
        let halvings = 1 << (blockOutChannels.count - 1)
        try require((1...ConfigurationLimits.sampleSize).contains(sampleSize) && sampleSize % halvings == 0, "sample_size", sampleSize,
                    "a multiple of \(halvings) (one halving per block after the first) in 1 … \(ConfigurationLimits.sampleSize)")
        try finite(normEps, "norm_eps")
        try finite(freqShift, "freq_shift", nonNegative: false)
    }
}

/// diffusers `UNet2DConditionModel` configuration, as far as the unCLIP decoder uses it.
///
/// Options the unCLIP decoder does not use are checked: a non-default value is an error naming it.
public struct UNet2DConditionConfig: Codable, Sendable, CheckedConfiguration {
    public var sampleSize = 64
    public var inChannels = 3
    public var outChannels = 6
    public var layersPerBlock: IntOrList = .single(3)
    public var blockOutChannels = [320, 640, 960, 1280]
    public var downBlockTypes = ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"]
    public var midBlockType: String? = "UNetMidBlock2DSimpleCrossAttn"
    public var upBlockTypes = ["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"]
    public var crossAttentionDim = 1536
    public var attentionHeadDim: IntOrList = .single(64)
    public var classEmbedType: String? = "identity"
    public var resnetTimeScaleShift = TimeConditioning.scaleShift
    public var normNumGroups = 32
    public var normEps: Float = 1e-5
    public var flipSinToCos = true
    public var freqShift: Float = 0
    /// Options that must keep their defaults (name → the JSON value found, when not the default).
    var unsupported: [(String, String)] = []

    enum CodingKeys: String, CodingKey {
        case sampleSize = "sample_size", inChannels = "in_channels", outChannels = "out_channels"
        case layersPerBlock = "layers_per_block", blockOutChannels = "block_out_channels"
        case downBlockTypes = "down_block_types", midBlockType = "mid_block_type", upBlockTypes = "up_block_types"
        case crossAttentionDim = "cross_attention_dim", attentionHeadDim = "attention_head_dim"
        case classEmbedType = "class_embed_type", resnetTimeScaleShift = "resnet_time_scale_shift"
        case normNumGroups = "norm_num_groups", normEps = "norm_eps", flipSinToCos = "flip_sin_to_cos", freqShift = "freq_shift"
        case actFn = "act_fn", centerInputSample = "center_input_sample", midBlockScaleFactor = "mid_block_scale_factor"
        case resnetSkipTimeAct = "resnet_skip_time_act", resnetOutScaleFactor = "resnet_out_scale_factor"
        case onlyCrossAttention = "only_cross_attention", crossAttentionNorm = "cross_attention_norm"
        case timeEmbeddingActFn = "time_embedding_act_fn", timestepPostAct = "timestep_post_act"
        case additionEmbedType = "addition_embed_type", encoderHidDim = "encoder_hid_dim"
        case timeEmbeddingType = "time_embedding_type", classEmbeddingsConcat = "class_embeddings_concat"
        case dualCrossAttention = "dual_cross_attention", convInKernel = "conv_in_kernel", convOutKernel = "conv_out_kernel"
        case numClassEmbeds = "num_class_embeds", timeEmbeddingDim = "time_embedding_dim"
        case midBlockOnlyCrossAttention = "mid_block_only_cross_attention"
        // Written for diffusers, not read: the blocks unCLIP uses ignore them.
        case downsamplePadding = "downsample_padding", useLinearProjection = "use_linear_projection"
        case upcastAttention = "upcast_attention", timeCondProjDim = "time_cond_proj_dim"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = UNet2DConditionConfig()
        sampleSize = try c.value(.sampleSize, or: d.sampleSize)
        inChannels = try c.value(.inChannels, or: d.inChannels)
        outChannels = try c.value(.outChannels, or: d.outChannels)
        layersPerBlock = try c.value(.layersPerBlock, or: d.layersPerBlock)
        blockOutChannels = try c.value(.blockOutChannels, or: d.blockOutChannels)
        downBlockTypes = try c.value(.downBlockTypes, or: d.downBlockTypes)
        midBlockType = c.contains(.midBlockType) ? try c.decodeIfPresent(String.self, forKey: .midBlockType) : d.midBlockType
        upBlockTypes = try c.value(.upBlockTypes, or: d.upBlockTypes)
        crossAttentionDim = try c.value(.crossAttentionDim, or: d.crossAttentionDim)
        attentionHeadDim = try c.value(.attentionHeadDim, or: d.attentionHeadDim)
        classEmbedType = c.contains(.classEmbedType) ? try c.decodeIfPresent(String.self, forKey: .classEmbedType) : nil
        resnetTimeScaleShift = try c.option(.resnetTimeScaleShift, or: .additive, component: "UNet2DConditionModel")
        normNumGroups = try c.value(.normNumGroups, or: d.normNumGroups)
        normEps = try c.value(.normEps, or: d.normEps)
        flipSinToCos = try c.value(.flipSinToCos, or: d.flipSinToCos)
        freqShift = try c.value(.freqShift, or: d.freqShift)

        // Options unCLIP leaves at their defaults; anything else would change the computation silently.
        func expect<T: Decodable & Equatable>(_ key: CodingKeys, _ type: T.Type, _ allowed: [T?]) throws {
            if let found = try c.unsupported(key, type, allowed: allowed) { unsupported.append(found) }
        }
        try expect(.actFn, String.self, ["silu", "swish"])
        try expect(.centerInputSample, Bool.self, [false, nil])
        try expect(.midBlockScaleFactor, Float.self, [1, nil])
        try expect(.resnetSkipTimeAct, Bool.self, [false, nil])
        try expect(.resnetOutScaleFactor, Float.self, [1, nil])
        try expect(.crossAttentionNorm, String.self, [nil])
        try expect(.timeEmbeddingActFn, String.self, [nil])
        try expect(.timestepPostAct, String.self, [nil])
        try expect(.additionEmbedType, String.self, [nil])
        try expect(.encoderHidDim, Int.self, [nil])
        try expect(.timeEmbeddingType, String.self, ["positional", nil])
        try expect(.classEmbeddingsConcat, Bool.self, [false, nil])
        try expect(.dualCrossAttention, Bool.self, [false, nil])
        try expect(.convInKernel, Int.self, [3, nil])
        try expect(.convOutKernel, Int.self, [3, nil])
        try expect(.numClassEmbeds, Int.self, [nil])
        try expect(.timeEmbeddingDim, Int.self, [nil])
        try expect(.midBlockOnlyCrossAttention, Bool.self, [false, nil])
        if c.contains(.onlyCrossAttention), let only = try? c.decode(Bool.self, forKey: .onlyCrossAttention), only {
            unsupported.append(("only_cross_attention", "true"))
        }
    }

    /// Writes the keys diffusers' `UNet2DConditionModel` takes: the fields above and, for the options the unCLIP
    /// decoder leaves at their defaults (checked on decoding), the values it implements.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(sampleSize, forKey: .sampleSize)
        try c.encode(inChannels, forKey: .inChannels)
        try c.encode(outChannels, forKey: .outChannels)
        try c.encode(layersPerBlock, forKey: .layersPerBlock)
        try c.encode(blockOutChannels, forKey: .blockOutChannels)
        try c.encode(downBlockTypes, forKey: .downBlockTypes)
        try c.encode(midBlockType, forKey: .midBlockType)
        try c.encode(upBlockTypes, forKey: .upBlockTypes)
        try c.encode(crossAttentionDim, forKey: .crossAttentionDim)
        try c.encode(attentionHeadDim, forKey: .attentionHeadDim)
        try c.encode(classEmbedType, forKey: .classEmbedType)
        try c.encode(resnetTimeScaleShift, forKey: .resnetTimeScaleShift)
        try c.encode(normNumGroups, forKey: .normNumGroups)
        try c.encode(normEps, forKey: .normEps)
        try c.encode(flipSinToCos, forKey: .flipSinToCos)
        try c.encodeWhole(freqShift, forKey: .freqShift)
        try c.encode("silu", forKey: .actFn)
        try c.encode("positional", forKey: .timeEmbeddingType)
        try c.encode(1, forKey: .midBlockScaleFactor)
        try c.encode(1.0, forKey: .resnetOutScaleFactor)
        try c.encode(1, forKey: .downsamplePadding)
        try c.encode(3, forKey: .convInKernel)
        try c.encode(3, forKey: .convOutKernel)
        for key in [CodingKeys.centerInputSample, .resnetSkipTimeAct, .onlyCrossAttention, .dualCrossAttention,
                    .classEmbeddingsConcat, .useLinearProjection, .upcastAttention] {
            try c.encode(false, forKey: key)
        }
        for key in [CodingKeys.crossAttentionNorm, .timeEmbeddingActFn, .timestepPostAct, .additionEmbedType, .encoderHidDim,
                    .numClassEmbeds, .timeCondProjDim, .midBlockOnlyCrossAttention] {
            try c.encodeNil(forKey: key)
        }
    }

    public func validate() throws {
        if let (option, value) = unsupported.first {
            throw UnsupportedConfiguration(component: "UNet2DConditionModel", option: option, value: value, supported: ["the diffusers default"])
        }
        let check = ConfigurationChecks(component: "UNet2DConditionModel")
        try check.unet(sampleSize: sampleSize, inChannels: inChannels, outChannels: outChannels, blockOutChannels: blockOutChannels,
                       layersPerBlock: layersPerBlock, normNumGroups: normNumGroups, normEps: normEps, freqShift: freqShift)
        try check.size(crossAttentionDim, "cross_attention_dim", max: ConfigurationLimits.width)
        if case .list(let list) = attentionHeadDim {
            try check.require(list.count == blockOutChannels.count, "attention_head_dim", list,
                              "one entry per block_out_channels entry (\(blockOutChannels.count))")
        }
        // Matches diffusers: heads = channels / attention_head_dim in every attention block.
        let n = blockOutChannels.count
        var attended = Set(downBlockTypes.indices.filter { downBlockTypes[$0] == "SimpleCrossAttnDownBlock2D" })
        attended.formUnion(upBlockTypes.indices.filter { upBlockTypes[$0] == "SimpleCrossAttnUpBlock2D" }.map { n - 1 - $0 })
        if midBlockType != nil { attended.insert(n - 1) }
        for i in attended.sorted() where i >= 0 && i < n {
            let channels = blockOutChannels[i], dim = attentionHeadDim.value(at: i)
            try check.require(dim >= 1 && channels % dim == 0, "attention_head_dim", dim,
                              "a positive divisor of block_out_channels[\(i)] (\(channels))")
        }
        let down = ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"], up = ["ResnetUpsampleBlock2D", "SimpleCrossAttnUpBlock2D"]
        for t in downBlockTypes where !down.contains(t) {
            throw UnsupportedConfiguration(component: "UNet2DConditionModel", option: "down_block_types", value: t, supported: down)
        }
        for t in upBlockTypes where !up.contains(t) {
            throw UnsupportedConfiguration(component: "UNet2DConditionModel", option: "up_block_types", value: t, supported: up)
        }
        if let m = midBlockType, m != "UNetMidBlock2DSimpleCrossAttn" {
            throw UnsupportedConfiguration(component: "UNet2DConditionModel", option: "mid_block_type", value: m, supported: ["UNetMidBlock2DSimpleCrossAttn", "null"])
        }
        if let t = classEmbedType, t != "identity" {
            throw UnsupportedConfiguration(component: "UNet2DConditionModel", option: "class_embed_type", value: t, supported: ["identity", "null"])
        }
        guard downBlockTypes.count == blockOutChannels.count, upBlockTypes.count == blockOutChannels.count else {
            throw UnsupportedConfiguration(component: "UNet2DConditionModel", option: "block types", value: "\(downBlockTypes.count) down / \(upBlockTypes.count) up", supported: ["one per block_out_channels entry (\(blockOutChannels.count))"])
        }
    }
}

/// A down block: resnets, each optionally followed by added-KV attention, then an optional resnet downsampler.
final class UNetDownBlock: Module {
    let resnets: [ResnetBlock2D]
    let attentions: [AddedKVAttention]
    let downsamplers: [ResnetBlock2D]

    init(resnets: [ResnetBlock2D], attentions: [AddedKVAttention], downsamplers: [ResnetBlock2D]) {
        self.resnets = resnets; self.attentions = attentions; self.downsamplers = downsamplers
    }

    /// Returns the block output and the skip tensors it pushes (every resnet output, then the downsampler's).
    func callAsFunction(_ x: Tensor, _ emb: Tensor, context: Tensor?, keyBias: Tensor?) -> (Tensor, [Tensor]) {
        var h = x
        var skips: [Tensor] = []
        for (i, resnet) in resnets.enumerated() {
            h = resnet(h, emb)
            if i < attentions.count, let context { h = attentions[i](h, context: context, keyBias: keyBias) }
            skips.append(h)
        }
        for down in downsamplers { h = down(h, emb); skips.append(h) }
        return (h, skips)
    }
}

/// An up block: before each resnet the next skip is concatenated on channels; then optional attention; then an
/// optional resnet upsampler.
final class UNetUpBlock: Module {
    let resnets: [ResnetBlock2D]
    let attentions: [AddedKVAttention]
    let upsamplers: [ResnetBlock2D]

    init(resnets: [ResnetBlock2D], attentions: [AddedKVAttention], upsamplers: [ResnetBlock2D]) {
        self.resnets = resnets; self.attentions = attentions; self.upsamplers = upsamplers
    }

    func callAsFunction(_ x: Tensor, _ emb: Tensor, skips: inout [Tensor], context: Tensor?, keyBias: Tensor?) -> Tensor {
        var h = x
        for (i, resnet) in resnets.enumerated() {
            h = resnet(Tensor.concat([h, skips.removeLast()], axis: 1), emb)  // h first, then the skip
            if i < attentions.count, let context { h = attentions[i](h, context: context, keyBias: keyBias) }
        }
        for up in upsamplers { h = up(h, emb) }
        return h
    }
}

/// The cross-attention mid block: resnet → attention → resnet.
final class UNetMidBlock2DSimpleCrossAttn: Module {
    let resnets: [ResnetBlock2D]
    let attentions: [AddedKVAttention]

    init(resnets: [ResnetBlock2D], attentions: [AddedKVAttention]) { self.resnets = resnets; self.attentions = attentions }

    func callAsFunction(_ x: Tensor, _ emb: Tensor, context: Tensor, keyBias: Tensor?) -> Tensor {
        var h = resnets[0](x, emb)
        for (attention, resnet) in zip(attentions, resnets.dropFirst()) {
            h = resnet(attention(h, context: context, keyBias: keyBias), emb)
        }
        return h
    }
}

/// The unCLIP decoder: a U-Net over 64×64 images conditioned on the CLIP image embedding (through the time embedding
/// and four context tokens) and on the caption's text tokens (added-KV attention).
public final class UNet2DConditionModel: Module {
    let conv_in: Conv2d
    let time_embedding: TimestepEmbedding
    let down_blocks: [UNetDownBlock]
    let mid_block: UNetMidBlock2DSimpleCrossAttn?
    let up_blocks: [UNetUpBlock]
    let conv_norm_out: GroupNorm
    let conv_out: Conv2d
    public let config: UNet2DConditionConfig

    public init(_ config: UNet2DConditionConfig) throws {
        try config.validate()
        self.config = config
        let ch = config.blockOutChannels, n = ch.count
        let tm = 4 * ch[0]
        let cond = config.resnetTimeScaleShift
        let g = config.normNumGroups, eps = config.normEps, x = config.crossAttentionDim
        func resnet(_ cin: Int, _ cout: Int, _ r: ResnetBlock2D.Resample = .none) -> ResnetBlock2D {
            ResnetBlock2D(in: cin, out: cout, timeEmbedDim: tm, conditioning: cond, resample: r, groups: g, eps: eps)
        }
        func attention(_ c: Int, _ i: Int) -> AddedKVAttention {
            AddedKVAttention(channels: c, contextDim: x, headDim: config.attentionHeadDim.value(at: i), groups: g, eps: eps)
        }

        conv_in = Conv2d(config.inChannels, ch[0], kernelSize: 3, padding: 1)
        time_embedding = TimestepEmbedding(inChannels: ch[0], timeEmbedDim: tm)

        var downs: [UNetDownBlock] = []
        var output = ch[0]
        for (i, type) in config.downBlockTypes.enumerated() {
            let input = output
            output = ch[i]
            let layers = config.layersPerBlock.value(at: i)
            let withAttention = type == "SimpleCrossAttnDownBlock2D"
            downs.append(UNetDownBlock(
                resnets: (0..<layers).map { j in resnet(j == 0 ? input : output, output) },
                attentions: withAttention ? (0..<layers).map { _ in attention(output, i) } : [],
                downsamplers: i < n - 1 ? [resnet(output, output, .down)] : []))
        }
        down_blocks = downs

        mid_block = config.midBlockType == nil ? nil : UNetMidBlock2DSimpleCrossAttn(
            resnets: [resnet(ch[n - 1], ch[n - 1]), resnet(ch[n - 1], ch[n - 1])],
            attentions: [attention(ch[n - 1], n - 1)])

        var ups: [UNetUpBlock] = []
        let reversed = Array(ch.reversed())
        let reversedLayers = (0..<n).map { config.layersPerBlock.value(at: $0) }.reversed().map { $0 }
        output = reversed[0]
        for (i, type) in config.upBlockTypes.enumerated() {
            let previous = output
            output = reversed[i]
            let skipIn = reversed[min(i + 1, n - 1)]
            let layers = reversedLayers[i] + 1
            let withAttention = type == "SimpleCrossAttnUpBlock2D"
            ups.append(UNetUpBlock(
                resnets: (0..<layers).map { j in resnet((j == 0 ? previous : output) + (j == layers - 1 ? skipIn : output), output) },
                attentions: withAttention ? (0..<layers).map { _ in attention(output, n - 1 - i) } : [],
                upsamplers: i < n - 1 ? [resnet(output, output, .up)] : []))
        }
        up_blocks = ups
        conv_norm_out = GroupNorm(groups: g, channels: ch[0], eps: eps)
        conv_out = Conv2d(ch[0], config.outChannels, kernelSize: 3, padding: 1)
    }

    /// sample [B, C, H, W] at `timestep`; context [B, S, X]; `classLabels` [B, Tm] (text_proj's additive time
    /// embedding); `attentionMask` [B][S] (1 keep, 0 masked) over the context tokens.
    public func callAsFunction(_ sample: Tensor, timestep: Int, encoderHiddenStates context: Tensor,
                               classLabels: Tensor?, attentionMask: [[Int]]?) -> Tensor {
        self(sample, timesteps: Array(repeating: timestep, count: sample.shape[0]), encoderHiddenStates: context,
             classLabels: classLabels, attentionMask: attentionMask)
    }

    /// The same with one timestep per sample (training draws a timestep for each image).
    public func callAsFunction(_ sample: Tensor, timesteps: [Int], encoderHiddenStates context: Tensor,
                               classLabels: Tensor?, attentionMask: [[Int]]?) -> Tensor {
        let b = sample.shape[0]
        precondition(timesteps.count == b, "\(timesteps.count) timesteps for a batch of \(b)")
        var emb = time_embedding(timestepEmbedding(timesteps.map(Float.init), dim: config.blockOutChannels[0],
                                                   flipSinToCos: config.flipSinToCos, downscaleFreqShift: config.freqShift))
        if config.classEmbedType == "identity", let classLabels { emb = emb + classLabels }
        // Matches diffusers: the boolean mask becomes the additive bias (1 − m)·(−10000), shared by all heads and queries.
        let keyBias = attentionMask.map { mask in
            Tensor(shape: [b, 1, 1, mask[0].count], mask.flatMap { $0.map { Float(1 - $0) * -10000 } })
        }

        var h = conv_in(sample)
        var skips = [h]
        for block in down_blocks {
            let (out, pushed) = block(h, emb, context: context, keyBias: keyBias)
            h = out
            skips += pushed
        }
        if let mid_block { h = mid_block(h, emb, context: context, keyBias: keyBias) }
        for block in up_blocks { h = block(h, emb, skips: &skips, context: context, keyBias: keyBias) }
        return conv_out(conv_norm_out.silu(h))
    }
}
