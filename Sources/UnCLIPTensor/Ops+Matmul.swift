import CDNNL

// Matrix products on oneDNN. `dnnl_sgemm` (row-major, fp32) serves untransposed products and every small one; a
// Linear layer's transposed `[out, in]` weight runs faster on the matmul primitive (brgemm kernels), which also adds
// the bias in the same pass. Measured per shape on this machine; see docs/benchmarks.md. In bf16 inference the
// primitive path takes bf16 operands (fp32 accumulation); the sgemm paths, batched products included, stay fp32. In
// mixed-precision training a large linear layer's two backward products run in bf16 too (`BF16Product`).

/// Row-major single-precision GEMM kernels shared by matmul, linear and attention.
enum GEMM {
    /// C = alpha · op(A) · op(B) + beta · C, all row-major; op transposes when `transA`/`transB` is set.
    ///
    /// Inside a `parallelFor` body oneDNN sees it is already in an OpenMP parallel region and runs on the calling
    /// thread only, so callers may run many small products side by side.
    @inline(__always)
    static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            // oneDNN rejects K = 0; the product of empty matrices is zero.
            for i in 0..<m { let row = c + i * ldc; for j in 0..<n { row[j] = beta == 0 ? 0 : beta * row[j] } }
            return
        }
        let status = dnnl_sgemm(transA ? 84 : 78, transB ? 84 : 78,  // "T" : "N"
                                Int64(m), Int64(n), Int64(k), alpha, a, Int64(lda), b, Int64(ldb), beta, c, Int64(ldc))
        if status != dnnl_success {
            preconditionFailure("swift-unclip: oneDNN sgemm \(m)×\(n)×\(k) (transA \(transA), transB \(transB)) failed: \(DNNLError.explain(status))")
        }
    }

    /// Products below this many flops run one per thread when there is a batch of them; above it each product
    /// uses every thread itself.
    static let smallProductFlops = 8_000_000

    /// op(A) · op(B) over broadcast batch dimensions, as a new tensor `[batch..., M, N]`.
    ///
    /// `a` is `[..., M, K]` (or `[..., K, M]` with `transA`), `b` is `[..., K, N]` (or `[..., N, K]` with `transB`).
    static func batched(_ a: Tensor, transA: Bool = false, _ b: Tensor, transB: Bool = false, opName: String = "matmul") -> Tensor {
        precondition(a.rank >= 2 && b.rank >= 2, "\(opName): operands need rank ≥ 2, got \(a.shape) and \(b.shape)")
        let ar = a.shape[a.rank - 2], ac = a.shape[a.rank - 1]
        let br = b.shape[b.rank - 2], bc = b.shape[b.rank - 1]
        let (m, k) = transA ? (ac, ar) : (ar, ac)
        let (k2, n) = transB ? (bc, br) : (br, bc)
        precondition(k == k2, "\(opName): inner dimensions differ: \(a.shape) × \(b.shape)")
        let batchA = Array(a.shape.dropLast(2)), batchB = Array(b.shape.dropLast(2))
        guard let batch = broadcastShape(batchA, batchB) else {
            preconditionFailure("\(opName): batch dimensions \(batchA) and \(batchB) do not broadcast")
        }
        let out = Tensor(uninitializedShape: batch + [m, n])
        let count = batch.reduce(1, *)
        let pa = a.data, pb = b.data, pc = out.data
        let sizeA = ar * ac, sizeB = br * bc, sizeC = m * n
        if count == 0 || sizeC == 0 { return out }

        // A single right-hand matrix and untransposed, contiguous left matrices: one tall product.
        if batchB.reduce(1, *) == 1 && !transA && batchA.reduce(1, *) == count {
            sgemm(transA: false, transB: transB, m: count * m, n: n, k: k, a: pa, lda: ac, b: pb, ldb: bc, c: pc, ldc: n)
            return out
        }
        let sa = broadcastStrides(batchA, to: batch), sb = broadcastStrides(batchB, to: batch)
        let batchStrides = Tensor.strides(batch)
        func offsets(_ i: Int) -> (Int, Int) {
            var oa = 0, ob = 0
            for d in 0..<batch.count { let idx = (i / batchStrides[d]) % batch[d]; oa += idx * sa[d]; ob += idx * sb[d] }
            return (oa * sizeA, ob * sizeB)
        }
        let one = { (i: Int) in
            let (oa, ob) = offsets(i)
            sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: pa + oa, lda: ac, b: pb + ob, ldb: bc,
                  c: pc + i * sizeC, ldc: n)
        }
        if count > 1 && 2 * m * n * k < smallProductFlops {
            parallelFor(count, grain: 1) { r in for i in r { one(i) } }
        } else {
            for i in 0..<count { one(i) }
        }
        return out
    }
}

