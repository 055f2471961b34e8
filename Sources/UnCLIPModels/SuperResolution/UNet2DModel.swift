import UnCLIPNN

/// diffusers `UNet2DModel` configuration, as far as the unCLIP super-resolution UNets use it.
public struct UNet2DConfig: Codable, Sendable, CheckedConfiguration {
    public var sampleSize = 256
    public var inChannels = 6
    public var outChannels = 3
    public var layersPerBlock = 3
    public var blockOutChannels = [320, 640, 960, 1280]
    public var downBlockTypes = Array(repeating: "ResnetDownsampleBlock2D", count: 4)
    public var upBlockTypes = Array(repeating: "ResnetUpsampleBlock2D", count: 4)
    public var midBlockType: String? = "UNetMidBlock2D"
    public var addAttention = true
    public var attentionHeadDim: Int? = 8
    public var resnetTimeScaleShift = TimeConditioning.additive
    public var normNumGroups = 32
    public var normEps: Float = 1e-5
    public var flipSinToCos = true
    public var freqShift: Float = 0
    var unsupported: [(String, String)] = []

    enum CodingKeys: String, CodingKey {
        case sampleSize = "sample_size", inChannels = "in_channels", outChannels = "out_channels"
        case layersPerBlock = "layers_per_block", blockOutChannels = "block_out_channels"
        case downBlockTypes = "down_block_types", upBlockTypes = "up_block_types", midBlockType = "mid_block_type"
        case addAttention = "add_attention", attentionHeadDim = "attention_head_dim"
        case resnetTimeScaleShift = "resnet_time_scale_shift", normNumGroups = "norm_num_groups", normEps = "norm_eps"
        case flipSinToCos = "flip_sin_to_cos", freqShift = "freq_shift"
        case actFn = "act_fn", centerInputSample = "center_input_sample", timeEmbeddingType = "time_embedding_type"
        case classEmbedType = "class_embed_type", numClassEmbeds = "num_class_embeds", midBlockScaleFactor = "mid_block_scale_factor"
        case attnNormNumGroups = "attn_norm_num_groups"
        // Written for diffusers, not read: ResnetDownsampleBlock2D ignores it.
        case downsamplePadding = "downsample_padding"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = UNet2DConfig()
        sampleSize = try c.value(.sampleSize, or: d.sampleSize)
        inChannels = try c.value(.inChannels, or: 3)
        outChannels = try c.value(.outChannels, or: 3)
        layersPerBlock = try c.value(.layersPerBlock, or: 2)
        blockOutChannels = try c.value(.blockOutChannels, or: [224, 448, 672, 896])
        downBlockTypes = try c.value(.downBlockTypes, or: ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"])
        upBlockTypes = try c.value(.upBlockTypes, or: ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"])
        midBlockType = c.contains(.midBlockType) ? try c.decodeIfPresent(String.self, forKey: .midBlockType) : d.midBlockType
        addAttention = try c.value(.addAttention, or: d.addAttention)
        attentionHeadDim = c.contains(.attentionHeadDim) ? try c.decodeIfPresent(Int.self, forKey: .attentionHeadDim) : d.attentionHeadDim
        resnetTimeScaleShift = try c.option(.resnetTimeScaleShift, or: d.resnetTimeScaleShift, component: "UNet2DModel")
        normNumGroups = try c.value(.normNumGroups, or: d.normNumGroups)
        normEps = try c.value(.normEps, or: d.normEps)
        flipSinToCos = try c.value(.flipSinToCos, or: d.flipSinToCos)
        freqShift = try c.value(.freqShift, or: d.freqShift)
        func expect<T: Decodable & Equatable>(_ key: CodingKeys, _ type: T.Type, _ allowed: [T?]) throws {
            if let found = try c.unsupported(key, type, allowed: allowed) { unsupported.append(found) }
        }
        try expect(.actFn, String.self, ["silu", "swish"])
        try expect(.centerInputSample, Bool.self, [false, nil])
        try expect(.timeEmbeddingType, String.self, ["positional", nil])
        try expect(.classEmbedType, String.self, [nil])
        try expect(.numClassEmbeds, Int.self, [nil])
        try expect(.midBlockScaleFactor, Float.self, [1, nil])
        try expect(.attnNormNumGroups, Int.self, [nil])
    }

    /// Writes the keys diffusers' `UNet2DModel` takes: the fields above and, for the options the super-resolution
    /// UNets leave at their defaults (checked on decoding), the values they implement.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(sampleSize, forKey: .sampleSize)
        try c.encode(inChannels, forKey: .inChannels)
        try c.encode(outChannels, forKey: .outChannels)
        try c.encode(layersPerBlock, forKey: .layersPerBlock)
        try c.encode(blockOutChannels, forKey: .blockOutChannels)
        try c.encode(downBlockTypes, forKey: .downBlockTypes)
        try c.encode(upBlockTypes, forKey: .upBlockTypes)
        try c.encode(midBlockType, forKey: .midBlockType)
        try c.encode(addAttention, forKey: .addAttention)
        try c.encode(attentionHeadDim, forKey: .attentionHeadDim)
        try c.encode(resnetTimeScaleShift, forKey: .resnetTimeScaleShift)
        try c.encode(normNumGroups, forKey: .normNumGroups)
        try c.encode(normEps, forKey: .normEps)
        try c.encode(flipSinToCos, forKey: .flipSinToCos)
        try c.encodeWhole(freqShift, forKey: .freqShift)
        try c.encode("silu", forKey: .actFn)
        try c.encode(false, forKey: .centerInputSample)
        try c.encode("positional", forKey: .timeEmbeddingType)
        try c.encodeNil(forKey: .classEmbedType)
        try c.encodeNil(forKey: .numClassEmbeds)
        try c.encode(1, forKey: .midBlockScaleFactor)
        try c.encode(1, forKey: .downsamplePadding)
    }

