import Foundation
import UnCLIPModels

// Distances between two sets of image features: the Fréchet distance (FID's formula, here on the project's own CLIP
// image features, "FD-CLIP": Inception weights cannot be had on this machine) and improved precision and recall
// (Kynkäänniemi et al. 2019). Tests/UnCLIPEvaluationTests checks both against NumPy/SciPy values.

/// Mean [D] and covariance [D·D] (unbiased, row-major) of feature rows.
func meanAndCovariance(_ x: [[Float]]) -> (mean: [Double], covariance: [Double]) {
    let n = x.count, d = x[0].count
    var mean = [Double](repeating: 0, count: d)
    for row in x { for j in 0..<d { mean[j] += Double(row[j]) } }
    for j in 0..<d { mean[j] /= Double(n) }
    var cov = [Double](repeating: 0, count: d * d)
    var centred = [Double](repeating: 0, count: d)
    for row in x {
        for j in 0..<d { centred[j] = Double(row[j]) - mean[j] }
        for i in 0..<d where centred[i] != 0 {
            let ci = centred[i]
            for j in i..<d { cov[i * d + j] += ci * centred[j] }
        }
    }
    for i in 0..<d { for j in i..<d { cov[i * d + j] /= Double(max(n - 1, 1)); cov[j * d + i] = cov[i * d + j] } }
    return (mean, cov)
}

/// ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½): the Fréchet distance between Gaussians fit to two feature sets.
///
/// (Σ₁^½ Σ₂ Σ₁^½)^½ has the trace of FID's sqrtm(Σ₁Σ₂) (the two products are similar matrices), computed here from
/// symmetric eigendecompositions, so no complex parts arise.
public func frechetDistance(_ a: [[Float]], _ b: [[Float]]) -> Double {
    precondition(a.count >= 2 && b.count >= 2 && a[0].count == b[0].count, "frechetDistance: two sets of at least 2 rows of one width")
    let d = a[0].count
    let (m1, s1) = meanAndCovariance(a), (m2, s2) = meanAndCovariance(b)
    let root1 = SymmetricEigen(s1, n: d).power(0.5)
    // M = Σ₁^½ Σ₂ Σ₁^½
    func multiply(_ x: [Double], _ y: [Double]) -> [Double] {
        var out = [Double](repeating: 0, count: d * d)
        for i in 0..<d { for k in 0..<d { let xik = x[i * d + k]; if xik == 0 { continue }; for j in 0..<d { out[i * d + j] += xik * y[k * d + j] } } }
        return out
    }
    let m = multiply(multiply(root1, s2), root1)
    let traceRoot = SymmetricEigen(m, n: d).values.reduce(0) { $0 + max($1, 0).squareRoot() }
    var meanTerm = 0.0, traces = 0.0
    for j in 0..<d { meanTerm += (m1[j] - m2[j]) * (m1[j] - m2[j]); traces += s1[j * d + j] + s2[j * d + j] }
    return meanTerm + traces - 2 * traceRoot
}

/// Improved precision and recall with k-nearest-neighbour manifolds (Kynkäänniemi et al. 2019): precision is the
/// fraction of generated features inside the real manifold (the union of balls around each real feature reaching
/// its k-th nearest real neighbour), recall the fraction of real features inside the generated manifold.
public func precisionRecall(real: [[Float]], generated: [[Float]], k: Int = 3) -> (precision: Double, recall: Double) {
    precondition(real.count > k && generated.count > k, "precisionRecall: more than k = \(k) features in each set")
    func distances(_ x: [[Float]], _ y: [[Float]]) -> [[Double]] {
        x.map { u in y.map { v in var s = 0.0; for j in 0..<u.count { let t = Double(u[j]) - Double(v[j]); s += t * t }; return s.squareRoot() } }
    }
    // The k-th nearest neighbour within the set (index k of the sorted row: index 0 is the point itself).
    func radii(_ x: [[Float]]) -> [Double] { distances(x, x).map { $0.sorted()[k] } }
    func coverage(_ queries: [[Float]], manifold: [[Float]], radii r: [Double]) -> Double {
        let d = distances(queries, manifold)
        return Double(d.filter { row in row.indices.contains { row[$0] <= r[$0] } }.count) / Double(queries.count)
    }
    return (coverage(generated, manifold: real, radii: radii(real)), coverage(real, manifold: generated, radii: radii(generated)))
}

/// A value with its standard error.
public struct Estimate: Sendable, CustomStringConvertible {
    public var value: Double
    public var standardError: Double
    public init(_ value: Double, standardError: Double) { self.value = value; self.standardError = standardError }

    /// A proportion of n trials with its binomial standard error √(p(1 − p)/n).
    public static func proportion(_ successes: Int, of n: Int) -> Estimate {
        let p = n > 0 ? Double(successes) / Double(n) : 0
        return Estimate(p, standardError: n > 0 ? (p * (1 - p) / Double(n)).squareRoot() : 0)
    }

    /// Whether the two differ by more than `sigmas` standard errors of their difference.
    public func differs(from other: Estimate, sigmas: Double = 2) -> Bool {
        abs(value - other.value) > sigmas * (standardError * standardError + other.standardError * other.standardError).squareRoot()
    }

    public var description: String { String(format: "%.3f ± %.3f", value, standardError) }
    /// As a percentage: "93.1 ± 1.2".
    public var percent: String { String(format: "%.1f ± %.1f", 100 * value, 100 * standardError) }
}

/// The Fréchet distance of `generated` to `real` with a bootstrap standard error (the generated set resampled with
/// replacement `resamples` times, from a fixed seed).
public func frechetDistanceEstimate(real: [[Float]], generated: [[Float]], resamples: Int = 20, seed: UInt64 = 1) -> Estimate {
    let value = frechetDistance(real, generated)
    var rng = Philox(seed: seed, stream: 77)
    var samples: [Double] = []
    for _ in 0..<resamples {
        let u = Tensor.rand([generated.count], using: &rng).toArray()
        samples.append(frechetDistance(real, u.map { generated[min(Int($0 * Float(generated.count)), generated.count - 1)] }))
    }
    let mean = samples.reduce(0, +) / Double(max(samples.count, 1))
    let variance = samples.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(max(samples.count - 1, 1))
    return Estimate(value, standardError: variance.squareRoot())
}
