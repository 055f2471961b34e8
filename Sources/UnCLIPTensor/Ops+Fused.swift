// Fused kernels for the U-Nets' resnet blocks.
//
// A resnet block normalises, conditions on the time embedding and applies SiLU: as separate ops that is three to five
// passes over a large activation, each its own parallel region, and as many again backwards. The fused op does the
// forward in one pass per group (plus the statistics) and the backward in two. Its forward computes exactly the
// composite's float operations in the same order, so the two agree to the bit; its backward is the chain rule through
// the same steps, checked against the composite's gradients and by finite differences (FusedOpsTests).

extension Tensor {
    /// `silu(groupNorm(x + inputShift) · (1 + scale) + shift)` over `[N, C, *]`, each part optional.
    ///
    /// - Parameters:
    ///   - inputShift: `[N, C]`, added per sample and channel before the statistics (a resnet's additive time
    ///     embedding, diffusers `resnet_time_scale_shift = "default"`).
    ///   - scale, shift: `[N, C]`, applied after the affine group norm (`"scale_shift"`: `norm(h)·(1 + scale) + shift`).
    ///   - silu: whether to apply SiLU last.
    ///
    /// Equal to the bit to the composite `((self + inputShift[..., nil, nil]).groupNorm(...) * (scale + 1) +
    /// shift).silu()`, and differentiable through its own backward (`groupNormConditionedBackward`).
    public func groupNormConditioned(groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5,
                                     inputShift: Tensor? = nil, scale: Tensor? = nil, shift: Tensor? = nil,
                                     silu: Bool) -> Tensor {
        precondition(rank >= 2, "groupNormConditioned: input must be [N, C, *], got \(shape)")
        let n = shape[0], c = shape[1]
        for (label, t) in [("inputShift", inputShift), ("scale", scale), ("shift", shift)] {
            if let t { precondition(t.count == n * c, "groupNormConditioned: \(label) \(t.shape) is not [\(n), \(c)]") }
        }
        precondition(groups > 0 && c % groups == 0, "groupNormConditioned: \(c) channels do not split into \(groups) groups")
        if let weight { precondition(weight.shape == [c], "groupNormConditioned: weight \(weight.shape) for \(c) channels") }
        if let bias { precondition(bias.shape == [c], "groupNormConditioned: bias \(bias.shape) for \(c) channels") }
        if let blocked = groupNormConditionedBlocked(groups: groups, weight: weight, bias: bias, eps: eps,
                                                     inputShift: inputShift, scale: scale, shift: shift, silu: silu) {
            return blocked
        }
        let spatial = shape[2...].reduce(1, *)
        let cg = c / groups, groupSize = cg * spatial
        let out = Tensor(uninitializedShape: shape)
        let x = data, y = out.data
        let pw = weight?.data, pb = bias?.data
        let pt = inputShift?.data, ps = scale?.data, ph = shift?.data
        let operands: [Tensor?] = [self, weight, bias, inputShift, scale, shift]
        let recording = GradMode.isEnabled && operands.contains { $0?.requiresGrad ?? false }
        // Mean, its low part and 1/std per group, kept for the backward when a graph is being recorded.
        let moments = recording ? Tensor(uninitializedShape: [n * groups, 3]) : nil
        let pmo = moments?.data
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
                if let pmo { pmo[3 * u] = mu; pmo[3 * u + 1] = muLow; pmo[3 * u + 2] = rs }
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
        guard let moments else { return out }
        return out.recorded("group_norm_conditioned", operands.compactMap { $0 }) { g, _ in
            let grads = self.groupNormConditionedBackward(g, groups: groups, weight: weight, bias: bias,
                                                          inputShift: inputShift, scale: scale, shift: shift,
                                                          silu: silu, moments: moments)
            return zip(operands, grads).compactMap { operand, grad in operand == nil ? nil : .some(grad) }
        }
    }

