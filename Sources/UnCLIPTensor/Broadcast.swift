/// The broadcast shape of two shapes (NumPy rules), or nil if they do not broadcast.
public func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
    let r = max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let x = i < r - a.count ? 1 : a[i - (r - a.count)]
        let y = i < r - b.count ? 1 : b[i - (r - b.count)]
        if x == y || y == 1 { out[i] = x } else if x == 1 { out[i] = y } else { return nil }
    }
    return out
}

/// Strides for reading a tensor of `shape` as if it had `target` shape (0 on broadcast axes).
func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
    let own = Tensor.strides(shape)
    let lead = target.count - shape.count
    return (0..<target.count).map { i in i < lead || shape[i - lead] == 1 ? 0 : own[i - lead] }
}

/// Applies `f` elementwise over two broadcast operands into a new tensor.
///
/// Fast paths: equal shapes, a scalar operand, and (general case) a contiguous or constant innermost run,
/// parallelised over the outer index.
@inline(__always)
func broadcastBinary(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
    guard let shape = broadcastShape(a.shape, b.shape) else {
        preconditionFailure("shapes \(a.shape) and \(b.shape) do not broadcast")
    }
    let out = Tensor(uninitializedShape: shape)
    let pa = a.data, pb = b.data, po = out.data
    let n = out.count
    if a.shape == b.shape {
        parallelFor(n) { r in for i in r { po[i] = f(pa[i], pb[i]) } }
    } else if b.count == 1 {
        let y = pb[0]
        parallelFor(n) { r in for i in r { po[i] = f(pa[i % a.count], y) } }
    } else if a.count == 1 {
        let x = pa[0]
        parallelFor(n) { r in for i in r { po[i] = f(x, pb[i % b.count]) } }
    } else {
        let sa = broadcastStrides(a.shape, to: shape), sb = broadcastStrides(b.shape, to: shape)
        let inner = shape.last ?? 1
        let ia = sa.last ?? 0, ib = sb.last ?? 0
        let outer = n / max(inner, 1)
        let outerShape = Array(shape.dropLast())
        parallelFor(outer, grain: max(1, 32_768 / max(inner, 1))) { r in
            for o in r {
                // Offsets of this row in a and b.
                var rem = o, oa = 0, ob = 0
                for d in stride(from: outerShape.count - 1, through: 0, by: -1) {
                    let k = rem % outerShape[d]; rem /= outerShape[d]
                    oa += k * sa[d]; ob += k * sb[d]
                }
                let x = pa + oa, y = pb + ob, z = po + o * inner
                if ia == 1 && ib == 1 { for i in 0..<inner { z[i] = f(x[i], y[i]) } }
                else if ia == 1 { let c = y[0]; for i in 0..<inner { z[i] = f(x[i], c) } }
                else if ib == 1 { let c = x[0]; for i in 0..<inner { z[i] = f(c, y[i]) } }
                else { for i in 0..<inner { z[i] = f(x[i * ia], y[i * ib]) } }
            }
        }
    }
    return out
}

/// Applies `f` elementwise into a new tensor of the same shape.
@inline(__always)
func mapUnary(_ a: Tensor, _ f: (Float) -> Float) -> Tensor {
    let out = Tensor(uninitializedShape: a.shape)
    let pa = a.data, po = out.data
    parallelFor(a.count) { r in for i in r { po[i] = f(pa[i]) } }
    return out
}
