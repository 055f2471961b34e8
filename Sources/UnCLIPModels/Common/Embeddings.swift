import Foundation
import UnCLIPNN

/// Sinusoidal timestep features [B, dim] (diffusers `get_timestep_embedding`).
///
/// Matches diffusers: computed in float32 — exponent = −ln(10000)·k / (half − shift), argument = t·exp(exponent) —
/// and, with `flipSinToCos`, laid out as [cos, sin] (cos half first).
public func timestepEmbedding(_ timesteps: [Float], dim: Int, flipSinToCos: Bool = true, downscaleFreqShift: Float = 0) -> Tensor {
    let half = dim / 2
    let logPeriod = Float(-log(10000.0))
    let freqs = (0..<half).map { k in Foundation.exp(logPeriod * Float(k) / (Float(half) - downscaleFreqShift)) }
    var out = [Float](repeating: 0, count: timesteps.count * dim)
    for (b, t) in timesteps.enumerated() {
        for k in 0..<half {
            let arg = t * freqs[k]
            let (first, second) = flipSinToCos ? (Foundation.cos(arg), Foundation.sin(arg)) : (Foundation.sin(arg), Foundation.cos(arg))
            out[b * dim + k] = first
            out[b * dim + half + k] = second
        }
        // An odd dim is zero-padded on the right, as diffusers does.
    }
    return Tensor(shape: [timesteps.count, dim], out)
}

/// The time MLP (`time_embedding.linear_1`, `.linear_2`): linear → act → linear.
final class TimestepEmbedding: Module {
    let linear_1: Linear
    let linear_2: Linear
    let act: Activation

    init(inChannels: Int, timeEmbedDim: Int, act: Activation = .silu) {
        linear_1 = Linear(inChannels, timeEmbedDim)
        linear_2 = Linear(timeEmbedDim, timeEmbedDim)
        self.act = act
    }

    func callAsFunction(_ x: Tensor) -> Tensor { linear_2(act(linear_1(x))) }
}