    /// Gradients of `groupNormConditioned` for (x, weight, bias, inputShift, scale, shift), nil where not needed.
    ///
    /// With u = x + t, x̂ = (u − μ)·rstd, z = x̂·w + b, z₂ = z·(1 + s) + h, y = silu(z₂): per (sample, group) one pass
    /// forms ĝ₂ = g·silu′(z₂) (summed per channel for h, and ĝ₂·z for s), ĝ = ĝ₂·(1 + s) (stored in the x-gradient
    /// buffer) and the group-norm sums Σ ĝ, Σ ĝ·(u − μ); a second pass turns ĝ into dx in place, as
    /// `NormKernels.groupNormBackward` does, and sums it per channel for t.
    private func groupNormConditionedBackward(_ g: Tensor, groups: Int, weight: Tensor?, bias: Tensor?,
                                              inputShift: Tensor?, scale: Tensor?, shift: Tensor?, silu: Bool,
                                              moments: Tensor) -> [Tensor?] {
        typealias V = SIMD16<Float>
        let n = shape[0], c = shape[1]
        let spatial = shape[2...].reduce(1, *), cg = c / groups, groupSize = cg * spatial
        let gx = Tensor(uninitializedShape: shape)  // ĝ first, then dx
        // Per (sample, channel): Σ ĝ₂, Σ ĝ₂·z, Σ ĝ, Σ ĝ·(u − μ), Σ dx.
        let sums = Tensor.zeros([5, n * c])
        let x = data, pg = g.data, pgx = gx.data, pmo = moments.data, psum = sums.data
        let pw = weight?.data, pb = bias?.data, pt = inputShift?.data, ps = scale?.data, ph = shift?.data
        parallelFor(n * groups, grain: Swift.max(1, 8_192 / Swift.max(groupSize, 1))) { range in
            for u in range {
                let base = u * groupSize, sample = u / groups, c0 = (u % groups) * cg
                let mu = pmo[3 * u], muLow = pmo[3 * u + 1], rs = pmo[3 * u + 2]
                var a = 0.0, b = 0.0  // Σ w·Σĝ and Σ w·Σĝ(u − μ) over the group
                for k in 0..<cg {
                    let ch = c0 + k, nc = sample * c + ch, off = base + k * spatial
                    let shiftIn = pt?[nc] ?? 0, wk = pw?[ch] ?? 1, scaleK = rs * wk, biasK = pb?[ch] ?? 0
                    let timeScale = ps.map { $0[nc] + 1 } ?? 1, timeShift = ph?[nc] ?? 0
                    var s2 = 0.0, s2z = 0.0, sg = 0.0, sgx = 0.0, i = 0
                    while i < spatial {
                        let end = Swift.min(spatial, i + 1024)
                        var v2 = V(), v2z = V(), vg = V(), vgx = V()
                        while i < end {
                            let m = Swift.min(16, end - i)
                            // The forward's values, recomputed as it computed them (padding lanes have g = 0).
                            let xv = loadPartial(x + off + i, m) + shiftIn
                            let z = (xv - mu - muLow) * scaleK + biasK
                            let z2 = z * timeScale + timeShift
                            var g2 = loadPartial(pg + off + i, m)
                            if silu {
                                let sg = VectorMath.sigmoid(z2)
                                g2 = g2 * sg * (1 + z2 * (1 - sg))
                            }
                            let gz = g2 * timeScale
                            v2 += g2; v2z += g2 * z; vg += gz; vgx += gz * (xv - mu)
                            storePartial(gz, pgx + off + i, m)
                            i += m
                        }
                        s2 += Double(v2.sum()); s2z += Double(v2z.sum()); sg += Double(vg.sum()); sgx += Double(vgx.sum())
                    }
                    psum[nc] = Float(s2); psum[n * c + nc] = Float(s2z)
                    psum[2 * n * c + nc] = Float(sg); psum[3 * n * c + nc] = Float(sgx)
                    a += Double(wk) * sg; b += Double(wk) * sgx
                }
                // dx = α·ĝ + β·(u − μ) + γ per channel (NormKernels.groupNormBackward's form).
                let count = Double(groupSize)
                let beta = -rs * (Float(b / count) * rs) * rs, gamma = -rs * Float(a / count)
                for k in 0..<cg {
                    let ch = c0 + k, nc = sample * c + ch, off = base + k * spatial
                    let shiftIn = pt?[nc] ?? 0, alpha = rs * (pw?[ch] ?? 1)
                    var total = V(), i = 0
                    while i < spatial {
                        let m = Swift.min(16, spatial - i)
                        let xv = loadPartial(x + off + i, m) + shiftIn
                        var d = loadPartial(pgx + off + i, m) * alpha + (xv - mu) * beta + gamma
                        if m < 16 { d = V(repeating: 0).replacing(with: d, where: FusedKernels.lanes .< Float(m)) }
                        storePartial(d, pgx + off + i, m)
                        total += d
                        i += m
                    }
                    psum[4 * n * c + nc] = total.sum()
                }
            }
        }
        func perChannel(_ row: Int) -> Tensor {  // Σ over samples of a [n, c] row of sums
            let t = Tensor.zeros([c]), p = t.data
            for sample in 0..<n { for ch in 0..<c { p[ch] += psum[row * n * c + sample * c + ch] } }
            return t
        }
        func perSample(_ row: Int, like t: Tensor) -> Tensor {
            let r = Tensor(uninitializedShape: t.shape)
            r.data.update(from: psum + row * n * c, count: n * c)
            return r
        }
        var gw: Tensor? = nil
        if let weight, weight.requiresGrad {
            // Σ ĝ·x̂ = rstd · Σ ĝ·(u − μ), summed over samples.
            let t = Tensor.zeros([c]), p = t.data
            for sample in 0..<n {
                for ch in 0..<c { p[ch] += pmo[3 * (sample * groups + ch / cg) + 2] * psum[3 * n * c + sample * c + ch] }
            }
            gw = t
        }
        return [requiresGrad || (inputShift?.requiresGrad ?? false) ? gx : nil, gw,
                bias?.requiresGrad ?? false ? perChannel(2) : nil,
                inputShift.flatMap { $0.requiresGrad ? perSample(4, like: $0) : nil },
                scale.flatMap { $0.requiresGrad ? perSample(1, like: $0) : nil },
                shift.flatMap { $0.requiresGrad ? perSample(0, like: $0) : nil }]
    }
}

/// Row kernels of the fused ops.
enum FusedKernels {
    typealias V = SIMD16<Float>

    /// 0, 1, …, 15: `lanes .< k` masks the first k lanes.
    static let lanes = V(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

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