    public func validate() throws {
        if let (option, value) = unsupported.first {
            throw UnsupportedConfiguration(component: "UNet2DModel", option: option, value: value, supported: ["the diffusers default"])
        }
        let check = ConfigurationChecks(component: "UNet2DModel")
        try check.unet(sampleSize: sampleSize, inChannels: inChannels, outChannels: outChannels, blockOutChannels: blockOutChannels,
                       layersPerBlock: .single(layersPerBlock), normNumGroups: normNumGroups, normEps: normEps, freqShift: freqShift)
        if midBlockType != nil, addAttention, let dim = attentionHeadDim, let last = blockOutChannels.last {
            try check.require(dim >= 1 && last % dim == 0, "attention_head_dim", dim, "a positive divisor of the last block_out_channels entry (\(last))")
        }
        for t in downBlockTypes where t != "ResnetDownsampleBlock2D" {
            throw UnsupportedConfiguration(component: "UNet2DModel", option: "down_block_types", value: t, supported: ["ResnetDownsampleBlock2D"])
        }
        for t in upBlockTypes where t != "ResnetUpsampleBlock2D" {
            throw UnsupportedConfiguration(component: "UNet2DModel", option: "up_block_types", value: t, supported: ["ResnetUpsampleBlock2D"])
        }
        if let m = midBlockType, m != "UNetMidBlock2D" {
            throw UnsupportedConfiguration(component: "UNet2DModel", option: "mid_block_type", value: m, supported: ["UNetMidBlock2D", "null"])
        }
        guard downBlockTypes.count == blockOutChannels.count, upBlockTypes.count == blockOutChannels.count else {
            throw UnsupportedConfiguration(component: "UNet2DModel", option: "block types", value: "\(downBlockTypes.count) down / \(upBlockTypes.count) up", supported: ["one per block_out_channels entry (\(blockOutChannels.count))"])
        }
    }
}

/// `UNetMidBlock2D`: resnet → (optional self-attention with group norm) → resnet.
final class UNetMidBlock2D: Module {
    let resnets: [ResnetBlock2D]
    let attentions: [SelfAttention]

    init(resnets: [ResnetBlock2D], attentions: [SelfAttention]) { self.resnets = resnets; self.attentions = attentions }

