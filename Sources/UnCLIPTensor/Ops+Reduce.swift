extension Tensor {
    /// Sum over `axes` (all axes when empty), keeping them as size 1 when `keepDims`.
    public func sum(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        let ax = Set(axes.isEmpty ? Array(0..<rank) : axes.map { axis($0) })
        let kept = shape.enumerated().map { ax.contains($0.offset) ? 1 : $0.element }
        let out = Tensor.zeros(kept)
        // Accumulate in Double for stability over long reductions.
        let outStrides = broadcastStrides(kept, to: shape)
        let src = data, dst = out.data
        if ax.count == rank || count == 0 {
            var acc = 0.0
            for i in 0..<count { acc += Double(src[i]) }
            dst[0] = Float(acc)
        } else {
            var acc = [Double](repeating: 0, count: out.count)
            var idx = [Int](repeating: 0, count: rank)
            var o = 0
            for i in 0..<count {
                acc[o] += Double(src[i])
                // Increment the multi-index and the output offset.
                var d = rank - 1
                while d >= 0 {
                    idx[d] += 1; o += outStrides[d]
                    if idx[d] < shape[d] { break }
                    o -= outStrides[d] * shape[d]; idx[d] = 0; d -= 1
                }
            }
            for i in 0..<out.count { dst[i] = Float(acc[i]) }
        }
        let inShape = shape
        let result = keepDims ? out : out.reshaped(shape.enumerated().filter { !ax.contains($0.offset) }.map(\.element))
        return result.detached().recorded("sum", [self]) { g, _ in
            [g.reshaped(kept).expanded(to: inShape)]
        }
    }

    /// Broadcasts to `target` shape, materialised.
    public func expanded(to target: [Int]) -> Tensor {
        if shape == target { return self }
        precondition(broadcastShape(shape, target) == target, "cannot expand \(shape) to \(target)")
        let out = Tensor(uninitializedShape: target)
        let strides = broadcastStrides(shape, to: target)
        let inner = target.last ?? 1, innerStride = strides.last ?? 0
        let outerShape = Array(target.dropLast())
        let src = data, dst = out.data
        parallelFor(out.count / max(inner, 1), grain: max(1, 32_768 / max(inner, 1))) { r in
            for o in r {
                var rem = o, off = 0
                for d in stride(from: outerShape.count - 1, through: 0, by: -1) {
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
