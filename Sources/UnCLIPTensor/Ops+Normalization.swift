// Layer and group normalisation as fused kernels with analytic backward rules.
// Statistics are two-pass (mean, then Σ (x − mean)²) with Float SIMD partial sums flushed to Double every
// 1024 values, so large offsets and long groups (10 channels × 64×64 in the decoder) keep full precision.

extension Tensor {
    /// Layer normalisation over the last axis: (x − mean) / √(var + eps) · weight + bias.
    ///
    /// Matches `torch.nn.functional.layer_norm(x, [D], weight, bias, eps)`: biased variance, eps inside the
    /// square root. `weight` and `bias` are `[D]` or nil (no affine part).
    public func layerNorm(weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
        precondition(rank >= 1, "layerNorm: input must have at least one axis")
        let d = shape[rank - 1]
        let rows = d == 0 ? 0 : count / d
        if let weight { precondition(weight.shape == [d], "layerNorm: weight \(weight.shape) for input \(shape), expected [\(d)]") }
        if let bias { precondition(bias.shape == [d], "layerNorm: bias \(bias.shape) for input \(shape), expected [\(d)]") }
        let w = weight ?? Tensor.ones([d]), b = bias ?? Tensor.zeros([d])
        let mean = Tensor(uninitializedShape: [rows]), rstd = Tensor(uninitializedShape: [rows])
        let out = Tensor(uninitializedShape: shape)
        let x = data, y = out.data, pm = mean.data, pr = rstd.data, pw = w.data, pb = b.data
        parallelFor(rows, grain: Swift.max(1, 16_384 / Swift.max(d, 1))) { range in
            for r in range {
                let xr = x + r * d, yr = y + r * d
                let (mu, muLow, rs) = NormKernels.moments(xr, d, eps: eps)
                pm[r] = mu; pr[r] = rs
                NormKernels.normalizeAffine(xr, yr, d, mean: mu, meanLow: muLow, rstd: rs, weight: pw, bias: pb)
            }
        }
        var inputs = [self]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        return out.recorded("layer_norm", inputs) { g, _ in
            let needX = self.requiresGrad, needW = weight?.requiresGrad ?? false, needB = bias?.requiresGrad ?? false
            let gx = needX ? Tensor(uninitializedShape: self.shape) : nil
            // Rows split into one chunk per thread, each with its own partial [gw, gb] accumulator (no shared
            // writes), summed afterwards.
            let chunks = Swift.max(1, Swift.min(Engine.threadCount, rows * d / 16_384))
            let partial = Tensor.zeros((needW || needB) ? [chunks, 2, d] : [0])
            let x = self.data, pg = g.data, pw = w.data, pm = mean.data, pr = rstd.data, pp = partial.data
            let pgx = gx?.data
            parallelFor(chunks, grain: 1) { cs in
                for c in cs {
                    let lo = rows * c / chunks, hi = rows * (c + 1) / chunks
                    NormKernels.layerNormBackward(x: x, g: pg, weight: pw, mean: pm, rstd: pr, gx: pgx,
                                                  gwgb: (needW || needB) ? pp + c * 2 * d : nil,
                                                  rows: lo..<hi, d: d)
                }
            }
            var grads: [Tensor?] = [gx]
            if weight != nil || bias != nil {
                let sums = chunks == 1 ? partial.reshaped([2, d]) : partial.sum(axes: [0])
                if weight != nil { grads.append(needW ? sums.sliceRow(0, d) : nil) }
                if bias != nil { grads.append(needB ? sums.sliceRow(1, d) : nil) }
            }
            return grads
        }
    }