    func callAsFunction(_ x: Tensor, _ emb: Tensor) -> Tensor {
        var h = resnets[0](x, emb)
        for (i, resnet) in resnets.dropFirst().enumerated() {
            if i < attentions.count { h = attentions[i].spatial(h) }
            h = resnet(h, emb)
        }
        return h
    }
}

/// The unCLIP super-resolution U-Net: ε from [noisy high-res sample, upsampled low-res image] (6 channels) and t.
public final class UNet2DModel: Module {
    let conv_in: Conv2d
    let time_embedding: TimestepEmbedding
    let down_blocks: [UNetDownBlock]
    let mid_block: UNetMidBlock2D?
    let up_blocks: [UNetUpBlock]
    let conv_norm_out: GroupNorm
    let conv_out: Conv2d
    public let config: UNet2DConfig

    public init(_ config: UNet2DConfig) throws {
        try config.validate()
        self.config = config
        let ch = config.blockOutChannels, n = ch.count, tm = 4 * ch[0]
        let cond = config.resnetTimeScaleShift
        let g = config.normNumGroups, eps = config.normEps, layers = config.layersPerBlock
        func resnet(_ cin: Int, _ cout: Int, _ r: ResnetBlock2D.Resample = .none) -> ResnetBlock2D {
            ResnetBlock2D(in: cin, out: cout, timeEmbedDim: tm, conditioning: cond, resample: r, groups: g, eps: eps)
        }
        conv_in = Conv2d(config.inChannels, ch[0], kernelSize: 3, padding: 1)
        time_embedding = TimestepEmbedding(inChannels: ch[0], timeEmbedDim: tm)
        var output = ch[0]
        down_blocks = (0..<n).map { i in
            let input = output
            output = ch[i]
            let out = output
            return UNetDownBlock(resnets: (0..<layers).map { j in resnet(j == 0 ? input : out, out) }, attentions: [],
                                 downsamplers: i < n - 1 ? [resnet(out, out, .down)] : [])
        }
        if config.midBlockType == nil {
            mid_block = nil
        } else {
            let c = ch[n - 1]
            // Matches diffusers UNetMidBlock2D: the attention's group norm exists only with "default" time conditioning.
            let heads = c / (config.attentionHeadDim ?? c)
            mid_block = UNetMidBlock2D(
                resnets: [resnet(c, c), resnet(c, c)],
                attentions: config.addAttention ? [SelfAttention(dim: c, heads: heads, groupNormGroups: cond == .additive ? g : nil, eps: eps)] : [])
        }
        let reversed = Array(ch.reversed())
        output = reversed[0]
        up_blocks = (0..<n).map { i in
            let previous = output
            output = reversed[i]
            let out = output, skipIn = reversed[min(i + 1, n - 1)], count = layers + 1
            return UNetUpBlock(resnets: (0..<count).map { j in resnet((j == 0 ? previous : out) + (j == count - 1 ? skipIn : out), out) },
                               attentions: [], upsamplers: i < n - 1 ? [resnet(out, out, .up)] : [])
        }
        conv_norm_out = GroupNorm(groups: g, channels: ch[0], eps: eps)
        conv_out = Conv2d(ch[0], config.outChannels, kernelSize: 3, padding: 1)
    }

    /// sample [B, inChannels, H, W] at `timestep` → [B, outChannels, H, W].
    public func callAsFunction(_ sample: Tensor, timestep: Int) -> Tensor {
        self(sample, timesteps: Array(repeating: timestep, count: sample.shape[0]))
    }

    /// The same with one timestep per sample (training draws a timestep for each image).
    public func callAsFunction(_ sample: Tensor, timesteps: [Int]) -> Tensor {
        precondition(timesteps.count == sample.shape[0], "\(timesteps.count) timesteps for a batch of \(sample.shape[0])")
        let emb = time_embedding(timestepEmbedding(timesteps.map(Float.init), dim: config.blockOutChannels[0],
                                                   flipSinToCos: config.flipSinToCos, downscaleFreqShift: config.freqShift))
        var h = conv_in(sample)
        var skips = [h]
        for block in down_blocks {
            let (out, pushed) = block(h, emb, context: nil, keyBias: nil)
            h = out
            skips += pushed
        }
        if let mid_block { h = mid_block(h, emb) }
        for block in up_blocks { h = block(h, emb, skips: &skips, context: nil, keyBias: nil) }
        return conv_out(conv_norm_out.silu(h))
    }
}
