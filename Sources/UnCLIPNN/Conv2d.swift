/// A 2-D convolution over NCHW input with an OIHW weight, like `torch.nn.Conv2d` (square kernel, no groups or dilation).
open class Conv2d: Module {
    /// The weight, shape [outChannels, inChannels, kernelSize, kernelSize].
    public let weight: Tensor
    /// The bias, shape [outChannels], or nil.
    public let bias: Tensor?
    public let stride: Int
    public let padding: Int

    public var inChannels: Int { weight.shape[1] }
    public var outChannels: Int { weight.shape[0] }
    public var kernelSize: Int { weight.shape[2] }

    /// A convolution with zero-filled parameters, to be loaded or `resetParameters(using:)`.
    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true) {
        weight = .zeros([outChannels, inChannels, kernelSize, kernelSize])
        self.bias = bias ? .zeros([outChannels]) : nil
        self.stride = stride
        self.padding = padding
    }

    /// Matches torch.nn.Conv2d.reset_parameters: uniform(±1/√fan_in) for weight and bias, fan_in = in·k·k.
    open override func resetOwnParameters(using rng: inout Philox) {
        let bound = 1 / Float(inChannels * kernelSize * kernelSize).squareRoot()
        weight.assign(uniformTensor(weight.shape, bound: bound, using: &rng))
        if let bias { bias.assign(uniformTensor(bias.shape, bound: bound, using: &rng)) }
    }

    /// [N, inChannels, H, W] → [N, outChannels, H′, W′].
    open func callAsFunction(_ x: Tensor) -> Tensor {
        x.conv2d(weight: weight, bias: bias, stride: stride, padding: padding)
    }
}
