// Reductions (sum, mean, max, variance) and the broadcast that undoes them (expanded(to:)).
//
// A reduction first merges neighbouring axes that are all reduced or all kept, so any request becomes a few
// passes of one kernel shape: out[a, c] = reduce over r of x[a, r, c], the reduced run in the middle. The
// innermost reduced run goes first; C == 1 is a sum over contiguous rows, A == 1 a sum over leading rows.
// Sums accumulate in Float over short blocks (4 values per lane, or 8 rows) and in Double across blocks, so
// long reductions keep close to Double accuracy at Float speed.

extension Tensor {
    // The reduction `max(axes:keepDims:)` hides the standard library's `max(_:_:)` inside Tensor's members; these
    // forward to it so that `max(a, b)` keeps working in this module's Tensor extensions (other modules write
    // `Swift.max`).
    @inline(__always) func max<T: Comparable>(_ a: T, _ b: T) -> T { Swift.max(a, b) }
    @inline(__always) static func max<T: Comparable>(_ a: T, _ b: T) -> T { Swift.max(a, b) }

    /// The reduced axes (resolved, sorted) and the output shape with them kept as size 1.
    fileprivate func reductionAxes(_ axes: [Int]) -> (axes: Set<Int>, kept: [Int]) {
        // A 0-d tensor has nothing to reduce; PyTorch accepts dim 0 / −1 on it as well.
        if rank == 0 { return ([], []) }
        let ax = Set(axes.isEmpty ? Array(0..<rank) : axes.map { axis($0) })
        return (ax, shape.enumerated().map { ax.contains($0.offset) ? 1 : $0.element })
    }

    /// Sum over `axes` (all axes when empty), keeping them as size 1 when `keepDims`.
    public func sum(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        let (ax, kept) = reductionAxes(axes)
        let out = Tensor(uninitializedShape: kept)
        reduceSum(data, shape: shape, reduced: ax, into: out.data)
        let inShape = shape
        let result = keepDims ? out : out.reshaped(shape.enumerated().filter { !ax.contains($0.offset) }.map(\.element))
        return result.detached().recorded("sum", [self]) { g, _ in
            [g.reshaped(kept).expanded(to: inShape)]
        }
    }

    /// Mean over `axes` (all axes when empty), keeping them as size 1 when `keepDims`.
    public func mean(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        let (ax, _) = reductionAxes(axes)
        let n = ax.reduce(1) { $0 * shape[$1] }
        // 0/0 = NaN for an empty reduction, as in PyTorch.
        return sum(axes: axes, keepDims: keepDims) * (1 / Float(n))
    }

    /// Largest element over `axes` (all axes when empty); NaN wins, as in PyTorch.
    ///
    /// The gradient goes to one element per output: the first maximal element in row-major order over the
    /// reduced axes (the index `torch.max(x, dim)` returns), not shared among ties.
    public func max(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        let (ax, kept) = reductionAxes(axes)
        let out = Tensor(uninitializedShape: kept)
        let argmax = reduceMax(data, shape: shape, reduced: ax, into: out.data)
        let inShape = shape
        let result = keepDims ? out : out.reshaped(shape.enumerated().filter { !ax.contains($0.offset) }.map(\.element))
        return result.detached().recorded("max", [self]) { g, _ in
            let grad = Tensor.zeros(inShape)
            let pg = g.data, dst = grad.data
            for i in 0..<argmax.count { dst[argmax[i]] += pg[i] }
            return [grad]
        }
    }

    /// Biased variance (divides by n) over `axes` (all axes when empty).
    public func variance(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        let (ax, kept) = reductionAxes(axes)
        let n = ax.reduce(1) { $0 * shape[$1] }
        let centered = withNoGrad { self - self.mean(axes: axes, keepDims: true) }
        let out = withNoGrad { (centered * centered).mean(axes: axes, keepDims: keepDims) }
        return out.recorded("variance", [self]) { g, _ in
            // d var / dx = 2(x − mean)/n; the mean's own dependence on x cancels because Σ(x − mean) = 0.
            [g.reshaped(kept) * centered * (2 / Float(n))]
        }
    }