    /// Group normalisation of `[N, C, *]`: statistics per sample over each group of C/groups channels and all
    /// spatial positions, then a per-channel affine.
    ///
    /// Matches `torch.nn.functional.group_norm(x, groups, weight, bias, eps)`: biased variance, eps inside the
    /// square root. PyTorch's CPU kernel folds the mean into a shift, x · (rstd·w) + (b − mean·rstd·w), which
    /// cancels badly when |mean| ≫ std; here y = (x − mean) · (rstd·w) + b keeps full precision.
    public func groupNorm(groups: Int, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
        precondition(rank >= 2, "groupNorm: input must be [N, C, *], got \(shape)")
        let n = shape[0], c = shape[1]
        precondition(groups > 0 && c % groups == 0, "groupNorm: \(c) channels do not split into \(groups) groups")
        if let weight { precondition(weight.shape == [c], "groupNorm: weight \(weight.shape) for \(c) channels") }
        if let bias { precondition(bias.shape == [c], "groupNorm: bias \(bias.shape) for \(c) channels") }
        let spatial = shape[2...].reduce(1, *)
        let cg = c / groups, groupSize = cg * spatial
        let w = weight ?? Tensor.ones([c]), b = bias ?? Tensor.zeros([c])
        let mean = Tensor(uninitializedShape: [n * groups]), rstd = Tensor(uninitializedShape: [n * groups])
        let out = Tensor(uninitializedShape: shape)
        let x = data, y = out.data, pm = mean.data, pr = rstd.data, pw = w.data, pb = b.data
        parallelFor(n * groups, grain: Swift.max(1, 16_384 / Swift.max(groupSize, 1))) { range in
            for u in range {
                let base = u * groupSize
                let (mu, muLow, rs) = NormKernels.moments(x + base, groupSize, eps: eps)
                pm[u] = mu; pr[u] = rs
                let c0 = (u % groups) * cg
                for k in 0..<cg {
                    NormKernels.centerScaleShift(x + base + k * spatial, y + base + k * spatial, spatial,
                                                 mean: mu, meanLow: muLow, scale: rs * pw[c0 + k], shift: pb[c0 + k])
                }
            }
        }
        var inputs = [self]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        return out.recorded("group_norm", inputs) { g, _ in
            let needX = self.requiresGrad, needW = weight?.requiresGrad ?? false, needB = bias?.requiresGrad ?? false
            let gx = needX ? Tensor(uninitializedShape: self.shape) : nil
            // Per (sample, channel): Σ g and Σ g·(x − mean); the weight and bias gradients sum these over samples.
            let sg = Tensor(uninitializedShape: [n, c]), sgx = Tensor(uninitializedShape: [n, c])
            let x = self.data, pg = g.data, pw = w.data, pm = mean.data, pr = rstd.data
            let psg = sg.data, psgx = sgx.data, pgx = gx?.data
            parallelFor(n * groups, grain: Swift.max(1, 8_192 / Swift.max(groupSize, 1))) { range in
                for u in range {
                    NormKernels.groupNormBackward(x: x, g: pg, weight: pw, mean: pm[u], rstd: pr[u], gx: pgx,
                                                  sg: psg, sgx: psgx, unit: u, groups: groups, channelsPerGroup: cg,
                                                  spatial: spatial)
                }
            }
            var grads: [Tensor?] = [gx]
            if weight != nil {
                var gw: Tensor? = nil
                if needW {
                    let t = Tensor.zeros([c]); let pt = t.data
                    for s in 0..<n { for ch in 0..<c { pt[ch] += pr[s * groups + ch / cg] * psgx[s * c + ch] } }
                    gw = t
                }
                grads.append(gw)
            }
            if bias != nil {
                var gb: Tensor? = nil
                if needB {
                    let t = Tensor.zeros([c]); let pt = t.data
                    for s in 0..<n { for ch in 0..<c { pt[ch] += psg[s * c + ch] } }
                    gb = t
                }
                grads.append(gb)
            }
            return grads
        }
    }

    /// Row `i` of a 2-D tensor `[rows, d]` as a new `[d]` tensor (no graph).
    fileprivate func sliceRow(_ i: Int, _ d: Int) -> Tensor {
        let t = Tensor(uninitializedShape: [d])
        t.data.update(from: data + i * d, count: d)
        return t
    }
}

