import UnCLIPNN

/// The autoregressive prior's discrete code for a CLIP image embedding (paper §2.1): PCA to the leading principal
/// components, then each coordinate quantised into `buckets` equal bins over its range in the training set.
///
/// The paper keeps 319 of 1024 dimensions (the ones holding all but a sliver of the variance) and 1024 buckets; the
/// fit keeps the fewest components that hold `varianceKept` of the variance, in order of eigenvalue, so the sequence
/// predicts the most informative coordinates first.
public struct EmbeddingQuantizer: Equatable, Sendable {
    /// Training-set mean [E] and the kept principal axes, rows [K][E], unit length, largest eigenvalue first.
    public var mean: [Float]
    public var components: [[Float]]
    /// Each kept coordinate's range [low, high] in the training set: bucket i covers low + [i, i+1)·(high − low)/N.
    public var low: [Float]
    public var high: [Float]
    public var buckets: Int

    public init(mean: [Float], components: [[Float]], low: [Float], high: [Float], buckets: Int) {
        precondition(!components.isEmpty && components.allSatisfy { $0.count == mean.count }, "EmbeddingQuantizer: components must be [K][\(mean.count)]")
        precondition(low.count == components.count && high.count == components.count, "EmbeddingQuantizer: one range per component")
        precondition(buckets >= 2, "EmbeddingQuantizer: at least 2 buckets")
        self.mean = mean
        self.components = components
        self.low = low
        self.high = high
        self.buckets = buckets
    }

    public var dimension: Int { mean.count }
    public var count: Int { components.count }

    /// The PCA fit to `embeddings` (rows of length E): the fewest components holding `varianceKept` of the total
    /// variance, each coordinate's range widened by half a bucket on each side so the extremes fall inside.
    /// Also returns the fraction of the variance kept.
    public static func fit(_ embeddings: [[Float]], varianceKept: Double, buckets: Int) -> (EmbeddingQuantizer, explained: Double) {
        precondition(embeddings.count >= 2, "EmbeddingQuantizer.fit: at least two embeddings")
        precondition(varianceKept > 0 && varianceKept <= 1, "EmbeddingQuantizer.fit: varianceKept in (0, 1]")
        let e = embeddings[0].count, n = Double(embeddings.count)
        var mean = [Double](repeating: 0, count: e)
        for row in embeddings { for k in 0..<e { mean[k] += Double(row[k]) } }
        for k in 0..<e { mean[k] /= n }
        var cov = [Double](repeating: 0, count: e * e)
        for row in embeddings {
            let d = (0..<e).map { Double(row[$0]) - mean[$0] }
            for i in 0..<e where d[i] != 0 { let di = d[i]; for j in i..<e { cov[i * e + j] += di * d[j] } }
        }
        for i in 0..<e { for j in i..<e { cov[i * e + j] /= n - 1; cov[j * e + i] = cov[i * e + j] } }
        let eigen = SymmetricEigen(cov, n: e)
        let total = eigen.values.reduce(0) { $0 + max($1, 0) }
        var kept = 0, acc = 0.0
        while kept < e && (kept == 0 || acc < varianceKept * total) { acc += max(eigen.values[kept], 0); kept += 1 }
        let axes = eigen.vectors.prefix(kept).map { $0.map(Float.init) }
        var q = EmbeddingQuantizer(mean: mean.map(Float.init), components: Array(axes),
                                   low: Array(repeating: 0, count: kept), high: Array(repeating: 1, count: kept), buckets: buckets)
        let coords = embeddings.map(q.project)
        for k in 0..<kept {
            let lo = coords.map { $0[k] }.min()!, hi = coords.map { $0[k] }.max()!
            let pad = max(hi - lo, 1e-6) / Float(2 * buckets)
            q.low[k] = lo - pad
            q.high[k] = hi + pad
        }
        return (q, total > 0 ? acc / total : 1)
    }

    /// PCA coordinates [K] of an embedding [E].
    public func project(_ z: [Float]) -> [Float] {
        components.map { axis in zip(axis, zip(z, mean)).reduce(Float(0)) { $0 + $1.0 * ($1.1.0 - $1.1.1) } }
    }

    /// The embedding [E] at PCA coordinates [K] (the discarded components at the mean).
    public func reconstruct(_ coords: [Float]) -> [Float] {
        var z = mean
        for (c, axis) in zip(coords, components) { for j in 0..<z.count { z[j] += c * axis[j] } }
        return z
    }

    /// The bucket of coordinate k's value x, clamped into 0 ..< buckets.
    public func bucket(_ x: Float, component k: Int) -> Int {
        Self.bucket(x, low: low[k], high: high[k], buckets: buckets)
    }

    /// The centre of bucket i of coordinate k.
    public func value(_ i: Int, component k: Int) -> Float { Self.value(i, low: low[k], high: high[k], buckets: buckets) }

    /// An embedding [E] → its token sequence [K].
    public func encode(_ z: [Float]) -> [Int] { project(z).enumerated().map { bucket($0.element, component: $0.offset) } }

    /// A token sequence [K] → the embedding [E] at its buckets' centres.
    public func decode(_ tokens: [Int]) -> [Float] { reconstruct(tokens.enumerated().map { value($0.element, component: $0.offset) }) }

    static func bucket(_ x: Float, low: Float, high: Float, buckets: Int) -> Int {
        let i = ((x - low) / (high - low) * Float(buckets)).rounded(.down)
        return i.isNaN ? 0 : Int(min(max(i, 0), Float(buckets - 1)))
    }

    static func value(_ i: Int, low: Float, high: Float, buckets: Int) -> Float {
        low + (Float(i) + 0.5) * (high - low) / Float(buckets)
    }
}
