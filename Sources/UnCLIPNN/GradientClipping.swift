/// Scales the parameters' gradients in place so that their joint norm is at most `maxNorm`, like
/// `torch.nn.utils.clip_grad_norm_`, and returns the joint norm measured before scaling.
///
/// The norm is taken over all gradients together as if concatenated into one vector; `normType` is 2 (Euclidean)
/// or `.infinity` (largest magnitude). Parameters without a gradient are skipped.
///
/// Matches torch.nn.utils.clip_grad_norm_: the scale is `maxNorm / (totalNorm + 1e-6)`, clamped to at most 1, and it
/// is applied even when it is 1 (so gradients are never enlarged). A non-finite norm is returned without scaling,
/// PyTorch's behaviour with `error_if_nonfinite=False` being to scale by NaN, which helps no one.
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float, normType: Float = 2) -> Float {
    precondition(normType == 2 || normType == .infinity, "clipGradNorm: normType must be 2 or .infinity")
    let grads = parameters.compactMap(\.grad)
    if grads.isEmpty { return 0 }
    var total = 0.0
    for g in grads {
        let p = g.data
        if normType == .infinity {
            for i in 0..<g.count { total = max(total, Double(abs(p[i]))) }
        } else {
            // Accumulate squares in double: the sum over millions of gradient entries must not lose small ones.
            var s = 0.0
            for i in 0..<g.count { let x = Double(p[i]); s += x * x }
            total += s
        }
    }
    let norm = Float(normType == .infinity ? total : total.squareRoot())
    guard norm.isFinite else { return norm }
    let scale = min(maxNorm / (norm + 1e-6), 1)
    for g in grads {
        let p = g.data
        parallelFor(g.count, grain: 65_536) { r in for i in r { p[i] *= scale } }
    }
    return norm
}

/// Clips the gradients of a module's parameters; see `clipGradNorm(_:maxNorm:normType:)`.
@discardableResult
public func clipGradNorm(_ module: Module, maxNorm: Float, normType: Float = 2) -> Float {
    clipGradNorm(module.parameters(), maxNorm: maxNorm, normType: normType)
}
