import UnCLIPNN

/// Whether a computation on `tensors` must be recorded for autodiff (then only differentiable ops may run).
@inline(__always) private func recording(_ tensors: Tensor?...) -> Bool {
    GradMode.isEnabled && tensors.contains { $0?.requiresGrad ?? false }
}

/// Token sequences [B, Lᵢ, H·dh] joined along the tokens and split into heads: [B, H, ΣLᵢ, dh].
///
/// Equal to `splitHeads(Tensor.concat(parts, axis: 1), heads:)`, which runs when a graph is being recorded; for
/// inference one copy replaces the concat and the permute.
func concatHeads(_ parts: [Tensor], heads: Int) -> Tensor {
    if parts.contains(where: { recording($0) }) { return splitHeads(Tensor.concat(parts, axis: 1), heads: heads) }
    let b = parts[0].shape[0], d = parts[0].shape[2], dh = d / heads
    precondition(parts.allSatisfy { $0.rank == 3 && $0.shape[0] == b && $0.shape[2] == d }, "concatHeads: \(parts.map(\.shape))")
    let lengths = parts.map { $0.shape[1] }, total = lengths.reduce(0, +)
    let out = Tensor(uninitializedShape: [b, heads, total, dh])
    let po = out.data, sources = parts.map { UnsafePointer($0.data) }
    parallelFor(b * heads, grain: max(1, 32_768 / max(total * dh, 1))) { range in
        for task in range {
            let n = task / heads, h = task % heads
            var row = po + task * total * dh  // out[n, h, 0, 0]
            for (src, l) in zip(sources, lengths) {
                let base = src + n * l * d + h * dh  // part[n, 0, h·dh]
                for t in 0..<l { row.update(from: base + t * d, count: dh); row += dh }
            }
        }
    }
    return out
}

/// `x + tokens` with tokens [B, H·W, C] laid back onto the feature map x [B, C, H, W].
///
/// Equal to `x + tokens.transposed(1, 2).reshaped(x.shape)` (what runs while recording); for inference the transpose
/// and the residual add are one pass.
func addTokens(_ x: Tensor, _ tokens: Tensor) -> Tensor {
    let (b, c) = (x.shape[0], x.shape[1]), hw = x.count / max(b * c, 1)
    if recording(x, tokens) { return x + tokens.transposed(1, 2).reshaped(x.shape) }
    precondition(tokens.shape == [b, hw, c], "addTokens: tokens \(tokens.shape) for feature map \(x.shape)")
    let out = Tensor(uninitializedShape: x.shape)
    let px = x.data, pt = tokens.data, po = out.data
    // Tiles of 16 channels × all positions: each tokens cache line (16 channels) is read once per tile.
    let tiles = (c + 15) / 16
    parallelFor(b * tiles, grain: max(1, 16_384 / max(16 * hw, 1))) { range in
        for task in range {
            let n = task / tiles, c0 = (task % tiles) * 16, c1 = min(c, c0 + 16)
            let xs = px + n * c * hw, ts = pt + n * hw * c, os = po + n * c * hw
            for p in 0..<hw {
                let trow = ts + p * c
                for ch in c0..<c1 { os[ch * hw + p] = xs[ch * hw + p] + trow[ch] }
            }
        }
    }
    return out
}

/// diffusers' `Attention` with the plain processor: self-attention over tokens (`to_q`, `to_k`, `to_v`, `to_out.0`),
/// optionally with a `group_norm` in front over a feature map (the UNet2DModel mid-block form).
final class SelfAttention: Module {
    let group_norm: GroupNorm?
    let to_q: Linear, to_k: Linear, to_v: Linear
    let to_out: [Module]  // [Linear, Dropout]
    let heads: Int

    init(dim: Int, heads: Int, bias: Bool = true, groupNormGroups: Int? = nil, eps: Float = 1e-5) {
        group_norm = groupNormGroups.map { GroupNorm(groups: $0, channels: dim, eps: eps) }
        to_q = Linear(dim, dim, bias: bias)
        to_k = Linear(dim, dim, bias: bias)
        to_v = Linear(dim, dim, bias: bias)
        to_out = [Linear(dim, dim), Dropout(p: 0)]
        self.heads = heads
    }

    /// Tokens [B, L, D] with an optional additive bias broadcastable to [B, H, L, L].
    func callAsFunction(_ x: Tensor, bias: Tensor? = nil) -> Tensor {
        let dh = x.shape[2] / heads
        let o = scaledDotProductAttention(query: splitHeads(to_q(x), heads: heads), key: splitHeads(to_k(x), heads: heads),
                                          value: splitHeads(to_v(x), heads: heads), bias: bias,
                                          scale: 1 / Float(dh).squareRoot())
        return (to_out[0] as! Linear)(mergeHeads(o))
    }

    /// Feature map [B, C, H, W]: residual + attention(group_norm(x)) over the H·W tokens.
    func spatial(_ x: Tensor) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let normed = group_norm.map { $0(x) } ?? x
        let tokens = normed.reshaped([b, c, h * w]).transposed(1, 2)  // [B, HW, C]
        return addTokens(x, self(tokens))
    }
}

/// diffusers' `Attention` with `AttnAddedKVProcessor`: the decoder's attention over the image's own tokens plus the
/// conditioning context (`add_k_proj`, `add_v_proj`), the context keys first.
final class AddedKVAttention: Module {
    let group_norm: GroupNorm
    let to_q: Linear, to_k: Linear, to_v: Linear
    let add_k_proj: Linear, add_v_proj: Linear
    let to_out: [Module]  // [Linear, Dropout]
    let heads: Int

    init(channels: Int, contextDim: Int, headDim: Int, groups: Int = 32, eps: Float = 1e-5) {
        group_norm = GroupNorm(groups: groups, channels: channels, eps: eps)
        to_q = Linear(channels, channels)
        to_k = Linear(channels, channels)
        to_v = Linear(channels, channels)
        add_k_proj = Linear(contextDim, channels)
        add_v_proj = Linear(contextDim, channels)
        to_out = [Linear(channels, channels), Dropout(p: 0)]
        heads = channels / headDim
    }

    /// x [B, C, H, W]; context [B, S, X]; keyBias [B, 1, 1, S] additive over the context keys (or nil).
    func callAsFunction(_ x: Tensor, context: Tensor, keyBias: Tensor?) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let s = group_norm(x).reshaped([b, c, h * w]).transposed(1, 2)  // [B, HW, C]
        let q = splitHeads(to_q(s), heads: heads)
        // Matches diffusers AttnAddedKVProcessor: context keys/values come before the spatial ones.
        let k = concatHeads([add_k_proj(context), to_k(s)], heads: heads)
        let v = concatHeads([add_v_proj(context), to_v(s)], heads: heads)
        // The bias covers the S context keys; the H·W spatial keys get 0 (diffusers pads the mask with zeros).
        let bias = keyBias.map { $0.padded([(0, 0), (0, 0), (0, 0), (0, h * w)]) }
        let o = scaledDotProductAttention(query: q, key: k, value: v, bias: bias,
                                          scale: 1 / Float(c / heads).squareRoot())
        let out = (to_out[0] as! Linear)(mergeHeads(o))  // [B, HW, C]
        return addTokens(x, out)
    }
}