/// A cached oneDNN matmul primitive for `[m, k] × [n, k]ᵀ (+ bias [n]) → [m, n]`, all row-major.
///
/// In bf16 the source is converted per call and the weight once into the layout the primitive chose (cached in
/// `WeightCache`); bias, accumulation and result stay fp32.
final class LinearPrimitive {
    let primitive: DNNLPrimitive
    let bias, dst: dnnl_memory_desc_t
    let src, weights: DNNLLayout

    /// Products from this many flops up use the primitive; below it sgemm's lower call overhead wins.
    static let minFlops = 8_000_000

    init(m: Int, n: Int, k: Int, hasBias: Bool, bf16: Bool) throws {
        let what = "matmul [\(m), \(k)] × [\(n), \(k)]ᵀ" + (bf16 ? " (bf16)" : "")
        let plainSrc = try dnnlMemoryDesc([m, k], dnnl_ab)
        let plainWeights = try dnnlMemoryDesc([k, n], dnnl_ba)  // the [n, k] weight read as its transpose
        var src = bf16 ? try dnnlMemoryDesc([m, k], dnnl_ab, dnnl_bf16) : plainSrc
        var weights = bf16 ? try dnnlMemoryDesc([k, n], dnnl_format_tag_any, dnnl_bf16) : plainWeights
        var bias = try dnnlMemoryDesc([1, n], dnnl_ab)
        var dst = try dnnlMemoryDesc([m, n], dnnl_ab)
        var desc = dnnl_matmul_desc_t()
        try dnnlCheck(hasBias ? dnnl_matmul_desc_init(&desc, &src, &weights, &bias, &dst)
                              : dnnl_matmul_desc_init(&desc, &src, &weights, nil, &dst), "matmul_desc_init(\(what))")
        primitive = try DNNLPrimitive(opDesc: &desc, what: what)
        self.src = try DNNLLayout(plain: plainSrc, chosen: primitive.md(dnnl_query_src_md), input: true, what: "src of " + what)
        self.weights = try DNNLLayout(plain: plainWeights, chosen: primitive.md(dnnl_query_weights_md), input: true,
                                      what: "weights of " + what)
        (self.bias, self.dst) = (bias, dst)
    }

    /// out = x · wᵀ (+ bias).
    static func run(m: Int, n: Int, k: Int, x: Tensor, w: Tensor, bias: Tensor?, out: Tensor, bf16: Bool) {
        dnnlMust {
            let p = try DNNL.cache.get(bf16 ? "linear.matmul.bf16" : "linear.matmul", [m, n, k, bias == nil ? 0 : 1]) {
                try LinearPrimitive(m: m, n: n, k: k, hasBias: bias != nil, bf16: bf16)
            }
            let xs = try p.src.input(x, what: "linear")
            let ws = try WeightCache.shared.reordered(w, p.weights, what: "linear")
            var args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)] = [
                (DNNL_ARG_SRC, p.src.chosen, UnsafeMutableRawPointer(xs.data)),
                (DNNL_ARG_WEIGHTS, p.weights.chosen, UnsafeMutableRawPointer(ws.data)),
                (DNNL_ARG_DST, p.dst, UnsafeMutableRawPointer(out.data)),
            ]
            if let bias { args.append((DNNL_ARG_BIAS, p.bias, UnsafeMutableRawPointer(bias.data))) }
            // Reordered copies are held by nothing else: kept alive past the call that reads their pointers.
            try withExtendedLifetime((xs, ws)) { try p.primitive.execute(args, what: "linear") }
        }
    }
}

