// Shape ops: views where the layout allows (reshape, leading slices), copies otherwise. Each backward rule is
// the adjoint layout change (permute ↔ inverse permute, slice ↔ zero-pad, concat ↔ split, gather ↔ scatter-add).

extension Tensor {
    /// The same elements with another shape (a view; one axis may be −1).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            s[i] = count / known
        }
        precondition(s.reduce(1, *) == count, "cannot reshape \(shape) (\(count) elements) to \(newShape)")
        let inShape = shape
        return Tensor(shape: s, storage: storage, offset: offset)
            .recorded("reshape", [self]) { g, _ in [g.reshaped(inShape)] }
    }

    /// The axes reordered: output axis i is input axis `perm[i]` (negative entries count from the end).
    public func permuted(_ perm: [Int]) -> Tensor {
        precondition(perm.count == rank, "permuted: \(perm) for rank \(rank)")
        let p = perm.map { axis($0) }
        precondition(Set(p).count == rank, "permuted: \(perm) is not a permutation")
        let outShape = p.map { shape[$0] }
        if p == Array(0..<rank) { return reshaped(shape) }
        let out = Tensor(uninitializedShape: outShape)
        permuteCopy(data, shape: shape, perm: p, into: out.data)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, a) in p.enumerated() { inverse[a] = i }
        return out.recorded("permute", [self]) { g, _ in [g.permuted(inverse)] }
    }

    /// Axes `a` and `b` swapped.
    public func transposed(_ a: Int, _ b: Int) -> Tensor {
        var p = Array(0..<rank)
        p.swapAt(axis(a), axis(b))
        return permuted(p)
    }

    /// The elements with index in `range` along `axis`.
    ///
    /// A view sharing storage when every axis before `axis` has size 1 (the slice is then one contiguous run);
    /// a copy otherwise.
    public func sliced(axis a: Int, _ range: Range<Int>) -> Tensor {
        let ax = axis(a)
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[ax],
                     "sliced: range \(range) out of bounds for axis \(a) of shape \(shape)")
        var outShape = shape
        outShape[ax] = range.count
        let outer = shape[..<ax].reduce(1, *), inner = shape[(ax + 1)...].reduce(1, *)
        let out: Tensor
        if outer == 1 {
            out = Tensor(shape: outShape, storage: storage, offset: offset + range.lowerBound * inner)
        } else {
            out = Tensor(uninitializedShape: outShape)
            let src = data, dst = out.data, n = shape[ax], run = range.count * inner, lo = range.lowerBound * inner
            parallelFor(outer, grain: Swift.max(1, 32_768 / Swift.max(run, 1))) { r in
                for o in r { (dst + o * run).update(from: src + o * n * inner + lo, count: run) }
            }
        }
        let inShape = shape
        return out.recorded("slice", [self]) { g, _ in
            // The adjoint of slicing: g placed into zeros.
            var pads = inShape.map { _ in (0, 0) }
            pads[ax] = (range.lowerBound, inShape[ax] - range.upperBound)
            return [g.padded(pads)]
        }
    }

    /// Tensors joined along `axis`; all other extents must agree.
    public static func concat(_ ts: [Tensor], axis a: Int) -> Tensor {
        precondition(!ts.isEmpty, "concat of no tensors")
        let first = ts[0]
        let ax = first.axis(a)
        for t in ts {
            precondition(t.rank == first.rank && (0..<first.rank).allSatisfy { $0 == ax || t.shape[$0] == first.shape[$0] },
                         "concat along axis \(a): shape \(t.shape) does not match \(first.shape)")
        }
        var outShape = first.shape
        outShape[ax] = ts.reduce(0) { $0 + $1.shape[ax] }
        if ax == 1, let blocked = blockedConcat(ts, shape: outShape) { return blocked }  // an up block's skip (inference)
        let out = Tensor(uninitializedShape: outShape)
        let outer = first.shape[..<ax].reduce(1, *), inner = first.shape[(ax + 1)...].reduce(1, *)
        let runs = ts.map { $0.shape[ax] * inner }, rowLength = outShape[ax] * inner
        let sources = ts.map { UnsafePointer($0.data) }
        var starts = [0]
        for r in runs.dropLast() { starts.append(starts.last! + r) }
        let dst = out.data
        parallelFor(outer, grain: Swift.max(1, 32_768 / Swift.max(rowLength, 1))) { r in
            for o in r {
                for k in 0..<sources.count where runs[k] > 0 {
                    (dst + o * rowLength + starts[k]).update(from: sources[k] + o * runs[k], count: runs[k])
                }
            }
        }
        let sizes = ts.map { $0.shape[ax] }
        return out.recorded("concat", ts) { g, _ in
            var result: [Tensor?] = []
            var start = 0
            for (t, n) in zip(ts, sizes) {
                result.append(t.requiresGrad ? g.sliced(axis: ax, start..<(start + n)) : nil)
                start += n
            }
            return result
        }
    }

    /// Consecutive pieces along `axis` with the given sizes (which must add up to the axis extent).
    public func split(sizes: [Int], axis a: Int) -> [Tensor] {
        let ax = axis(a)
        precondition(sizes.allSatisfy { $0 >= 0 } && sizes.reduce(0, +) == shape[ax],
                     "split: sizes \(sizes) do not add up to \(shape[ax]) along axis \(a) of \(shape)")
        var start = 0
        return sizes.map { n in
            defer { start += n }
            return sliced(axis: ax, start..<(start + n))
        }
    }

    /// At most `n` pieces along `axis`, each ⌈extent/n⌉ long except possibly a shorter last one.
    ///
    /// Matches torch.chunk: fewer than `n` pieces come back when the extent does not fill them.
    public func chunked(_ n: Int, axis a: Int) -> [Tensor] {
        precondition(n > 0, "chunked: \(n) chunks")
        let ax = axis(a), extent = shape[ax]
        let size = Swift.max(1, (extent + n - 1) / n)
        var sizes: [Int] = []
        var start = 0
        while start < extent { sizes.append(Swift.min(size, extent - start)); start += size }
        if sizes.isEmpty { sizes = [0] }
        return split(sizes: sizes, axis: ax)
    }

    /// Padded with `value`: `pads[i]` = (before, after) element counts for axis i (non-negative).
    public func padded(_ pads: [(Int, Int)], value: Float = 0) -> Tensor {
        precondition(pads.count == rank, "padded: \(pads.count) pad pairs for rank \(rank)")
        precondition(pads.allSatisfy { $0.0 >= 0 && $0.1 >= 0 }, "padded: negative padding \(pads)")
        let outShape = zip(shape, pads).map { $0 + $1.0 + $1.1 }
        let out = Tensor.full(outShape, value)
        if count > 0 {
            // Copy rows of the innermost axis into place.
            let inner = shape.last ?? 1
            let strides = Tensor.strides(outShape)
            var base = 0
            for (i, p) in pads.enumerated() { base += p.0 * strides[i] }
            let dims = rank - 1
            let outerShape = IndexTable(Array(shape.dropLast())), outStrides = IndexTable(strides)
            defer { outerShape.free(); outStrides.free() }
            let src = data, dst = out.data
            parallelFor(count / inner, grain: Swift.max(1, 32_768 / inner)) { r in
                for o in r {
                    var rem = o, off = base
                    for d in stride(from: dims - 1, through: 0, by: -1) {
                        off += (rem % outerShape[d]) * outStrides[d]; rem /= outerShape[d]
                    }
                    (dst + off).update(from: src + o * inner, count: inner)
                }
            }
        }
        let inShape = shape
        return out.recorded("pad", [self]) { g, _ in
            var s = g
            for (i, p) in pads.enumerated() where p.0 != 0 || p.1 != 0 { s = s.sliced(axis: i, p.0..<(p.0 + inShape[i])) }
            return [s]
        }
    }

    /// Rows of a [V, D] table picked by `ids` → [ids.count, D] (an embedding lookup).
    ///
    /// The gradient scatter-adds into the table; repeated ids accumulate.
    public func gatherRows(_ ids: [Int]) -> Tensor {
        precondition(rank == 2, "gatherRows on a tensor of shape \(shape); expected [V, D]")
        let v = shape[0], d = shape[1]
        for id in ids { precondition(id >= 0 && id < v, "gatherRows: id \(id) out of range 0..<\(v)") }
        let out = Tensor(uninitializedShape: [ids.count, d])
        let src = data, dst = out.data
        ids.withUnsafeBufferPointer { idp in
            parallelFor(ids.count, grain: Swift.max(1, 32_768 / Swift.max(d, 1))) { r in
                for i in r { (dst + i * d).update(from: src + idp[i] * d, count: d) }
            }
        }
        return out.recorded("gather_rows", [self]) { g, _ in
            let grad = Tensor.zeros([v, d])
            let pg = g.data, pw = grad.data
            // Sequential: repeated ids write the same row.
            for (i, id) in ids.enumerated() {
                let row = pw + id * d, gi = pg + i * d
                for j in 0..<d { row[j] += gi[j] }
            }
            return [grad]
        }
    }

    /// Elementwise choice: `a` where `condition` is nonzero, else `b` (all three broadcast together).
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
        guard let ab = broadcastShape(a.shape, b.shape), let shape = broadcastShape(condition.shape, ab) else {
            preconditionFailure("where: shapes \(condition.shape), \(a.shape), \(b.shape) do not broadcast")
        }
        let c = withNoGrad { condition.expanded(to: shape) }
        let x = withNoGrad { a.expanded(to: shape) }, y = withNoGrad { b.expanded(to: shape) }
        let out = Tensor(uninitializedShape: shape)
        let pc = c.data, px = x.data, py = y.data, po = out.data
        parallelFor(out.count) { r in for i in r { po[i] = pc[i] != 0 ? px[i] : py[i] } }
        return out.recorded("where", [a, b]) { g, _ in
            let pc = c.data, pg = g.data  // (captures `c`, keeping the expanded condition alive)
            var ga: Tensor? = nil, gb: Tensor? = nil
            if a.requiresGrad {
                let t = Tensor(uninitializedShape: shape), pt = t.data
                parallelFor(t.count) { r in for i in r { pt[i] = pc[i] != 0 ? pg[i] : 0 } }
                ga = t
            }
            if b.requiresGrad {
                let t = Tensor(uninitializedShape: shape), pt = t.data
                parallelFor(t.count) { r in for i in r { pt[i] = pc[i] != 0 ? 0 : pg[i] } }
                gb = t
            }
            return [ga, gb]
        }
    }
}

