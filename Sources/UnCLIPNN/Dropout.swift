import Synchronization

/// Randomly zeroes elements with probability `p` in training, scaling the kept ones by 1/(1 − p); the identity in
/// evaluation mode or when `p` is 0, like `torch.nn.Dropout`.
///
/// Each layer draws its masks from its own Philox generator `rng`. By default that is seed 0 on a stream numbered
/// by creation order (so two layers never share masks and a program that builds its model the same way gets the
/// same masks); `Module.seedDropout(_:)` reseeds every dropout of a tree by its position, and
/// `callAsFunction(_:using:)` takes a caller's generator instead.
open class Dropout: Module {
    /// The probability of zeroing an element.
    public let p: Float
    /// The generator of this layer's masks.
    public var rng: Philox

    private static let streams = Atomic<UInt64>(0)

    public init(p: Float = 0.5, rng: Philox? = nil) {
        precondition(p >= 0 && p <= 1, "Dropout: probability \(p) outside [0, 1]")
        self.p = p
        self.rng = rng ?? Philox(seed: 0, stream: Dropout.streams.add(1, ordering: .relaxed).oldValue)
    }

    open func callAsFunction(_ x: Tensor) -> Tensor { callAsFunction(x, using: &rng) }

    /// Dropout with masks from `generator` (the layer's own generator is left untouched).
    open func callAsFunction(_ x: Tensor, using generator: inout Philox) -> Tensor {
        guard training, p > 0 else { return x }
        // Matches torch.nn.functional.dropout: keep with probability 1 − p (u < 1 − p), scale kept values by 1/(1 − p);
        // p = 1 gives zeros.
        let mask = Tensor.rand(x.shape, using: &generator)
        let keep = 1 - p, scale: Float = p < 1 ? 1 / (1 - p) : 0
        let m = mask.data
        for i in 0..<mask.count { m[i] = m[i] < keep ? scale : 0 }
        return x * mask
    }
}

extension Module {
    /// Gives every `Dropout` in the tree the generator `Philox(seed: seed, stream: i)`, i its position among the
    /// tree's dropout layers (in `namedModules()` order), so training runs are reproducible from one seed.
    public func seedDropout(_ seed: UInt64) {
        var i: UInt64 = 0
        for (_, m) in namedModules() {
            if let d = m as? Dropout { d.rng = Philox(seed: seed, stream: i); i += 1 }
        }
    }
}