/// A cached oneDNN matmul primitive for `op(A) · op(B) → C` with bf16 operands converted per call, fp32 accumulation
/// and an fp32 row-major result: the backward products of a linear layer in mixed-precision training.
///
/// `a` is row-major `[m, k]` (or `[k, m]` with `transA`), `b` row-major `[k, n]` (or `[n, k]` with `transB`); each is
/// read through a transposed memory descriptor where asked, so the conversion to bf16 is also the transpose oneDNN
/// prefers.
final class BF16Product {
    let primitive: DNNLPrimitive
    let a, b: DNNLLayout
    let c: dnnl_memory_desc_t

    init(m: Int, n: Int, k: Int, transA: Bool, transB: Bool) throws {
        let what = "bf16 matmul \(m)×\(n)×\(k)\(transA ? " (Aᵀ)" : "")\(transB ? " (Bᵀ)" : "")"
        let plainA = try dnnlMemoryDesc([m, k], transA ? dnnl_ba : dnnl_ab)
        let plainB = try dnnlMemoryDesc([k, n], transB ? dnnl_ba : dnnl_ab)
        var anyA = try dnnlMemoryDesc([m, k], dnnl_format_tag_any, dnnl_bf16)
        var anyB = try dnnlMemoryDesc([k, n], dnnl_format_tag_any, dnnl_bf16)
        var dst = try dnnlMemoryDesc([m, n], dnnl_ab)
        var desc = dnnl_matmul_desc_t()
        try dnnlCheck(dnnl_matmul_desc_init(&desc, &anyA, &anyB, nil, &dst), "matmul_desc_init(\(what))")
        primitive = try DNNLPrimitive(opDesc: &desc, what: what)
        a = try DNNLLayout(plain: plainA, chosen: primitive.md(dnnl_query_src_md), input: true, what: "A of " + what)
        b = try DNNLLayout(plain: plainB, chosen: primitive.md(dnnl_query_weights_md), input: true, what: "B of " + what)
        c = dst
    }

    /// `op(a) · op(b)` as a new `[m, n]` tensor.
    static func run(m: Int, n: Int, k: Int, _ a: Tensor, transA: Bool = false, _ b: Tensor, transB: Bool = false) -> Tensor {
        dnnlMust {
            let p = try DNNL.cache.get("matmul.bf16", [m, n, k, transA ? 1 : 0, transB ? 1 : 0]) {
                try BF16Product(m: m, n: n, k: k, transA: transA, transB: transB)
            }
            let out = Tensor(uninitializedShape: [m, n])
            let pa = try p.a.input(a, what: "bf16 matmul"), pb = try p.b.input(b, what: "bf16 matmul")
            // The converted operands are held by nothing else: kept alive past the call that reads their pointers.
            try withExtendedLifetime((pa, pb)) {
                try p.primitive.execute([(DNNL_ARG_SRC, p.a.chosen, UnsafeMutableRawPointer(pa.data)),
                                         (DNNL_ARG_WEIGHTS, p.b.chosen, UnsafeMutableRawPointer(pb.data)),
                                         (DNNL_ARG_DST, p.c, UnsafeMutableRawPointer(out.data))], what: "bf16 matmul")
            }
            return out
        }
    }
}