/// Vectorised kernels for layer and group normalisation.
enum NormKernels {
    typealias V = SIMD16<Float>

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inline(__always) static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }

    /// Σ (x − shift) over `n` values: Float SIMD partial sums, flushed to Double every 1024 values.
    ///
    /// Shifting by a sample of the data keeps the Float partial sums near the spread of the values rather than
    /// their offset (a group of values near 500 would otherwise lose ~1e-5 of its mean).
    @inline(__always)
    static func sum(_ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Double {
        var total = 0.0, i = 0
        while i < n {
            let end = Swift.min(n, i + 1024)
            var s0 = V(), s1 = V()
            while i + 32 <= end { s0 += load(x + i) - shift; s1 += load(x + i + 16) - shift; i += 32 }
            var tail: Float = 0
            while i < end { tail += x[i] - shift; i += 1 }
            total += Double((s0 + s1).sum() + tail)
        }
        return total
    }

    /// Σ (x − mean)² over `n` values, accumulated like `sum`.
    @inline(__always)
    static func sumSquaredDeviation(_ x: UnsafePointer<Float>, _ n: Int, _ mean: Float) -> Double {
        var total = 0.0, i = 0
        while i < n {
            let end = Swift.min(n, i + 1024)
            var s0 = V(), s1 = V()
            while i + 32 <= end {
                let a = load(x + i) - mean, b = load(x + i + 16) - mean
                s0 += a * a; s1 += b * b; i += 32
            }
            var tail: Float = 0
            while i < end { let a = x[i] - mean; tail += a * a; i += 1 }
            total += Double((s0 + s1).sum() + tail)
        }
        return total
    }

    /// Mean (as a Float and the Float remainder of its Double value) and 1/√(biased variance + eps), two-pass.
    ///
    /// The remainder matters when |mean| ≫ std: a Float mean of 500 is off by up to 3e-5, which would otherwise
    /// show up unscaled in every normalised value.
    @inline(__always)
    static func moments(_ x: UnsafePointer<Float>, _ n: Int, eps: Float) -> (mean: Float, meanLow: Float, rstd: Float) {
        guard n > 0 else { return (0, 0, 1 / eps.squareRoot()) }
        let exact = Double(x[0]) + sum(x, n, shift: x[0]) / Double(n)
        let mean = Float(exact)
        let variance = sumSquaredDeviation(x, n, mean) / Double(n) - (exact - Double(mean)) * (exact - Double(mean))
        return (mean, Float(exact - Double(mean)), Float(1 / (Swift.max(variance, 0) + Double(eps)).squareRoot()))
    }

    /// y = ((x − mean) − meanLow) · rstd · w + b over one row.
    @inline(__always)
    static func normalizeAffine(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, mean: Float,
                                meanLow: Float, rstd: Float, weight w: UnsafePointer<Float>, bias b: UnsafePointer<Float>) {
        var i = 0
        while i + 16 <= n { store((load(x + i) - mean - meanLow) * rstd * load(w + i) + load(b + i), y + i); i += 16 }
        while i < n { y[i] = (x[i] - mean - meanLow) * rstd * w[i] + b[i]; i += 1 }
    }

    /// y = ((x − mean) − meanLow) · scale + shift over `n` values.
    @inline(__always)
    static func centerScaleShift(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int,
                                 mean: Float, meanLow: Float, scale: Float, shift: Float) {
        var i = 0
        while i + 32 <= n {
            store((load(x + i) - mean - meanLow) * scale + shift, y + i)
            store((load(x + i + 16) - mean - meanLow) * scale + shift, y + i + 16)
            i += 32
        }
        while i + 16 <= n { store((load(x + i) - mean - meanLow) * scale + shift, y + i); i += 16 }
        while i < n { y[i] = (x[i] - mean - meanLow) * scale + shift; i += 1 }
    }

    /// Layer-norm backward over `rows` of width `d`.
    ///
    /// With x̂ = (x − mean)·rstd and ĝ = g·w: dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)); `gwgb` (when given,
    /// `[2, d]`, zeroed) accumulates Σ g ⊙ x̂ and Σ g over the rows.
    static func layerNormBackward(x: UnsafePointer<Float>, g: UnsafePointer<Float>, weight w: UnsafePointer<Float>,
                                  mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                                  gx: UnsafeMutablePointer<Float>?, gwgb: UnsafeMutablePointer<Float>?,
                                  rows: Range<Int>, d: Int) {
        let inv = 1 / Float(d)
        for r in rows {
            let xr = x + r * d, gr = g + r * d
            let mu = mean[r], rs = rstd[r]
            if let gwgb {
                let gw = gwgb, gb = gwgb + d
                var i = 0
                while i + 16 <= d {
                    let gv = load(gr + i)
                    store(load(gw + i) + gv * ((load(xr + i) - mu) * rs), gw + i)
                    store(load(gb + i) + gv, gb + i)
                    i += 16
                }
                while i < d { gw[i] += gr[i] * ((xr[i] - mu) * rs); gb[i] += gr[i]; i += 1 }
            }
            guard let gx else { continue }
            // Σ ĝ and Σ ĝ ⊙ (x − mean) in one sweep.
            var a0 = V(), b0 = V(), i = 0
            while i + 16 <= d {
                let gh = load(gr + i) * load(w + i)
                a0 += gh; b0 += gh * (load(xr + i) - mu); i += 16
            }
            var a = a0.sum(), b = b0.sum()
            while i < d { let gh = gr[i] * w[i]; a += gh; b += gh * (xr[i] - mu); i += 1 }
            let meanGh = a * inv, meanGhXhat = b * inv * rs
            let dr = gx + r * d
            let c = rs * meanGhXhat * rs  // coefficient of (x − mean)
            i = 0
            while i + 16 <= d {
                store(rs * (load(gr + i) * load(w + i) - meanGh) - c * (load(xr + i) - mu), dr + i); i += 16
            }
            while i < d { dr[i] = rs * (gr[i] * w[i] - meanGh) - c * (xr[i] - mu); i += 1 }
        }
    }

    /// Group-norm backward for one (sample, group) unit.
    ///
    /// Fills `sg[n, c]` = Σ g and `sgx[n, c]` = Σ g·(x − mean) for the group's channels, then (when `gx` is
    /// given) dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)) over the whole group, with ĝ = g · w[c].
    static func groupNormBackward(x: UnsafePointer<Float>, g: UnsafePointer<Float>, weight w: UnsafePointer<Float>,
                                  mean mu: Float, rstd rs: Float, gx: UnsafeMutablePointer<Float>?,
                                  sg: UnsafeMutablePointer<Float>, sgx: UnsafeMutablePointer<Float>,
                                  unit u: Int, groups: Int, channelsPerGroup cg: Int, spatial: Int) {
        let nSample = u / groups, c0 = (u % groups) * cg, channels = groups * cg
        let base = u * cg * spatial
        var a = 0.0, b = 0.0  // Σ ĝ and Σ ĝ·(x − mean) over the group
        for k in 0..<cg {
            let xc = x + base + k * spatial, gc = g + base + k * spatial
            var s0 = V(), t0 = V(), s = 0.0, t = 0.0, i = 0
            while i < spatial {
                let end = Swift.min(spatial, i + 1024)
                while i + 16 <= end {
                    let gv = load(gc + i)
                    s0 += gv; t0 += gv * (load(xc + i) - mu); i += 16
                }
                var st: Float = 0, tt: Float = 0
                while i < end { st += gc[i]; tt += gc[i] * (xc[i] - mu); i += 1 }
                s += Double(s0.sum() + st); t += Double(t0.sum() + tt)
                s0 = V(); t0 = V()
            }
            sg[nSample * channels + c0 + k] = Float(s)
            sgx[nSample * channels + c0 + k] = Float(t)
            a += Double(w[c0 + k]) * s; b += Double(w[c0 + k]) * t
        }
        guard let gx else { return }
        let m = Double(cg * spatial)
        let meanGh = Float(a / m), meanGhXhat = Float(b / m) * rs
        // dx = (rstd·w[c])·g − (rstd²·mean(ĝ x̂))·(x − mean) − rstd·mean(ĝ), i.e. α·g + β·(x − mean) + γ per
        // channel; x − mean is kept explicit so a large mean does not cancel away the small terms.
        let beta = -rs * meanGhXhat * rs
        let gamma = -rs * meanGh
        for k in 0..<cg {
            let off = base + k * spatial
            let xc = x + off, gc = g + off, dc = gx + off
            let alpha = rs * w[c0 + k]
            var i = 0
            while i + 16 <= spatial { store(load(gc + i) * alpha + (load(xc + i) - mu) * beta + gamma, dc + i); i += 16 }
            while i < spatial { dc[i] = gc[i] * alpha + (xc[i] - mu) * beta + gamma; i += 1 }
        }
    }
}