    /// Broadcasts to `target` shape, materialised.
    public func expanded(to target: [Int]) -> Tensor {
        if shape == target { return self }
        precondition(broadcastShape(shape, target) == target, "cannot expand \(shape) to \(target)")
        let out = Tensor(uninitializedShape: target)
        let stridesArray = broadcastStrides(shape, to: target)
        let inner = target.last ?? 1, innerStride = stridesArray.last ?? 0
        let dims = target.count - 1
        let outerShape = IndexTable(Array(target.dropLast())), strides = IndexTable(stridesArray)
        defer { outerShape.free(); strides.free() }
        let src = data, dst = out.data
        parallelFor(out.count / Swift.max(inner, 1), grain: Swift.max(1, 32_768 / Swift.max(inner, 1))) { r in
            for o in r {
                var rem = o, off = 0
                for d in stride(from: dims - 1, through: 0, by: -1) {
                    off += (rem % outerShape[d]) * strides[d]; rem /= outerShape[d]
                }
                let x = src + off, z = dst + o * inner
                if innerStride == 1 { z.update(from: x, count: inner) } else { z.update(repeating: x[0], count: inner) }
            }
        }
        let inShape = shape
        return out.recorded("expand", [self]) { g, _ in [g.summed(toShape: inShape)] }
    }
}

// MARK: - Planning

/// Merges neighbouring axes with the same reduced/kept status, dropping size-1 axes.
func reductionSegments(_ shape: [Int], _ reduced: Set<Int>) -> [(size: Int, reduced: Bool)] {
    var segs: [(size: Int, reduced: Bool)] = []
    for (i, n) in shape.enumerated() where n != 1 {
        let r = reduced.contains(i)
        if let last = segs.last, last.reduced == r { segs[segs.count - 1].size *= n } else { segs.append((n, r)) }
    }
    return segs
}

/// Sums `src` (of `shape`) over the `reduced` axes into `dst` (the kept elements in order).
func reduceSum(_ src: UnsafePointer<Float>, shape: [Int], reduced: Set<Int>, into dst: UnsafeMutablePointer<Float>) {
    var segs = reductionSegments(shape, reduced)
    let total = shape.reduce(1, *)
    if total == 0 {
        // Empty input: every output is 0 (there may be outputs when only kept axes are non-empty).
        let outCount = shape.enumerated().reduce(1) { $0 * (reduced.contains($1.offset) ? 1 : $1.element) }
        dst.update(repeating: 0, count: outCount)
        return
    }
    guard let last = segs.lastIndex(where: { $0.reduced }) else {
        dst.update(from: src, count: total)  // nothing to reduce
        return
    }
    // Innermost reduced run first, then outward through temporaries.
    var input = src
    var temp: Tensor?
    var i = last
    while true {
        let a = segs[..<i].reduce(1) { $0 * $1.size }, r = segs[i].size, c = segs[(i + 1)...].reduce(1) { $0 * $1.size }
        segs.remove(at: i)
        let next = segs[..<i].lastIndex(where: { $0.reduced })
        let output: UnsafeMutablePointer<Float>
        var stepTemp: Tensor?
        if next == nil { output = dst } else { stepTemp = Tensor(uninitializedShape: [a * c]); output = stepTemp!.data }
        sumMiddleAxis(input, a: a, r: r, c: c, into: output)
        guard let n = next else { break }
        temp = stepTemp
        input = UnsafePointer(temp!.data)
        i = n
    }
    _ = temp
}

/// out[a, c] = Σ_r x[a, r, c].
func sumMiddleAxis(_ x: UnsafePointer<Float>, a: Int, r: Int, c: Int, into out: UnsafeMutablePointer<Float>) {
    if c == 1 {
        if a >= Engine.threadCount * 4 || a * r < 65_536 {
            parallelFor(a, grain: Swift.max(1, 32_768 / r)) { rows in
                for i in rows { out[i] = Float(sumContiguous(x + i * r, r)) }
            }
        } else {
            // Few long rows: split each row over the threads.
            for i in 0..<a {
                let row = x + i * r
                let chunks = Engine.threadCount * 4
                var partial = [Double](repeating: 0, count: chunks)
                partial.withUnsafeMutableBufferPointer { p in
                    let pp = p.baseAddress!
                    parallelFor(chunks, grain: 1) { cs in
                        for k in cs { pp[k] = sumContiguous(row + r * k / chunks, r * (k + 1) / chunks - r * k / chunks) }
                    }
                }
                out[i] = Float(partial.reduce(0, +))
            }
        }
        return
    }
    // Column sums over rows of width c: work items are (a, column block).
    let width = 1024
    let blocks = (c + width - 1) / width
    parallelFor(a * blocks, grain: Swift.max(1, 65_536 / (r * Swift.min(c, width)))) { items in
        var accF = [Float](repeating: 0, count: width)
        var accD = [Double](repeating: 0, count: width)
        accF.withUnsafeMutableBufferPointer { fbuf in
            accD.withUnsafeMutableBufferPointer { dbuf in
                let f = fbuf.baseAddress!, d = dbuf.baseAddress!
                for item in items {
                    let ai = item / blocks, c0 = (item % blocks) * width, w = Swift.min(width, c - c0)
                    for j in 0..<w { d[j] = 0 }
                    var r0 = 0
                    while r0 < r {
                        // 8 rows in Float (vectorised), then into the Double accumulator.
                        let r1 = Swift.min(r, r0 + 8)
                        let first = x + (ai * r + r0) * c + c0
                        for j in 0..<w { f[j] = first[j] }
                        for ri in (r0 + 1)..<r1 {
                            let row = x + (ai * r + ri) * c + c0
                            for j in 0..<w { f[j] += row[j] }
                        }
                        for j in 0..<w { d[j] += Double(f[j]) }
                        r0 = r1
                    }
                    let o = out + ai * c + c0
                    for j in 0..<w { o[j] = Float(d[j]) }
                }
            }
        }
    }
}

