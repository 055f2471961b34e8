import UnCLIPNN

/// CLIP's multi-head self-attention (`self_attn` in transformers' `CLIPEncoderLayer`).
final class CLIPAttention: Module {
    let q_proj: Linear, k_proj: Linear, v_proj: Linear, out_proj: Linear
    let heads: Int

    init(dim: Int, heads: Int) {
        q_proj = Linear(dim, dim)
        k_proj = Linear(dim, dim)
        v_proj = Linear(dim, dim)
        out_proj = Linear(dim, dim)
        self.heads = heads
    }

    /// x [B, L, D] → [B, L, D]; `bias` is additive over [B or 1, 1, L, L] (the causal mask of the text tower).
    func callAsFunction(_ x: Tensor, bias: Tensor?) -> Tensor {
        let dh = x.shape[2] / heads
        func split(_ t: Tensor) -> Tensor { splitHeads(t, heads: heads) }  // [B, H, L, dh]
        let o = scaledDotProductAttention(query: split(q_proj(x)), key: split(k_proj(x)), value: split(v_proj(x)),
                                          bias: bias, scale: 1 / Float(dh).squareRoot())
        return out_proj(mergeHeads(o))  // [B, L, D], heads concatenated head-major
    }
}

/// CLIP's feed-forward block (`mlp.fc1`, `mlp.fc2`).
final class CLIPMLP: Module {
    let fc1: Linear, fc2: Linear
    let activation: Activation

    init(dim: Int, hidden: Int, activation: Activation) {
        fc1 = Linear(dim, hidden)
        fc2 = Linear(hidden, dim)
        self.activation = activation
    }

    func callAsFunction(_ x: Tensor) -> Tensor { fc2(activation(fc1(x))) }
}

/// One pre-LayerNorm transformer layer of CLIP (`encoder.layers.{i}`).
final class CLIPEncoderLayer: Module {
    let self_attn: CLIPAttention
    let layer_norm1: LayerNorm
    let mlp: CLIPMLP
    let layer_norm2: LayerNorm

    init(dim: Int, heads: Int, hidden: Int, activation: Activation, eps: Float) {
        self_attn = CLIPAttention(dim: dim, heads: heads)
        layer_norm1 = LayerNorm(dim, eps: eps)
        mlp = CLIPMLP(dim: dim, hidden: hidden, activation: activation)
        layer_norm2 = LayerNorm(dim, eps: eps)
    }

    func callAsFunction(_ x: Tensor, bias: Tensor?) -> Tensor {
        let h = x + self_attn(layer_norm1(x), bias: bias)
        return h + mlp(layer_norm2(h))
    }
}

/// The stack of CLIP encoder layers (`encoder.layers`).
final class CLIPEncoder: Module {
    let layers: [CLIPEncoderLayer]

    init(count: Int, dim: Int, heads: Int, hidden: Int, activation: Activation, eps: Float) {
        layers = (0..<count).map { _ in CLIPEncoderLayer(dim: dim, heads: heads, hidden: hidden, activation: activation, eps: eps) }
    }

    func callAsFunction(_ x: Tensor, bias: Tensor?) -> Tensor {
        layers.reduce(x) { h, layer in layer(h, bias: bias) }
    }
}
