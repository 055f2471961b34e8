import UnCLIPTensor

/// Classifier-free guidance (Ho & Salimans 2022) of one denoising stage: the model sees the batch twice,
/// [unconditional; conditional], and the prediction is pushed away from the unconditional one,
/// ε̂ = ε̂_u + s·(ε̂_c − ε̂_u).
public struct Guidance: Sendable {
    /// Whether the model input is doubled. diffusers doubles it in every stage when either scale exceeds 1, so the
    /// prior runs guided at scale 1 when only the decoder asks for guidance.
    public var isEnabled: Bool
    /// s.
    public var scale: Float
    /// Channels (axis 1) of the model output that are guided; the rest — a learned variance — come from the
    /// conditional half alone, as in diffusers' decoder. nil guides every channel.
    public var guidedChannels: Int?

    public init(isEnabled: Bool, scale: Float, guidedChannels: Int? = nil) {
        self.isEnabled = isEnabled
        self.scale = scale
        self.guidedChannels = guidedChannels
    }

    /// No guidance: the model sees the batch once.
    public static let off = Guidance(isEnabled: false, scale: 1)

    /// The model input for a sample: doubled along the batch when guided.
    public func modelInput(_ x: Tensor) -> Tensor { isEnabled ? Tensor.concat([x, x], axis: 0) : x }

    /// The guided prediction from the model output on `modelInput(x)`.
    public func combine(_ output: Tensor) -> Tensor {
        guard isEnabled else { return output }
        let halves = output.chunked(2, axis: 0)
        let (u, c) = (halves[0], halves[1])
        guard let k = guidedChannels, k < output.shape[1] else { return u + scale * (c - u) }
        let rest = output.shape[1] - k
        let us = u.split(sizes: [k, rest], axis: 1), cs = c.split(sizes: [k, rest], axis: 1)
        return Tensor.concat([us[0] + scale * (cs[0] - us[0]), cs[1]], axis: 1)
    }
}
