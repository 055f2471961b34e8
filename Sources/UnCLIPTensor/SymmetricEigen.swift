import Foundation

/// The eigendecomposition A = V diag(λ) Vᵀ of a real symmetric matrix, by cyclic Jacobi rotations in Double.
///
/// For the small matrices this project decomposes (covariances of CLIP embeddings: the autoregressive prior's PCA,
/// the Fréchet distance of the evaluation), where a LAPACK dependency would buy nothing: a 128 × 128 matrix takes a
/// few milliseconds and is accurate to ~1e-14 relative.
public struct SymmetricEigen: Sendable {
    /// Eigenvalues, largest first.
    public let values: [Double]
    /// Eigenvectors as rows, in the order of `values`: `vectors[k]` belongs to `values[k]` (unit length).
    public let vectors: [[Double]]

    /// Decomposes the n × n row-major symmetric matrix `a` (only symmetric input is meaningful; the mean of a and aᵀ
    /// is decomposed).
    public init(_ a: [Double], n: Int) {
        precondition(n >= 0 && a.count == n * n, "SymmetricEigen: \(a.count) values for a \(n) × \(n) matrix")
        var m = a
        for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { let s = (m[i * n + j] + m[j * n + i]) / 2; m[i * n + j] = s; m[j * n + i] = s } }
        var v = [Double](repeating: 0, count: n * n)
        for i in 0..<n { v[i * n + i] = 1 }
        let scale = max(m.map(abs).max() ?? 0, .leastNormalMagnitude)
        for _ in 0..<100 {
            var off = 0.0
            for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { off += m[i * n + j] * m[i * n + j] } }
            if off.squareRoot() <= 1e-15 * scale * Double(n) { break }
            for p in 0..<n {
                for q in (p + 1)..<max(p + 1, n) {
                    let apq = m[p * n + q]
                    if abs(apq) <= 1e-300 { continue }
                    // The rotation that zeroes m[p, q] (Golub & Van Loan, Algorithm 8.4.1, the stable tangent).
                    let tau = (m[q * n + q] - m[p * n + p]) / (2 * apq)
                    let t = (tau >= 0 ? 1 : -1) / (abs(tau) + (1 + tau * tau).squareRoot())
                    let c = 1 / (1 + t * t).squareRoot(), s = t * c
                    for k in 0..<n {  // columns p and q
                        let mkp = m[k * n + p], mkq = m[k * n + q]
                        m[k * n + p] = c * mkp - s * mkq
                        m[k * n + q] = s * mkp + c * mkq
                    }
                    for k in 0..<n {  // rows p and q
                        let mpk = m[p * n + k], mqk = m[q * n + k]
                        m[p * n + k] = c * mpk - s * mqk
                        m[q * n + k] = s * mpk + c * mqk
                    }
                    for k in 0..<n {  // V ← V·J: eigenvectors in the columns
                        let vkp = v[k * n + p], vkq = v[k * n + q]
                        v[k * n + p] = c * vkp - s * vkq
                        v[k * n + q] = s * vkp + c * vkq
                    }
                }
            }
        }
        let order = (0..<n).sorted { m[$0 * n + $0] > m[$1 * n + $1] }
        values = order.map { m[$0 * n + $0] }
        vectors = order.map { j in (0..<n).map { v[$0 * n + j] } }
    }

    /// A^p for p = ½ (the principal square root; negative eigenvalues from rounding clamp to 0) or any p, row-major.
    public func power(_ p: Double) -> [Double] {
        let n = values.count
        var out = [Double](repeating: 0, count: n * n)
        for (lambda, u) in zip(values, vectors) {
            let w = pow(max(lambda, 0), p)
            if w == 0 { continue }
            for i in 0..<n { let wi = w * u[i]; for j in 0..<n { out[i * n + j] += wi * u[j] } }
        }
        return out
    }
}
