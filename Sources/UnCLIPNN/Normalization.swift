/// Group normalisation over [N, C, *] input, like `torch.nn.GroupNorm` (biased variance, per-channel affine).
open class GroupNorm: Module {
    /// Per-channel scale [C] (ones), or nil without `affine`.
    public let weight: Tensor?
    /// Per-channel shift [C] (zeros), or nil without `affine`.
    public let bias: Tensor?
    public let groups: Int
    public let eps: Float

    /// Parameters start at PyTorch's values (ones, zeros): cheap, and right for a norm that is never loaded.
    public init(groups: Int, channels: Int, eps: Float = 1e-5, affine: Bool = true) {
        precondition(groups > 0 && channels % groups == 0, "GroupNorm: \(channels) channels do not split into \(groups) groups")
        self.groups = groups
        self.eps = eps
        weight = affine ? .ones([channels]) : nil
        bias = affine ? .zeros([channels]) : nil
    }

    open override func resetOwnParameters(using rng: inout Philox) {
        if let weight { weight.assign(.ones(weight.shape)) }
        if let bias { bias.assign(.zeros(bias.shape)) }
    }

    open func callAsFunction(_ x: Tensor) -> Tensor {
        x.groupNorm(groups: groups, weight: weight, bias: bias, eps: eps)
    }
}

/// Layer normalisation over the last axis, like `torch.nn.LayerNorm(dim)` (biased variance).
open class LayerNorm: Module {
    /// Scale [dim] (ones), or nil without `affine`.
    public let weight: Tensor?
    /// Shift [dim] (zeros), or nil without `affine`.
    public let bias: Tensor?
    public let eps: Float

    public init(_ dim: Int, eps: Float = 1e-5, affine: Bool = true) {
        self.eps = eps
        weight = affine ? .ones([dim]) : nil
        bias = affine ? .zeros([dim]) : nil
    }

    open override func resetOwnParameters(using rng: inout Philox) {
        if let weight { weight.assign(.ones(weight.shape)) }
        if let bias { bias.assign(.zeros(bias.shape)) }
    }

    open func callAsFunction(_ x: Tensor) -> Tensor { x.layerNorm(weight: weight, bias: bias, eps: eps) }
}