// MARK: - Permutation kernel

/// Copies `src` (of `shape`) into `dst` with axes reordered by `perm` (output axis i = input axis perm[i]).
///
/// Axes that stay neighbours are merged first. When the innermost axis stays innermost, the copy moves
/// contiguous runs (e.g. [B, L, H, dh] → [B, H, L, dh] moves rows of dh). Otherwise it transposes 32×32 tiles
/// between the input's and the output's innermost axes (e.g. [B, C, HW] ↔ [B, HW, C]), so both the reads and
/// the writes touch whole cache lines.
func permuteCopy(_ src: UnsafePointer<Float>, shape: [Int], perm: [Int], into dst: UnsafeMutablePointer<Float>) {
    // Drop size-1 axes, then merge runs of input axes that stay consecutive in the output.
    let live = perm.filter { shape[$0] != 1 }
    var groups: [[Int]] = []  // in output order; each a run of consecutive input axes
    for a in live {
        if var g = groups.last, g.last! + 1 == a { g.append(a); groups[groups.count - 1] = g } else { groups.append([a]) }
    }
    let total = shape.reduce(1, *)
    if total == 0 { return }
    if groups.count <= 1 { dst.update(from: src, count: total); return }
    // Merged input axes in input order, and the permutation among them.
    let inputOrder = groups.sorted { $0[0] < $1[0] }
    let mShape = inputOrder.map { $0.reduce(1) { $0 * shape[$1] } }
    let mPerm = groups.map { g in inputOrder.firstIndex { $0[0] == g[0] }! }
    let n = mShape.count
    let inStrides = Tensor.strides(mShape)
    let outShape = mPerm.map { mShape[$0] }
    let outStrides = Tensor.strides(outShape)
    // Input stride of each output axis, and output stride of each input axis.
    let strideInForOut = mPerm.map { inStrides[$0] }
    var strideOutForIn = [Int](repeating: 0, count: n)
    for (i, a) in mPerm.enumerated() { strideOutForIn[a] = outStrides[i] }

    if mPerm.last == n - 1 {
        // Contiguous runs of the innermost axis.
        let run = mShape[n - 1]
        let dims = n - 1
        let outer = IndexTable(Array(outShape.dropLast())), sIn = IndexTable(Array(strideInForOut.dropLast()))
        defer { outer.free(); sIn.free() }
        parallelFor(total / run, grain: Swift.max(1, 32_768 / run)) { r in
            for o in r {
                var rem = o, off = 0
                for d in stride(from: dims - 1, through: 0, by: -1) {
                    off += (rem % outer[d]) * sIn[d]; rem /= outer[d]
                }
                (dst + o * run).update(from: src + off, count: run)
            }
        }
        return
    }
    // Tiled transpose between input axis p (the output's innermost) and input axis n−1 (the input's innermost).
    let p = mPerm[n - 1]
    let rows = mShape[p], cols = mShape[n - 1]      // read tile: rows along p, contiguous cols
    let sRowIn = inStrides[p], sColOut = strideOutForIn[n - 1]
    // The remaining axes, iterated over by an outer index.
    let rest = (0..<n).filter { $0 != p && $0 != n - 1 }
    let dims = rest.count
    let outerCount = rest.reduce(1) { $0 * mShape[$1] }
    let restShape = IndexTable(rest.map { mShape[$0] })
    let restIn = IndexTable(rest.map { inStrides[$0] }), restOut = IndexTable(rest.map { strideOutForIn[$0] })
    defer { restShape.free(); restIn.free(); restOut.free() }
    let tile = 32
    let rowTiles = (rows + tile - 1) / tile
    parallelFor(outerCount * rowTiles, grain: Swift.max(1, 32_768 / (tile * cols))) { range in
        for item in range {
            let o = item / rowTiles, rt = item % rowTiles
            var rem = o, offIn = 0, offOut = 0
            for d in stride(from: dims - 1, through: 0, by: -1) {
                let k = rem % restShape[d]; rem /= restShape[d]
                offIn += k * restIn[d]; offOut += k * restOut[d]
            }
            let r0 = rt * tile, r1 = Swift.min(rows, r0 + tile)
            var c0 = 0
            while c0 < cols {
                let c1 = Swift.min(cols, c0 + tile)
                // Within the tile: read rows (contiguous along c), write columns (contiguous along r).
                for c in c0..<c1 {
                    let s = src + offIn + c, d = dst + offOut + c * sColOut
                    for r in r0..<r1 { d[r] = s[r * sRowIn] }
                }
                c0 = c1
            }
        }
    }
}

/// A small Int array in manually managed memory, for index arithmetic inside parallel loops (reading a Swift
/// array captured by a closure costs reference counting on every access). Call `free()` when done.
struct IndexTable {
    let base: UnsafeMutablePointer<Int>
    init(_ values: [Int]) {
        base = .allocate(capacity: Swift.max(values.count, 1))
        for (i, v) in values.enumerated() { base[i] = v }
    }
    @inline(__always) subscript(_ i: Int) -> Int { base[i] }
    func free() { base.deallocate() }
}