/// Σ p[0..<n]: 32 Float lanes add 4 values each, then go into Double lanes (so the rounding of long runs of
/// similar values cannot pile up).
@inline(__always)
func sumContiguous(_ p: UnsafePointer<Float>, _ n: Int) -> Double {
    var total = SIMD16<Double>(repeating: 0)
    var i = 0
    while i + 128 <= n {
        var a0 = loadV(p + i), a1 = loadV(p + i + 16)
        a0 += loadV(p + i + 32); a1 += loadV(p + i + 48)
        a0 += loadV(p + i + 64); a1 += loadV(p + i + 80)
        a0 += loadV(p + i + 96); a1 += loadV(p + i + 112)
        total += SIMD16<Double>(a0) + SIMD16<Double>(a1)
        i += 128
    }
    var tail = 0.0
    while i < n { tail += Double(p[i]); i += 1 }
    return total.sum() + tail
}

/// Maximum of `src` over the `reduced` axes into `dst`; returns, per output, the flat input index of the first
/// maximal element in row-major order.
func reduceMax(_ src: UnsafePointer<Float>, shape: [Int], reduced: Set<Int>,
               into dst: UnsafeMutablePointer<Float>) -> [Int] {
    var segs = reductionSegments(shape, reduced)
    let total = shape.reduce(1, *)
    precondition(total > 0 || reduced.allSatisfy({ shape[$0] > 0 }), "max of an empty reduction in shape \(shape)")
    guard let last = segs.lastIndex(where: { $0.reduced }) else {
        dst.update(from: src, count: total)
        return Array(0..<total)
    }
    var input = src
    var temp: Tensor?
    var index: [Int]? = nil  // flat input index of each element of `input`; nil: the identity
    var i = last
    while true {
        let a = segs[..<i].reduce(1) { $0 * $1.size }, r = segs[i].size, c = segs[(i + 1)...].reduce(1) { $0 * $1.size }
        segs.remove(at: i)
        let next = segs[..<i].lastIndex(where: { $0.reduced })
        let stepOut = Tensor(uninitializedShape: [a * c])
        var pick = [Int](repeating: 0, count: a * c)
        pick.withUnsafeMutableBufferPointer { maxMiddleAxis(input, a: a, r: r, c: c, into: stepOut.data, argmax: $0.baseAddress!) }
        // pick holds r per output; turn it into an index into `input`, then through `index` into the original.
        for k in 0..<(a * c) {
            let flat = ((k / c) * r + pick[k]) * c + k % c
            pick[k] = index?[flat] ?? flat
        }
        index = pick
        temp = stepOut
        input = UnsafePointer(stepOut.data)
        guard let n = next else { break }
        i = n
    }
    dst.update(from: temp!.data, count: temp!.count)
    return index!
}

/// out[a, c] = max_r x[a, r, c] with the first maximal r in argmax[a, c] (NaN counts as maximal).
func maxMiddleAxis(_ x: UnsafePointer<Float>, a: Int, r: Int, c: Int,
                   into out: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int>) {
    parallelFor(a, grain: Swift.max(1, 32_768 / (r * c))) { rows in
        for ai in rows {
            let base = x + ai * r * c, o = out + ai * c, idx = argmax + ai * c
            for j in 0..<c { o[j] = base[j]; idx[j] = 0 }
            for ri in 1..<Swift.max(r, 1) {
                let row = base + ri * c
                for j in 0..<c {
                    let v = row[j], best = o[j]
                    // Strictly greater keeps the first occurrence; the first NaN wins and stays.
                    if v > best || (v != v && best == best) { o[j] = v; idx[j] = ri }
                }
            }
        }
    }
}
