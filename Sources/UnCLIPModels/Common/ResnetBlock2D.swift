import UnCLIPNN

/// How a resnet takes the time embedding (`resnet_time_scale_shift`).
public enum TimeConditioning: String, Codable, CaseIterable, Sendable {
    /// Added to the features before `norm2` (`time_emb_proj` has `cout` outputs): the super-resolution UNets.
    case additive = "default"
    /// `norm2(h)·(1 + scale) + shift` (`time_emb_proj` has `2·cout` outputs): the decoder.
    case scaleShift = "scale_shift"
}

/// diffusers `ResnetBlock2D`, optionally resampling (×2 nearest up, or 2×2 average-pool down) inside.
final class ResnetBlock2D: Module {
    enum Resample { case none, up, down }

    let norm1: GroupNorm
    let conv1: Conv2d
    let time_emb_proj: Linear
    let norm2: GroupNorm
    let dropout: Dropout
    let conv2: Conv2d
    let conv_shortcut: Conv2d?
    let conditioning: TimeConditioning
    let resample: Resample

    init(in cin: Int, out cout: Int, timeEmbedDim: Int, conditioning: TimeConditioning, resample: Resample = .none,
         groups: Int = 32, eps: Float = 1e-5) {
        norm1 = GroupNorm(groups: groups, channels: cin, eps: eps)
        conv1 = Conv2d(cin, cout, kernelSize: 3, padding: 1)
        time_emb_proj = Linear(timeEmbedDim, conditioning == .scaleShift ? 2 * cout : cout)
        norm2 = GroupNorm(groups: groups, channels: cout, eps: eps)
        dropout = Dropout(p: 0)
        conv2 = Conv2d(cout, cout, kernelSize: 3, padding: 1)
        conv_shortcut = cin != cout ? Conv2d(cin, cout, kernelSize: 1) : nil
        self.conditioning = conditioning
        self.resample = resample
    }

    /// x [B, cin, H, W], emb [B, Tm] → [B, cout, H′, W′].
    func callAsFunction(_ x: Tensor, _ emb: Tensor) -> Tensor {
        var skip = x
        var h = norm1.silu(x)
        switch resample {  // the skip path resamples the raw input
        case .up: h = h.upsampleNearest2x(); skip = skip.upsampleNearest2x()
        case .down: h = h.avgPool2x2(); skip = skip.avgPool2x2()
        case .none: break
        }
        h = conv1(h)
        let t = time_emb_proj(emb.silu())  // [B, cout] or [B, 2·cout]
        // One fused pass: silu(norm2(h + t)) or silu(norm2(h)·(1 + scale) + shift).
        switch conditioning {
        case .additive:
            h = norm2.silu(h, inputShift: t)
        case .scaleShift:
            let parts = t.chunked(2, axis: 1)  // first half scale, second half shift
            h = norm2.silu(h, scale: parts[0], shift: parts[1])
        }
        h = conv2(dropout(h))
        if let conv_shortcut { skip = conv_shortcut(skip) }
        return skip + h
    }
}

extension GroupNorm {
    /// `silu(self(x + inputShift) · (1 + scale) + shift)` as one fused pass (`inputShift`, `scale`, `shift`: [N, C]).
    func silu(_ x: Tensor, inputShift: Tensor? = nil, scale: Tensor? = nil, shift: Tensor? = nil) -> Tensor {
        x.groupNormConditioned(groups: groups, weight: weight, bias: bias, eps: eps, inputShift: inputShift,
                               scale: scale, shift: shift, silu: true)
    }
}
