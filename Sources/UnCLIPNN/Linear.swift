/// A fully connected layer, y = x·Wᵀ + b, with PyTorch's `[out, in]` weight layout.
open class Linear: Module {
    /// The weight, shape [outFeatures, inFeatures].
    public let weight: Tensor
    /// The bias, shape [outFeatures], or nil.
    public let bias: Tensor?

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    /// A layer with zero-filled parameters, to be loaded or `resetParameters(using:)`.
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        weight = .zeros([outFeatures, inFeatures])
        self.bias = bias ? .zeros([outFeatures]) : nil
    }

    /// Matches torch.nn.Linear.reset_parameters: kaiming_uniform(a = √5) for the weight, which is
    /// uniform(±1/√fan_in), and uniform(±1/√fan_in) for the bias.
    open override func resetOwnParameters(using rng: inout Philox) {
        let bound = 1 / Float(inFeatures).squareRoot()
        weight.assign(uniformTensor(weight.shape, bound: bound, using: &rng))
        if let bias { bias.assign(uniformTensor(bias.shape, bound: bound, using: &rng)) }
    }

    /// [..., inFeatures] → [..., outFeatures].
    open func callAsFunction(_ x: Tensor) -> Tensor { x.linear(weight: weight, bias: bias) }
}

/// Uniform values in [−bound, bound) (PyTorch's `uniform_(-bound, bound)`), a new tensor.
func uniformTensor(_ shape: [Int], bound: Float, using rng: inout Philox) -> Tensor {
    let t = withNoGrad { Tensor.rand(shape, using: &rng) }
    let p = t.data
    for i in 0..<t.count { p[i] = -bound + 2 * bound * p[i] }
    return t
}
