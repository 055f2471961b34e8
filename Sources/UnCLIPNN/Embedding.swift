/// A lookup table of `count` vectors of size `dim`, like `torch.nn.Embedding`.
open class Embedding: Module {
    /// The table, shape [count, dim].
    public let weight: Tensor

    public var count: Int { weight.shape[0] }
    public var dim: Int { weight.shape[1] }

    /// A zero-filled table, to be loaded or `resetParameters(using:)`.
    public init(_ count: Int, _ dim: Int) {
        weight = .zeros([count, dim])
    }

    /// Matches torch.nn.Embedding.reset_parameters: normal(0, 1).
    open override func resetOwnParameters(using rng: inout Philox) {
        weight.assign(withNoGrad { Tensor.randn(weight.shape, using: &rng) })
    }

    /// The rows for `ids`: [ids.count, dim].
    open func callAsFunction(ids: [Int]) -> Tensor { weight.gatherRows(ids) }

    /// The rows for a tensor of integer-valued ids of any shape S: [S…, dim] (e.g. [B, L] → [B, L, dim]).
    open func callAsFunction(_ ids: Tensor) -> Tensor {
        let rows = ids.toArray().map { Int($0) }
        return weight.gatherRows(rows).reshaped(ids.shape + [dim])
    }
}
