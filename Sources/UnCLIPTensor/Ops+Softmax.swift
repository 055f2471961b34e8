#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Softmax, log-softmax and cross-entropy as fused kernels with their own backward rules.
// Attention's softmax dominates; its kernel is three SIMD sweeps over a row that stays in L1: max, exp-and-sum,
// scale.

extension Tensor {
    /// Softmax along `axis`: exp(x − max) / Σ exp(x − max), numerically stable for large inputs.
    public func softmax(axis: Int = -1) -> Tensor {
        let (outer, length, inner) = SoftmaxKernels.layout(shape, axis: axis, rank: rank)
        let out = Tensor(uninitializedShape: shape)
        SoftmaxKernels.forward(data, out.data, outer: outer, length: length, inner: inner, log: false)
        return out.recorded("softmax", [self]) { g, y in
            // dx = y ⊙ (g − Σ g ⊙ y) along the axis.
            let gx = Tensor(uninitializedShape: y.shape)
            SoftmaxKernels.softmaxBackward(g.data, y.data, gx.data, outer: outer, length: length, inner: inner)
            return [gx]
        }
    }

    /// Log-softmax along `axis`: x − max − log Σ exp(x − max).
    public func logSoftmax(axis: Int = -1) -> Tensor {
        let (outer, length, inner) = SoftmaxKernels.layout(shape, axis: axis, rank: rank)
        let out = Tensor(uninitializedShape: shape)
        SoftmaxKernels.forward(data, out.data, outer: outer, length: length, inner: inner, log: true)
        return out.recorded("log_softmax", [self]) { g, y in
            // dx = g − exp(y) · Σ g along the axis.
            let gx = Tensor(uninitializedShape: y.shape)
            SoftmaxKernels.logSoftmaxBackward(g.data, y.data, gx.data, outer: outer, length: length, inner: inner)
            return [gx]
        }
    }

    /// Mean cross-entropy of logits `[N, C]` against class indices: mean over rows of −log_softmax(x)[target].
    ///
    /// Matches `torch.nn.functional.cross_entropy(logits, targets)` with the default mean reduction.
    /// Returns a 0-dimensional tensor.
    public func crossEntropy(targets: [Int]) -> Tensor {
        precondition(rank == 2, "crossEntropy: logits must be [N, C], got \(shape)")
        let n = shape[0], c = shape[1]
        precondition(targets.count == n, "crossEntropy: \(targets.count) targets for \(n) rows of logits \(shape)")
        precondition(n > 0 && c > 0, "crossEntropy: empty logits \(shape)")
        for (i, t) in targets.enumerated() {
            precondition(t >= 0 && t < c, "crossEntropy: target \(t) of row \(i) is outside 0..<\(c)")
        }
        // Per row: the maximum and log Σ e^(x − max), kept for the backward pass.
        let stats = Tensor(uninitializedShape: [n, 2])
        let x = data, st = stats.data
        parallelFor(n, grain: Swift.max(1, 16_384 / c)) { rows in
            for i in rows { (st[2 * i], st[2 * i + 1]) = SoftmaxKernels.maxAndLogSum(x + i * c, c) }
        }
        var total = 0.0
        for i in 0..<n { total += (Double(st[2 * i]) - Double(x[i * c + targets[i]])) + Double(st[2 * i + 1]) }
        let out = Tensor(shape: [], [Float(total / Double(n))])
        return out.recorded("cross_entropy", [self]) { g, _ in
            // dx = g / N · (softmax(x) − onehot(target)).
            let scale = g.item / Float(n)
            let gx = Tensor(uninitializedShape: [n, c])
            // Read through the tensors (not the pointers taken above) so the closure keeps them alive.
            let x = self.data, st = stats.data, d = gx.data
            parallelFor(n, grain: Swift.max(1, 16_384 / c)) { rows in
                for i in rows {
                    SoftmaxKernels.expShifted(x + i * c, d + i * c, c, shift: st[2 * i], offset: st[2 * i + 1], scale: scale)
                    d[i * c + targets[i]] -= scale
                }
            }
            return [gx]
        }
    }
}

