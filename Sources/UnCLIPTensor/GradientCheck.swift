/// Compares an op's recorded gradients with central finite differences.
///
/// The scalar objective is Σ f(inputs) ⊙ w for a fixed pseudo-random w, so every output element matters.
/// Returns the largest error |analytic − numeric| / max(1, |numeric|) over all checked input elements.
/// Float32 differences are noisy: use inputs of moderate size, `delta` ≈ 1e-2 … 1e-3, tolerance ≈ 1e-2.
public func gradientCheckError(_ inputs: [Tensor], delta: Float = 1e-2, maxElements: Int = 64,
                               _ f: ([Tensor]) -> Tensor) -> Float {
    let leaves = inputs.map { t -> Tensor in let c = t.clone(); c.requiresGrad = true; return c }
    var weights: Tensor?
    func objective(_ xs: [Tensor]) -> Tensor {
        let y = f(xs)
        if weights == nil {
            // A fixed, sign-varying weight per output element (deterministic; no RNG needed).
            weights = Tensor(shape: y.shape, (0..<y.count).map { i in Float(((i * 7919) % 17)) / 8 - 1 })
        }
        return (y * weights!).sum()
    }
    let loss = withGrad { objective(leaves) }
    loss.backward()
    var worst: Float = 0
    withNoGrad {
        for (k, x) in leaves.enumerated() {
            let analytic = x.grad ?? Tensor.zeros(x.shape)
            let step = max(1, x.count / maxElements)
            for i in stride(from: 0, to: x.count, by: step) {
                let probe = leaves.map { $0.clone() }
                let orig = probe[k].data[i]
                probe[k].data[i] = orig + delta
                let plus = Double(objective(probe).item)
                probe[k].data[i] = orig - delta
                let minus = Double(objective(probe).item)
                let numeric = Float((plus - minus) / (2 * Double(delta)))
                let err = Swift.abs(analytic.data[i] - numeric) / max(1, Swift.abs(numeric))
                worst = max(worst, err)
            }
        }
    }
    return worst
}
