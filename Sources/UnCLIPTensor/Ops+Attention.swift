import CDNNL

// Fused scaled dot-product attention: softmax(Q Kᵀ · scale + bias) V without materialising the full score tensor.
//
// Query rows are processed in blocks small enough that a block's scores (rows × Lk) stay in the L2 cache: one sgemm
// makes the scores, oneDNN's softmax primitive normalises them in place (max-subtracted, so large logits are safe),
// and a second sgemm multiplies by V. The backward pass recomputes each block's probabilities the same way instead
// of keeping the B·H·Lq·Lk matrix alive between forward and backward (the flash-attention trade).

/// Row-softmax primitive over a `[rows, cols]` block, applied in place.
final class BlockSoftmax {
    let primitive: DNNLPrimitive
    let md: dnnl_memory_desc_t

    init(rows: Int, cols: Int) throws {
        var md = try dnnlMemoryDesc([rows, cols], dnnl_ab)
        var desc = dnnl_softmax_desc_t()
        try dnnlCheck(dnnl_softmax_forward_desc_init(&desc, dnnl_forward_inference, &md, 1),
                      "softmax_forward_desc_init([\(rows), \(cols)])")
        primitive = try DNNLPrimitive(opDesc: &desc, what: "softmax [\(rows), \(cols)]")
        self.md = md
    }

    static func cached(rows: Int, cols: Int) -> BlockSoftmax {
        dnnlMust { try DNNL.cache.get("softmax.rows", [rows, cols]) { try BlockSoftmax(rows: rows, cols: cols) } }
    }

    /// Replaces each row of `p` (rows × cols, contiguous) by its softmax.
    func run(_ p: UnsafeMutablePointer<Float>) {
        let r = UnsafeMutableRawPointer(p)
        dnnlMust { try primitive.execute([(DNNL_ARG_SRC, md, r), (DNNL_ARG_DST, md, r)], what: "attention softmax") }
    }
}

/// Shapes, pointers and the blocking of one attention problem.
private struct AttentionProblem {
    let q, k, v: UnsafeMutablePointer<Float>
    let bias: UnsafeMutablePointer<Float>?
    /// Number of (batch, head) matrices, query rows, key rows, head width of Q/K and of V.
    let bh, lq, lk, dh, dv: Int
    let scale: Float
    /// Element strides of the bias broadcast to `batch + [Lq, Lk]`: per leading index, per row and per column.
    let biasBatchStrides: [Int], batchShape: [Int], biasRowStride: Int, biasColStride: Int
    /// Query rows per block.
    let blockRows: Int
    var blocks: Int { (lq + blockRows - 1) / blockRows }

    /// Offset of matrix `m`'s bias in the bias tensor.
    func biasOffset(_ m: Int) -> Int {
        var off = 0, rem = m
        for d in stride(from: batchShape.count - 1, through: 0, by: -1) {
            off += (rem % batchShape[d]) * biasBatchStrides[d]; rem /= batchShape[d]
        }
        return off
    }

    /// Writes softmax(scale · Q[m, i0..<i0+rows] Kᵀ + bias) into `p` (rows × Lk).
    func probabilities(_ m: Int, _ i0: Int, _ rows: Int, _ p: UnsafeMutablePointer<Float>) {
        var beta: Float = 0
        if let bias {
            // Preload the bias so that the score GEMM accumulates onto it (beta = 1).
            let base = bias + biasOffset(m) + i0 * biasRowStride
            for i in 0..<rows {
                let src = base + i * biasRowStride, dst = p + i * lk
                if biasColStride == 1 { dst.update(from: src, count: lk) } else { dst.update(repeating: src[0], count: lk) }
            }
            beta = 1
        }
        GEMM.sgemm(transA: false, transB: true, m: rows, n: lk, k: dh, alpha: scale, a: q + (m * lq + i0) * dh, lda: dh,
                   b: k + m * lk * dh, ldb: dh, beta: beta, c: p, ldc: lk)
        BlockSoftmax.cached(rows: rows, cols: lk).run(p)
    }
}