/// Vectorised kernels for softmax-like ops. Shapes are viewed as `[outer, length, inner]`, reducing `length`.
enum SoftmaxKernels {
    typealias V = SIMD16<Float>

    /// Below this, e^x is under the smallest normal Float (ln 2⁻¹²⁶) and `fastExp` returns 0.
    static let expLowerBound: Float = -87.336_54
    /// Above this, e^x overflows Float32 (ln of the largest finite Float) and `fastExp` returns +∞.
    static let expUpperBound: Float = 88.722_83

    /// e^x on 16 lanes: within 2 ulp for x in [−87.3, 88.37] (≈ 10 ulp up to 88.72), 0 below −87.34 (and for −∞),
    /// +∞ above 88.72. NaN inputs are not propagated.
    @inline(__always)
    static func fastExp(_ x: V) -> V {
        // Clamps by masked selects: the standard library's `pointwiseMin`/`pointwiseMax` are not vectorised.
        let xc = x.replacing(with: expLowerBound, where: x .< expLowerBound)
                  .replacing(with: expUpperBound, where: x .> expUpperBound)
        return expCore(xc, limitExponent: true)
            .replacing(with: 0, where: x .< expLowerBound)
            .replacing(with: .infinity, where: x .> expUpperBound)
    }

    /// `fastExp` without the overflow handling, for softmax's x − max ≤ 0 (valid up to x = 88.37).
    @inline(__always)
    static func fastExpNonPositive(_ x: V) -> V {
        let xc = x.replacing(with: expLowerBound, where: x .< expLowerBound)
        return expCore(xc, limitExponent: false).replacing(with: 0, where: x .< expLowerBound)
    }

