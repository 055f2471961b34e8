/// Cosine similarity of row `i` of `a` and row `j` of `b` (both [N, D]), accumulated in Double.
///
/// The one helper for comparing CLIP embeddings: zero-shot classification, CLIP scores and the embedding probes.
public func cosineSimilarity(_ a: Tensor, row i: Int, _ b: Tensor, row j: Int) -> Double {
    precondition(a.rank == 2 && b.rank == 2 && a.shape[1] == b.shape[1], "cosineSimilarity: rows of \(a.shape) and \(b.shape)")
    precondition(i >= 0 && i < a.shape[0] && j >= 0 && j < b.shape[0], "cosineSimilarity: rows \(i), \(j) of \(a.shape), \(b.shape)")
    let d = a.shape[1]
    let x = a.data + i * d, y = b.data + j * d
    var dot = 0.0, na = 0.0, nb = 0.0
    for k in 0..<d {
        let u = Double(x[k]), v = Double(y[k])
        dot += u * v; na += u * u; nb += v * v
    }
    return dot / max((na * nb).squareRoot(), 1e-12)
}
