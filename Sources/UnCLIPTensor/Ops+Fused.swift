// Fused inference kernels for the U-Nets' resnet blocks.
//
// A resnet block normalises, conditions on the time embedding and applies SiLU: as separate ops that is three to five
// passes over a large activation, each its own parallel region. The fused op does it in one pass per group (plus
// the statistics). It computes exactly the composite's float operations in the same order, so the two agree to the
// bit, and when a graph is being recorded it simply runs the composite, whose ops carry their own backward rules.

extension Tensor {
    /// `silu(groupNorm(x + inputShift) · (1 + scale) + shift)` over `[N, C, *]`, each part optional.
    ///
    /// - Parameters:
    ///   - inputShift: `[N, C]`, added per sample and channel before the statistics (a resnet's additive time
    ///     embedding, diffusers `resnet_time_scale_shift = "default"`).
    ///   - scale, shift: `[N, C]`, applied after the affine group norm (`"scale_shift"`: `norm(h)·(1 + scale) + shift`).
    ///   - silu: whether to apply SiLU last.
    ///
    /// Equal to the composite `((self + inputShift[..., nil, nil]).groupNorm(...) * (scale + 1) + shift).silu()`,
    /// which is what runs when a graph is being recorded.
    public func groupNormConditioned(groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5,
                                     inputShift: Tensor? = nil, scale: Tensor? = nil, shift: Tensor? = nil,
                                     silu: Bool) -> Tensor {
        precondition(rank >= 2, "groupNormConditioned: input must be [N, C, *], got \(shape)")
        let n = shape[0], c = shape[1]
        for (label, t) in [("inputShift", inputShift), ("scale", scale), ("shift", shift)] {
            if let t { precondition(t.count == n * c, "groupNormConditioned: \(label) \(t.shape) is not [\(n), \(c)]") }
        }
        let operands = [self, weight, bias, inputShift, scale, shift].compactMap { $0 }
        if GradMode.isEnabled && operands.contains(where: { $0.requiresGrad }) {
            return composite(groups: groups, weight: weight, bias: bias, eps: eps, inputShift: inputShift, scale: scale,
                             shift: shift, silu: silu)
        }
        precondition(groups > 0 && c % groups == 0, "groupNormConditioned: \(c) channels do not split into \(groups) groups")
        if let weight { precondition(weight.shape == [c], "groupNormConditioned: weight \(weight.shape) for \(c) channels") }
        if let bias { precondition(bias.shape == [c], "groupNormConditioned: bias \(bias.shape) for \(c) channels") }
        let spatial = shape[2...].reduce(1, *)
        let cg = c / groups, groupSize = cg * spatial
        let out = Tensor(uninitializedShape: shape)
        let x = data, y = out.data
        let pw = weight?.data, pb = bias?.data
        let pt = inputShift?.data, ps = scale?.data, ph = shift?.data
        parallelFor(n * groups, grain: Swift.max(1, 16_384 / Swift.max(groupSize, 1))) { range in
            for u in range {
                let base = u * groupSize, sample = u / groups, c0 = (u % groups) * cg
                var src = UnsafePointer(x + base)
                if let pt {
                    // The shifted input goes to the output buffer first; normalising it in place is safe.
                    for k in 0..<cg {
                        FusedKernels.addScalar(x + base + k * spatial, pt[sample * c + c0 + k], y + base + k * spatial, spatial)
                    }
                    src = UnsafePointer(y + base)
                }
                let (mu, muLow, rs) = NormKernels.moments(src, groupSize, eps: eps)
                for k in 0..<cg {
                    let ch = c0 + k, nc = sample * c + ch
                    // The composite's per-channel factors, computed as it computes them.
                    let a = rs * (pw?[ch] ?? 1), b = pb?[ch] ?? 0
                    FusedKernels.normalizeConditioned(src + k * spatial, y + base + k * spatial, spatial,
                                                      mean: mu, meanLow: muLow, scale: a, shift: b,
                                                      timeScale: ps.map { $0[nc] + 1 }, timeShift: ph?[nc], silu: silu)
                }
            }
        }
        return out
    }

    /// The same computation as separate recorded ops (used while differentiating).
    private func composite(groups: Int, weight: Tensor?, bias: Tensor?, eps: Float, inputShift: Tensor?, scale: Tensor?,
                           shift: Tensor?, silu: Bool) -> Tensor {
        let n = shape[0], c = shape[1]
        let perChannel = [n, c] + [Int](repeating: 1, count: rank - 2)
        var h = self
        if let inputShift { h = h + inputShift.reshaped(perChannel) }
        h = h.groupNorm(groups: groups, weight: weight, bias: bias, eps: eps)
        if let scale { h = h * (scale.reshaped(perChannel) + 1) }
        if let shift { h = h + shift.reshaped(perChannel) }
        return silu ? h.silu() : h
    }
}

/// Row kernels of the fused ops.
enum FusedKernels {
    typealias V = SIMD16<Float>

    /// y = x + t over `n` values.
    @inline(__always)
    static func addScalar(_ x: UnsafePointer<Float>, _ t: Float, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i + 16 <= n { storeV(loadV(x + i) + t, y + i); i += 16 }
        while i < n { y[i] = x[i] + t; i += 1 }
    }

    /// y = silu?((((x − mean) − meanLow) · scale + shift) · timeScale + timeShift) over `n` values.
    @inline(__always)
    static func normalizeConditioned(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int,
                                     mean: Float, meanLow: Float, scale: Float, shift: Float,
                                     timeScale: Float?, timeShift: Float?, silu: Bool) {
        @inline(__always) func f(_ v: V) -> V {
            var z = (v - mean - meanLow) * scale + shift
            if let timeScale { z = z * timeScale }
            if let timeShift { z = z + timeShift }
            return silu ? z * VectorMath.sigmoid(z) : z
        }
        var i = 0
        while i + 16 <= n { storeV(f(loadV(x + i)), y + i); i += 16 }
        if i < n { storePartial(f(loadPartial(x + i, n - i)), y + i, n - i) }
    }
}