/// Scaled dot-product attention, `softmax(query · keyᵀ · scale + bias) · value`
/// (torch.nn.functional.scaled_dot_product_attention with a float `attn_mask`).
///
/// - Parameters:
///   - query: `[B, H, Lq, dh]` (any number of leading dimensions, equal across the three operands).
///   - key: `[B, H, Lk, dh]`.
///   - value: `[B, H, Lk, dv]`.
///   - bias: additive scores, broadcastable to `[B, H, Lq, Lk]` (e.g. `[B, 1, 1, Lk]` key padding, `[Lq, Lk]` causal).
///   - scale: defaults to `1 / sqrt(dh)`.
/// - Returns: `[B, H, Lq, dv]`.
public func scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, bias: Tensor? = nil,
                                      scale: Float? = nil) -> Tensor {
    let r = query.rank
    precondition(r >= 2 && key.rank == r && value.rank == r,
                 "scaledDotProductAttention: query \(query.shape), key \(key.shape), value \(value.shape) must have equal rank ≥ 2")
    let batch = Array(query.shape.dropLast(2))
    precondition(Array(key.shape.dropLast(2)) == batch && Array(value.shape.dropLast(2)) == batch,
                 "scaledDotProductAttention: leading dimensions differ: query \(query.shape), key \(key.shape), value \(value.shape)")
    let lq = query.shape[r - 2], dh = query.shape[r - 1], lk = key.shape[r - 2], dv = value.shape[r - 1]
    precondition(key.shape[r - 1] == dh, "scaledDotProductAttention: key width \(key.shape[r - 1]) ≠ query width \(dh)")
    precondition(value.shape[r - 2] == lk, "scaledDotProductAttention: value has \(value.shape[r - 2]) rows, key has \(lk)")
    let scoreShape = batch + [lq, lk]
    Engine.addFLOPs(2 * batch.reduce(1, *) * lq * lk * (dh + dv))
    if let bias {
        precondition(bias.rank <= scoreShape.count && broadcastShape(bias.shape, scoreShape) == scoreShape,
                     "scaledDotProductAttention: bias \(bias.shape) does not broadcast to scores \(scoreShape)")
    }
    let bs = bias.map { broadcastStrides($0.shape, to: scoreShape) } ?? [Int](repeating: 0, count: scoreShape.count)
    // Keep a block's scores within ~512 KiB (half of a Zen 4 core's L2).
    let blockRows = max(1, min(lq, 128, 131_072 / max(lk, 1)))
    let prob = AttentionProblem(
        q: query.data, k: key.data, v: value.data, bias: bias?.data, bh: batch.reduce(1, *), lq: lq, lk: lk, dh: dh, dv: dv,
        scale: scale ?? 1 / Float(dh).squareRoot(), biasBatchStrides: Array(bs.dropLast(2)), batchShape: batch,
        biasRowStride: bs[r - 2], biasColStride: bs[r - 1], blockRows: blockRows)

    let out = Tensor(uninitializedShape: batch + [lq, dv])
    let po = out.data
    if out.count > 0 {
        let tasks = prob.bh * prob.blocks
        parallelFor(tasks, grain: 1) { range in
            let scratch = Tensor(uninitializedShape: [blockRows * lk])
            for t in range {
                let m = t / prob.blocks, i0 = (t % prob.blocks) * blockRows, rows = min(blockRows, lq - i0)
                prob.probabilities(m, i0, rows, scratch.data)
                GEMM.sgemm(transA: false, transB: false, m: rows, n: dv, k: lk, a: scratch.data, lda: lk,
                           b: prob.v + m * lk * dv, ldb: dv, c: po + (m * lq + i0) * dv, ldc: dv)
            }
        }
    }

    let inputs = [query, key, value] + (bias.map { [$0] } ?? [])
    return out.recorded("scaledDotProductAttention", inputs) { g, out in
        let needQ = query.requiresGrad, needK = key.requiresGrad, needV = value.requiresGrad
        let needBias = bias?.requiresGrad ?? false
        let gq = needQ ? Tensor(uninitializedShape: query.shape) : nil
        let gk = needK ? Tensor.zeros(key.shape) : nil
        let gv = needV ? Tensor.zeros(value.shape) : nil
        // The bias gradient is dS itself, in the broadcast score shape; backward() sums it to the bias's shape.
        let gbias = needBias ? Tensor(uninitializedShape: scoreShape) : nil
        let pg = g.data, pout = out.data
        let scale = prob.scale
        parallelFor(prob.bh, grain: 1) { range in
            let p = Tensor(uninitializedShape: [blockRows * lk]), ds = Tensor(uninitializedShape: [blockRows * lk])
            let rowDot = Tensor(uninitializedShape: [blockRows])
            for m in range {
                for blk in 0..<prob.blocks {
                    let i0 = blk * blockRows, rows = min(blockRows, lq - i0)
                    let pp = p.data, pds = ds.data, pd = rowDot.data
                    let gBlock = pg + (m * lq + i0) * dv, oBlock = pout + (m * lq + i0) * dv
                    prob.probabilities(m, i0, rows, pp)
                    // dV += Pᵀ · dO
                    if let gv {
                        GEMM.sgemm(transA: true, transB: false, m: lk, n: dv, k: rows, a: pp, lda: lk, b: gBlock, ldb: dv,
                                   beta: 1, c: gv.data + m * lk * dv, ldc: dv)
                    }
                    if !(needQ || needK || needBias) { continue }
                    // dP = dO · Vᵀ, then the softmax backward dS = P ⊙ (dP − rowsum(dO ⊙ O)).
                    GEMM.sgemm(transA: false, transB: true, m: rows, n: lk, k: dv, a: gBlock, lda: dv,
                               b: prob.v + m * lk * dv, ldb: dv, c: pds, ldc: lk)
                    for i in 0..<rows {
                        var s: Float = 0
                        let gr = gBlock + i * dv, orow = oBlock + i * dv
                        for j in 0..<dv { s += gr[j] * orow[j] }
                        pd[i] = s
                    }
                    for i in 0..<rows {
                        let prow = pp + i * lk, drow = pds + i * lk, d = pd[i]
                        for j in 0..<lk { drow[j] = prow[j] * (drow[j] - d) }
                    }
                    if let gbias { (gbias.data + (m * lq + i0) * lk).update(from: pds, count: rows * lk) }
                    // dQ = scale · dS · K;  dK += scale · dSᵀ · Q
                    if let gq {
                        GEMM.sgemm(transA: false, transB: false, m: rows, n: dh, k: lk, alpha: scale, a: pds, lda: lk,
                                   b: prob.k + m * lk * dh, ldb: dh, c: gq.data + (m * lq + i0) * dh, ldc: dh)
                    }
                    if let gk {
                        GEMM.sgemm(transA: true, transB: false, m: lk, n: dh, k: rows, alpha: scale, a: pds, lda: lk,
                                   b: prob.q + (m * lq + i0) * dh, ldb: dh, beta: 1, c: gk.data + m * lk * dh, ldc: dh)
                    }
                }
            }
        }
        return [gq, gk, gv] + (bias == nil ? [] : [gbias])
    }
}