    /// e^x for x already clamped to [−87.34, 88.72] (to 88.37 unless `limitExponent`).
    ///
    /// Cody–Waite range reduction x = n·ln 2 + r, |r| ≤ ln 2 / 2, then the Cephes `expf` polynomial for e^r.
    /// Adding 1.5·2²³ + 127 to x·log₂e rounds it to an integer whose biased value n + 127 lands in the low
    /// mantissa bits, so 2ⁿ is one shift away. Subnormal results flush to 0, which softmax never notices.
    @inline(__always)
    static func expCore(_ xc: V, limitExponent: Bool) -> V {
        let magic: Float = 12_582_912 + 127
        var t = xc * 1.442_695_04 + magic
        if limitExponent { t = t.replacing(with: magic + 127, where: t .> magic + 127) }  // n ≤ 127: 2ⁿ finite
        let n = t - magic
        let r = xc - n * 0.693_359_375 + n * 2.121_944_4e-4
        var p = V(repeating: 1.987_569_15e-4)
        p = p * r + 1.398_199_950_7e-3
        p = p * r + 8.333_451_907_3e-3
        p = p * r + 4.166_579_589_4e-2
        p = p * r + 1.666_666_545_9e-1
        p = p * r + 5.000_000_120_1e-1
        let e = p * (r * r) + r + 1
        return e * unsafeBitCast(unsafeBitCast(t, to: SIMD16<UInt32>.self) &<< 23, to: V.self)
    }

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inline(__always) static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }

    /// The first `n` (< 16) values at `p`, the other lanes `fill`.
    @inline(__always) static func loadPartial(_ p: UnsafePointer<Float>, _ n: Int, fill: Float) -> V {
        var v = V(repeating: fill)
        for i in 0..<n { v[i] = p[i] }
        return v
    }

    @inline(__always) static func storePartial(_ v: V, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { p[i] = v[i] }
    }

    /// `(outer, length, inner)` for reducing `axis` of `shape`; a 0-dimensional tensor is one row of one.
    static func layout(_ shape: [Int], axis: Int, rank: Int) -> (Int, Int, Int) {
        if rank == 0 {
            precondition(axis == 0 || axis == -1, "softmax: axis \(axis) out of range for a 0-dimensional tensor")
            return (1, 1, 1)
        }
        let a = axis < 0 ? axis + rank : axis
        precondition(a >= 0 && a < rank, "softmax: axis \(axis) out of range for shape \(shape)")
        let outer = shape[..<a].reduce(1, *), inner = shape[(a + 1)...].reduce(1, *)
        return (outer, shape[a], inner)
    }

    // MARK: Rows (the reduced axis is innermost)

    /// The largest of `n` values.
    @inline(__always)
    static func rowMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var m0 = V(repeating: -.infinity), m1 = m0
        var i = 0
        while i + 32 <= n {
            m0 = lanewiseMax(m0, load(x + i)); m1 = lanewiseMax(m1, load(x + i + 16)); i += 32
        }
        if i + 16 <= n { m0 = lanewiseMax(m0, load(x + i)); i += 16 }
        if i < n { m1 = lanewiseMax(m1, loadPartial(x + i, n - i, fill: -.infinity)) }
        let m = lanewiseMax(m0, m1)
        var best = m[0]
        for k in 1..<16 where m[k] > best { best = m[k] }
        return best
    }

    /// The larger of each pair of lanes (a masked select, which vectorises, unlike `pointwiseMax`).
    @inline(__always) static func lanewiseMax(_ a: V, _ b: V) -> V {
        a.replacing(with: b, where: b .> a)
    }

    /// Writes y = e^((x − shift) − offset) · scale and returns the sum of the exponentials (accumulated in Double
    /// every 1024 values).
    ///
    /// The shift (a row maximum) comes off before the offset (a log-sum) so a large maximum does not swamp it.
    @inline(__always) @discardableResult
    static func expShifted(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int,
                           shift: Float, offset: Float = 0, scale: Float = 1) -> Double {
        var total = 0.0
        var i = 0
        while i < n {
            let end = Swift.min(n, i + 1024)
            var s0 = V(), s1 = V()
            while i + 32 <= end {
                let e0 = fastExpNonPositive(load(x + i) - shift - offset)
                let e1 = fastExpNonPositive(load(x + i + 16) - shift - offset)
                s0 += e0; s1 += e1
                store(e0 * scale, y + i); store(e1 * scale, y + i + 16)
                i += 32
            }
            while i + 16 <= end {
                let e = fastExpNonPositive(load(x + i) - shift - offset)
                s0 += e; store(e * scale, y + i); i += 16
            }
            if i < end {
                let e = fastExpNonPositive(loadPartial(x + i, end - i, fill: -.infinity) - shift - offset)
                s1 += e; storePartial(e * scale, y + i, end - i); i = end
            }
            total += Double((s0 + s1).sum())
        }
        return total
    }

    /// Σ e^(x − shift) without storing anything.
    @inline(__always)
    static func sumExpShifted(_ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Double {
        var total = 0.0
        var i = 0
        while i < n {
            let end = Swift.min(n, i + 1024)
            var s0 = V(), s1 = V()
            while i + 32 <= end {
                s0 += fastExpNonPositive(load(x + i) - shift); s1 += fastExpNonPositive(load(x + i + 16) - shift); i += 32
            }
            while i + 16 <= end { s0 += fastExpNonPositive(load(x + i) - shift); i += 16 }
            if i < end { s1 += fastExpNonPositive(loadPartial(x + i, end - i, fill: -.infinity) - shift); i = end }
            total += Double((s0 + s1).sum())
        }
        return total
    }

    /// y = x · s for `n` values (in place when x == y).
    @inline(__always)
    static func scale(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ s: Float) {
        var i = 0
        while i + 16 <= n { store(load(x + i) * s, y + i); i += 16 }
        while i < n { y[i] = x[i] * s; i += 1 }
    }

    /// y = (x − a) − b for `n` values.
    @inline(__always)
    static func subtractTwice(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int, _ a: Float, _ b: Float) {
        var i = 0
        while i + 16 <= n { store(load(x + i) - a - b, y + i); i += 16 }
        while i < n { y[i] = x[i] - a - b; i += 1 }
    }

    /// The row maximum and log Σ e^(x − max) of one row, kept apart so that neither swamps the other.
    @inline(__always)
    static func maxAndLogSum(_ x: UnsafePointer<Float>, _ n: Int) -> (Float, Float) {
        let m = rowMax(x, n)
        return (m, Float(log(sumExpShifted(x, n, shift: m))))
    }

    // MARK: Whole tensors

    /// Softmax (or log-softmax) of `x` into `y` over the middle axis of `[outer, length, inner]`.
    static func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                        outer: Int, length: Int, inner: Int, log useLog: Bool) {
        if outer * length * inner == 0 { return }
        if inner == 1 {
            parallelFor(outer, grain: Swift.max(1, 16_384 / length)) { rows in
                for r in rows {
                    let xr = x + r * length, yr = y + r * length
                    if useLog {
                        // Matches PyTorch: (x − max) − log Σ e^(x − max); adding max and the log-sum first would
                        // round the log-sum away next to a large max.
                        let (m, logSum) = maxAndLogSum(xr, length)
                        subtractTwice(xr, yr, length, m, logSum)
                    } else {
                        let s = expShifted(xr, yr, length, shift: rowMax(xr, length))
                        scale(yr, yr, length, Float(1 / s))
                    }
                }
            }
            return
        }
        // The reduced axis is strided: work on blocks of up to 256 contiguous lanes of `inner`, each lane its own row.
        let block = 256, blocksPerOuter = (inner + block - 1) / block
        parallelFor(outer * blocksPerOuter, grain: Swift.max(1, 16_384 / (length * Swift.min(inner, block)))) { units in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * block) { buf in
                let m = buf.baseAddress!, s = m + block
                for u in units {
                    let o = u / blocksPerOuter, j0 = (u % blocksPerOuter) * block
                    let w = Swift.min(block, inner - j0)
                    let xb = x + o * length * inner + j0, yb = y + o * length * inner + j0
                    for j in 0..<w { m[j] = xb[j] }
                    for l in 1..<Swift.max(length, 1) {
                        let xl = xb + l * inner
                        for j in 0..<w { m[j] = xl[j] > m[j] ? xl[j] : m[j] }
                    }
                    for j in 0..<w { s[j] = 0 }
                    for l in 0..<length {
                        let xl = xb + l * inner, yl = yb + l * inner
                        for j in 0..<w { yl[j] = xl[j] - m[j] }
                        expInPlace(yl, w)
                        for j in 0..<w { s[j] += yl[j] }
                    }
                    if useLog {
                        for j in 0..<w { s[j] = Float(log(Double(s[j]))) }
                        for l in 0..<length {
                            let xl = xb + l * inner, yl = yb + l * inner
                            for j in 0..<w { yl[j] = xl[j] - m[j] - s[j] }
                        }
                    } else {
                        for j in 0..<w { s[j] = 1 / s[j] }
                        for l in 0..<length {
                            let yl = yb + l * inner
                            for j in 0..<w { yl[j] *= s[j] }
                        }
                    }
                }
            }
        }
    }

    /// y = e^y for `n` values.
    @inline(__always)
    static func expInPlace(_ y: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i + 16 <= n { store(fastExpNonPositive(load(y + i)), y + i); i += 16 }
        if i < n { storePartial(fastExpNonPositive(loadPartial(y + i, n - i, fill: 0)), y + i, n - i) }
    }

    /// Σ a ⊙ b over `n` values.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var s0 = V(), s1 = V()
        var i = 0
        while i + 32 <= n { s0 += load(a + i) * load(b + i); s1 += load(a + i + 16) * load(b + i + 16); i += 32 }
        var tail: Float = 0
        while i < n { tail += a[i] * b[i]; i += 1 }
        return (s0 + s1).sum() + tail
    }

    /// Σ a over `n` values.
    @inline(__always)
    static func sum(_ a: UnsafePointer<Float>, _ n: Int) -> Float {
        var s0 = V(), s1 = V()
        var i = 0
        while i + 32 <= n { s0 += load(a + i); s1 += load(a + i + 16); i += 32 }
        var tail: Float = 0
        while i < n { tail += a[i]; i += 1 }
        return (s0 + s1).sum() + tail
    }

    /// Softmax backward: dx = y ⊙ (g − Σ g ⊙ y).
    static func softmaxBackward(_ g: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                outer: Int, length: Int, inner: Int) {
        if outer * length * inner == 0 { return }
        if inner == 1 {
            parallelFor(outer, grain: Swift.max(1, 16_384 / length)) { rows in
                for r in rows {
                    let o = r * length
                    let gy = dot(g + o, y + o, length)
                    let gr = g + o, yr = y + o, dr = dx + o
                    var i = 0
                    while i + 16 <= length { store(load(yr + i) * (load(gr + i) - gy), dr + i); i += 16 }
                    while i < length { dr[i] = yr[i] * (gr[i] - gy); i += 1 }
                }
            }
            return
        }
        parallelFor(outer, grain: Swift.max(1, 16_384 / (length * inner))) { units in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: inner) { buf in
                let s = buf.baseAddress!
                for o in units {
                    let base = o * length * inner
                    for j in 0..<inner { s[j] = 0 }
                    for l in 0..<length {
                        let gl = g + base + l * inner, yl = y + base + l * inner
                        for j in 0..<inner { s[j] += gl[j] * yl[j] }
                    }
                    for l in 0..<length {
                        let gl = g + base + l * inner, yl = y + base + l * inner, dl = dx + base + l * inner
                        for j in 0..<inner { dl[j] = yl[j] * (gl[j] - s[j]) }
                    }
                }
            }
        }
    }

    /// Log-softmax backward: dx = g − e^y · Σ g.
    static func logSoftmaxBackward(_ g: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                                   outer: Int, length: Int, inner: Int) {
        if outer * length * inner == 0 { return }
        if inner == 1 {
            parallelFor(outer, grain: Swift.max(1, 16_384 / length)) { rows in
                for r in rows {
                    let o = r * length
                    let gs = sum(g + o, length)
                    let gr = g + o, yr = y + o, dr = dx + o
                    var i = 0
                    while i + 16 <= length { store(load(gr + i) - fastExpNonPositive(load(yr + i)) * gs, dr + i); i += 16 }
                    if i < length {
                        let e = fastExpNonPositive(loadPartial(yr + i, length - i, fill: 0))
                        storePartial(loadPartial(gr + i, length - i, fill: 0) - e * gs, dr + i, length - i)
                    }
                }
            }
            return
        }
        parallelFor(outer, grain: Swift.max(1, 16_384 / (length * inner))) { units in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: inner) { buf in
                let s = buf.baseAddress!
                for o in units {
                    let base = o * length * inner
                    for j in 0..<inner { s[j] = 0 }
                    for l in 0..<length {
                        let gl = g + base + l * inner
                        for j in 0..<inner { s[j] += gl[j] }
                    }
                    for l in 0..<length {
                        let gl = g + base + l * inner, yl = y + base + l * inner, dl = dx + base + l * inner
                        for j in 0..<inner { dl[j] = yl[j] }
                        expInPlace(dl, inner)
                        for j in 0..<inner { dl[j] = gl[j] - dl[j] * s[j] }
                    }
                }
            }
        }
    }
}