extension Tensor {
    /// Matrix product with broadcast batch dimensions: `[..., M, K] × [..., K, N] → [..., M, N]` (torch.matmul for
    /// rank ≥ 2 operands).
    public func matmul(_ other: Tensor) -> Tensor {
        let a = self, b = other
        let out = GEMM.batched(a, b)
        Engine.addFLOPs(2 * out.count * a.shape[a.rank - 1])
        return out.recorded("matmul", [a, b]) { g, _ in
            // dA = g · Bᵀ (in the broadcast batch shape; backward() sums it back to A's shape).
            let ga = a.requiresGrad ? GEMM.batched(g, b, transB: true) : nil
            var gb: Tensor?
            if b.requiresGrad {
                let batchB = b.shape.dropLast(2).reduce(1, *)
                if batchB == 1 && a.rank > 2 && a.shape.dropLast(2).reduce(1, *) == g.shape.dropLast(2).reduce(1, *) {
                    // B shared by every batch: Σ_b A_bᵀ g_b is one product over the stacked rows.
                    let k = a.shape[a.rank - 1], n = g.shape[g.rank - 1]
                    let rows = a.count / k
                    gb = GEMM.batched(a.reshaped([rows, k]), transA: true, g.reshaped([rows, n])).reshaped(b.shape)
                } else {
                    gb = GEMM.batched(a, transA: true, g)
                }
            }
            return [ga, gb]
        }
    }

    /// A fully connected layer: `self · weightᵀ + bias` with PyTorch's `[out, in]` weight (torch.nn.functional.linear).
    ///
    /// `self` is `[..., in]`; the result is `[..., out]`.
    public func linear(weight: Tensor, bias: Tensor?) -> Tensor {
        precondition(weight.rank == 2, "linear: weight must be [out, in], got \(weight.shape)")
        let outF = weight.shape[0], inF = weight.shape[1]
        precondition(rank >= 1 && shape[rank - 1] == inF,
                     "linear: input \(shape) does not end in the weight's in_features \(inF) (weight \(weight.shape))")
        if let bias { precondition(bias.shape == [outF], "linear: bias must be [\(outF)], got \(bias.shape)") }
        let x = self
        let rows = count / Swift.max(inF, 1)
        let out = Tensor(uninitializedShape: Array(shape.dropLast()) + [outF])
        let po = out.data
        Engine.addFLOPs(2 * rows * outF * inF)
        let large = 2 * rows * outF * inF >= LinearPrimitive.minFlops
        let bf16 = large && Precision.bf16Applies(x, weight, bias)
        if large {
            LinearPrimitive.run(m: rows, n: outF, k: inF, x: x, w: weight, bias: bias, out: out, bf16: bf16)
        } else {
            if let bias {
                // Start every row at the bias, then accumulate the product into it (beta = 1).
                let pb = bias.data
                for i in 0..<rows { (po + i * outF).update(from: pb, count: outF) }
            }
            GEMM.sgemm(transA: false, transB: true, m: rows, n: outF, k: inF, a: x.data, lda: inF, b: weight.data, ldb: inF,
                       beta: bias == nil ? 0 : 1, c: po, ldc: outF)
        }
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return out.recorded("linear", inputs) { g, _ in
            var grads: [Tensor?] = []
            if x.requiresGrad {
                // dX = g · W   ([rows, out] × [out, in])
                if bf16 {
                    grads.append(BF16Product.run(m: rows, n: inF, k: outF, g, weight).reshaped(x.shape))
                } else {
                    let gx = Tensor(uninitializedShape: x.shape)
                    GEMM.sgemm(transA: false, transB: false, m: rows, n: inF, k: outF, a: g.data, lda: outF,
                               b: weight.data, ldb: inF, c: gx.data, ldc: inF)
                    grads.append(gx)
                }
            } else { grads.append(nil) }
            if weight.requiresGrad {
                // dW = gᵀ · X   ([out, rows] × [rows, in])
                if bf16 {
                    grads.append(BF16Product.run(m: outF, n: inF, k: rows, g, transA: true, x))
                } else {
                    let gw = Tensor(uninitializedShape: weight.shape)
                    GEMM.sgemm(transA: true, transB: false, m: outF, n: inF, k: rows, a: g.data, lda: outF,
                               b: x.data, ldb: inF, c: gw.data, ldc: inF)
                    grads.append(gw)
                }
            } else { grads.append(nil) }
            if let bias {
                grads.append(bias.requiresGrad ? g.reshaped([rows, outF]).sum(axes: [0]) : nil)
            }
            return grads
        }
    }
}
