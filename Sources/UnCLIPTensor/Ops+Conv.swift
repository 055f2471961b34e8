import CDNNL
import Synchronization

// 2-D convolution on oneDNN's direct convolution primitives (forward, backward data, backward weights).
//
// Tensors stay NCHW / OIHW (PyTorch layout). oneDNN runs fastest on its blocked layouts (nChw16c activations,
// OIhw16i16o-style weights), so each call reorders inputs into the layout the implementation chose and the output
// back; the reorders cost a few percent of the convolution (measured in docs/benchmarks.md), and this is also
// what PyTorch does on CPU.

/// The geometry of one convolution problem; the primitive cache key.
struct ConvGeometry {
    let n, c, h, w, o, kh, kw, stride, padding: Int
    let hasBias: Bool
    var oh: Int { (h + 2 * padding - kh) / stride + 1 }
    var ow: Int { (w + 2 * padding - kw) / stride + 1 }
    var key: [Int] { [n, c, h, w, o, kh, kw, stride, padding, hasBias ? 1 : 0] }
    var srcDims: [Int] { [n, c, h, w] }
    var weightDims: [Int] { [o, c, kh, kw] }
    var dstDims: [Int] { [n, o, oh, ow] }
    var describe: String { "conv2d \(srcDims) * \(weightDims) stride \(stride) padding \(padding)" }

    /// Strides and padding (left = right) as oneDNN dims.
    var strides: [Int64] { dnnlDims([stride, stride]) }
    var pads: [Int64] { dnnlDims([padding, padding]) }
}

/// Forward primitive with the layouts it chose.
final class ConvForward {
    let primitive: DNNLPrimitive
    let src, weights, dst: DNNLLayout
    let biasMD: dnnl_memory_desc_t

    init(_ g: ConvGeometry) throws {
        var srcAny = try dnnlMemoryDesc(g.srcDims, dnnl_format_tag_any)
        var wAny = try dnnlMemoryDesc(g.weightDims, dnnl_format_tag_any)
        var dstAny = try dnnlMemoryDesc(g.dstDims, dnnl_format_tag_any)
        var bias = try dnnlMemoryDesc([g.o], dnnl_x)
        var desc = dnnl_convolution_desc_t()
        let status = g.hasBias
            ? dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct,
                                                 &srcAny, &wAny, &bias, &dstAny, g.strides, g.pads, g.pads)
            : dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_direct,
                                                 &srcAny, &wAny, nil, &dstAny, g.strides, g.pads, g.pads)
        try dnnlCheck(status, "convolution_forward_desc_init(\(g.describe))")
        primitive = try DNNLPrimitive(opDesc: &desc, what: g.describe)
        biasMD = bias
        src = try DNNLLayout(plain: dnnlMemoryDesc(g.srcDims, dnnl_nchw), chosen: primitive.md(dnnl_query_src_md),
                             input: true, what: "src of \(g.describe)")
        weights = try DNNLLayout(plain: dnnlMemoryDesc(g.weightDims, dnnl_oihw), chosen: primitive.md(dnnl_query_weights_md),
                                 input: true, what: "weights of \(g.describe)")
        dst = try DNNLLayout(plain: dnnlMemoryDesc(g.dstDims, dnnl_nchw), chosen: primitive.md(dnnl_query_dst_md),
                             input: false, what: "dst of \(g.describe)")
    }

    static func cached(_ g: ConvGeometry) throws -> ConvForward {
        try DNNL.cache.get("conv2d.fwd", g.key) { try ConvForward(g) }
    }
}

/// Backward-data primitive (gradient with respect to the input).
final class ConvBackwardData {
    let primitive: DNNLPrimitive
    let diffDst, weights, diffSrc: DNNLLayout

    init(_ g: ConvGeometry, hint: ConvForward) throws {
        var srcAny = try dnnlMemoryDesc(g.srcDims, dnnl_format_tag_any)
        var wAny = try dnnlMemoryDesc(g.weightDims, dnnl_format_tag_any)
        var dstAny = try dnnlMemoryDesc(g.dstDims, dnnl_format_tag_any)
        var desc = dnnl_convolution_desc_t()
        try dnnlCheck(dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &srcAny, &wAny, &dstAny,
                                                               g.strides, g.pads, g.pads),
                      "convolution_backward_data_desc_init(\(g.describe))")
        primitive = try DNNLPrimitive(opDesc: &desc, hint: hint.primitive, what: "backward data of \(g.describe)")
        diffDst = try DNNLLayout(plain: dnnlMemoryDesc(g.dstDims, dnnl_nchw), chosen: primitive.md(dnnl_query_diff_dst_md),
                                 input: true, what: "diff_dst of \(g.describe)")
        weights = try DNNLLayout(plain: dnnlMemoryDesc(g.weightDims, dnnl_oihw), chosen: primitive.md(dnnl_query_weights_md),
                                 input: true, what: "weights (backward data) of \(g.describe)")
        diffSrc = try DNNLLayout(plain: dnnlMemoryDesc(g.srcDims, dnnl_nchw), chosen: primitive.md(dnnl_query_diff_src_md),
                                 input: false, what: "diff_src of \(g.describe)")
    }

    static func cached(_ g: ConvGeometry) throws -> ConvBackwardData {
        try DNNL.cache.get("conv2d.bwd_data", g.key) { try ConvBackwardData(g, hint: ConvForward.cached(g)) }
    }
}

/// Backward-weights primitive (gradients with respect to the weight and, when asked, the bias).
final class ConvBackwardWeights {
    let primitive: DNNLPrimitive
    let src, diffDst, diffWeights: DNNLLayout
    let biasMD: dnnl_memory_desc_t
    /// Whether the primitive also produces the bias gradient.
    let biasGrad: Bool

    init(_ g: ConvGeometry, biasGrad: Bool, hint: ConvForward) throws {
        var srcAny = try dnnlMemoryDesc(g.srcDims, dnnl_format_tag_any)
        var wAny = try dnnlMemoryDesc(g.weightDims, dnnl_format_tag_any)
        var dstAny = try dnnlMemoryDesc(g.dstDims, dnnl_format_tag_any)
        var bias = try dnnlMemoryDesc([g.o], dnnl_x)
        var desc = dnnl_convolution_desc_t()
        self.biasGrad = biasGrad
        let status = biasGrad
            ? dnnl_convolution_backward_weights_desc_init(&desc, dnnl_convolution_direct, &srcAny, &wAny, &bias, &dstAny,
                                                          g.strides, g.pads, g.pads)
            : dnnl_convolution_backward_weights_desc_init(&desc, dnnl_convolution_direct, &srcAny, &wAny, nil, &dstAny,
                                                          g.strides, g.pads, g.pads)
        try dnnlCheck(status, "convolution_backward_weights_desc_init(\(g.describe))")
        primitive = try DNNLPrimitive(opDesc: &desc, hint: hint.primitive, what: "backward weights of \(g.describe)")
        biasMD = bias
        src = try DNNLLayout(plain: dnnlMemoryDesc(g.srcDims, dnnl_nchw), chosen: primitive.md(dnnl_query_src_md),
                             input: true, what: "src (backward weights) of \(g.describe)")
        diffDst = try DNNLLayout(plain: dnnlMemoryDesc(g.dstDims, dnnl_nchw), chosen: primitive.md(dnnl_query_diff_dst_md),
                                 input: true, what: "diff_dst (backward weights) of \(g.describe)")
        diffWeights = try DNNLLayout(plain: dnnlMemoryDesc(g.weightDims, dnnl_oihw), chosen: primitive.md(dnnl_query_diff_weights_md),
                                     input: false, what: "diff_weights of \(g.describe)")
    }

    static func cached(_ g: ConvGeometry, biasGrad: Bool) throws -> ConvBackwardWeights {
        try DNNL.cache.get("conv2d.bwd_weights", g.key + [biasGrad ? 1 : 0]) {
            try ConvBackwardWeights(g, biasGrad: biasGrad, hint: ConvForward.cached(g))
        }
    }
}

/// Convolution weights already reordered into oneDNN's blocked layout, kept between inference calls.
///
/// Reordering a large weight costs a sizeable fraction of a low-resolution convolution (docs/benchmarks.md, "Caching
/// reordered convolution weights", has the figures). A weight is reused only while (a) its storage object is the same
/// (a weak reference, so a freed and re-allocated block never matches), and (b) a checksum over every element still
/// matches, which catches in-place writes (optimizer steps, EMA updates, `copyValues`) at the cost of one read pass.
/// Weights being differentiated in a recorded graph are never cached, and small weights (under `minElements`) are
/// reordered each time because that is cheaper than the bookkeeping.
///
/// The limit holds every convolution weight of one Karlo U-Net: with a smaller one the least-recently-used policy
/// misses on every call of a U-Net step, which then pays the checksum, the reorder and a fresh allocation for each
/// large weight. Entries of weights that were freed are dropped before each new reorder is allocated, so a pipeline
/// that releases one stage's model before the next does not hold two models' reorders.
final class ConvWeightCache: @unchecked Sendable {
    static let shared = ConvWeightCache()
    /// Weights with fewer elements are reordered every call.
    static let minElements = 1 << 16
    /// Most bytes of reordered weights kept (least recently used go first).
    static let limitBytes = 3 << 30

    private struct Key: Hashable {
        let storage: ObjectIdentifier, offset: Int, layout: ObjectIdentifier
    }
    /// Only touched under the cache's lock; the reordered tensor is never written after it is made.
    private struct Entry: @unchecked Sendable {
        weak var storage: TensorStorage?
        /// Held strongly so that its ObjectIdentifier in the key cannot be reused by another layout.
        let layout: DNNLLayout
        let checksum: UInt64
        let reordered: Tensor
        var lastUse: Int
    }
    private struct State {
        var entries: [Key: Entry] = [:]
        var bytes = 0
        var clock = 0
    }
    private let state = Mutex(State())

    /// Number of weights held.
    var count: Int { state.withLock { $0.entries.count } }

    /// Releases every cached weight.
    func removeAll() { state.withLock { $0 = State() } }

    /// `weight` in `layout`'s chosen format, from the cache when still valid.
    func reordered(_ weight: Tensor, _ layout: DNNLLayout, what: String) throws -> Tensor {
        guard layout.toChosen != nil, weight.count >= ConvWeightCache.minElements,
              !(GradMode.isEnabled && weight.requiresGrad) else {
            return try layout.input(weight, what: what)
        }
        let key = Key(storage: ObjectIdentifier(weight.storage), offset: weight.offset, layout: ObjectIdentifier(layout))
        let sum = ConvWeightCache.checksum(weight)
        let hit = state.withLock { s -> Tensor? in
            guard var e = s.entries[key] else { return nil }
            guard e.storage === weight.storage, e.layout === layout, e.checksum == sum else {
                s.bytes -= e.reordered.count * 4
                s.entries[key] = nil
                return nil
            }
            s.clock += 1
            e.lastUse = s.clock
            s.entries[key] = e
            return e.reordered
        }
        if let hit { return hit }
        // Drop entries whose storage is gone before allocating, so their memory can serve this reorder.
        state.withLock { s in
            for (k, e) in s.entries where e.storage == nil { s.bytes -= e.reordered.count * 4; s.entries[k] = nil }
        }
        let fresh = try layout.input(weight, what: what)
        state.withLock { s in
            s.clock += 1
            s.entries[key] = Entry(storage: weight.storage, layout: layout, checksum: sum, reordered: fresh, lastUse: s.clock)
            s.bytes += fresh.count * 4
            // Then the least recently used until under the limit.
            while s.bytes > ConvWeightCache.limitBytes, let oldest = s.entries.min(by: { $0.value.lastUse < $1.value.lastUse }) {
                s.bytes -= oldest.value.reordered.count * 4
                s.entries[oldest.key] = nil
            }
        }
        return fresh
    }

    /// A position-sensitive checksum of every element's bits (Fletcher-style sums per SIMD lane, per fixed block,
    /// folded in block order so the result does not depend on the thread count).
    static func checksum(_ t: Tensor) -> UInt64 {
        let block = 1 << 16
        let blocks = (t.count + block - 1) / block
        var sums = [UInt64](repeating: 0, count: blocks)
        let p = UnsafeRawPointer(t.data), n = t.count
        sums.withUnsafeMutableBufferPointer { out in
            let o = out.baseAddress!
            parallelFor(blocks, grain: 16) { r in
                for b in r {
                    let lo = b * block, hi = Swift.min(n, lo + block)
                    var s1 = SIMD16<UInt32>(repeating: 0), s2 = SIMD16<UInt32>(repeating: 0)
                    var i = lo
                    while i + 16 <= hi {
                        s1 &+= p.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<UInt32>.self)
                        s2 &+= s1
                        i += 16
                    }
                    var tail: UInt64 = 0
                    while i < hi { tail = tail &* 31 &+ UInt64(p.load(fromByteOffset: i * 4, as: UInt32.self)); i += 1 }
                    var h: UInt64 = tail
                    for l in 0..<16 { h = (h &* 0x100000001B3) ^ (UInt64(s1[l]) << 32 | UInt64(s2[l])) }
                    o[b] = h
                }
            }
        }
        return sums.reduce(UInt64(n)) { ($0 &* 0x9E3779B97F4A7C15) ^ $1 }
    }
}

@inline(__always) private func raw(_ t: Tensor) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(t.data) }

extension Tensor {
    /// 2-D convolution of an NCHW input with an OIHW weight (torch.nn.functional.conv2d, groups 1, dilation 1).
    ///
    /// `stride` and `padding` (zeros, both sides) apply to height and width alike; the result is
    /// `[N, O, (H + 2p − kH) / s + 1, (W + 2p − kW) / s + 1]`.
    public func conv2d(weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0) -> Tensor {
        precondition(rank == 4, "conv2d: input must be [N, C, H, W], got \(shape)")
        precondition(weight.rank == 4, "conv2d: weight must be [O, C, kH, kW], got \(weight.shape)")
        precondition(weight.shape[1] == shape[1],
                     "conv2d: input has \(shape[1]) channels but weight \(weight.shape) expects \(weight.shape[1])")
        precondition(stride >= 1 && padding >= 0, "conv2d: stride \(stride) must be ≥ 1 and padding \(padding) ≥ 0")
        if let bias { precondition(bias.shape == [weight.shape[0]], "conv2d: bias must be [\(weight.shape[0])], got \(bias.shape)") }
        let geo = ConvGeometry(n: shape[0], c: shape[1], h: shape[2], w: shape[3], o: weight.shape[0],
                               kh: weight.shape[2], kw: weight.shape[3], stride: stride, padding: padding, hasBias: bias != nil)
        precondition(shape[2] + 2 * padding >= geo.kh && shape[3] + 2 * padding >= geo.kw,
                     "conv2d: kernel \(geo.kh)×\(geo.kw) larger than padded input \(shape[2])×\(shape[3]) (padding \(padding))")
        let x = self
        let out = Tensor(uninitializedShape: geo.dstDims)
        dnnlMust {
            let fwd = try ConvForward.cached(geo)
            let what = geo.describe
            let xs = try fwd.src.input(x, what: what)
            let ws = try ConvWeightCache.shared.reordered(weight, fwd.weights, what: what)
            let ys = fwd.dst.outputBuffer(out)
            var args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)] = [
                (DNNL_ARG_SRC, fwd.src.chosen, raw(xs)), (DNNL_ARG_WEIGHTS, fwd.weights.chosen, raw(ws)),
                (DNNL_ARG_DST, fwd.dst.chosen, raw(ys)),
            ]
            if let bias { args.append((DNNL_ARG_BIAS, fwd.biasMD, raw(bias))) }
            try fwd.primitive.execute(args, what: what)
            try fwd.dst.finish(ys, into: out, what: what)
        }
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return out.recorded("conv2d", inputs) { g, _ in
            dnnlMust {
                let what = geo.describe
                var gx: Tensor?, gw: Tensor?, gb: Tensor?
                // The upstream gradient reordered for backward data, reused by backward weights when layouts agree.
                var reorderedG: (dnnl_memory_desc_t, Tensor)?
                if x.requiresGrad {
                    let bd = try ConvBackwardData.cached(geo)
                    let result = Tensor(uninitializedShape: x.shape)
                    let gs = try bd.diffDst.input(g, what: what)
                    reorderedG = (bd.diffDst.chosen, gs)
                    // Not through ConvWeightCache: backward runs in training, where the weight changes every step.
                    let ws = try bd.weights.input(weight, what: what)
                    let buf = bd.diffSrc.outputBuffer(result)
                    try bd.primitive.execute([(DNNL_ARG_DIFF_DST, bd.diffDst.chosen, raw(gs)),
                                              (DNNL_ARG_WEIGHTS, bd.weights.chosen, raw(ws)),
                                              (DNNL_ARG_DIFF_SRC, bd.diffSrc.chosen, raw(buf))], what: "backward data of " + what)
                    try bd.diffSrc.finish(buf, into: result, what: what)
                    gx = result
                }
                let needBias = bias?.requiresGrad ?? false
                if weight.requiresGrad || needBias {
                    // The bias gradient (a sum over N, H, W) rides along with the weight gradient when needed.
                    let bw = try ConvBackwardWeights.cached(geo, biasGrad: needBias)
                    let resultW = Tensor(uninitializedShape: weight.shape)
                    let xs = try bw.src.input(x, what: what)
                    let gs: Tensor
                    if let (md, t) = reorderedG, bw.diffDst.chooses(md) {
                        gs = t
                    } else {
                        gs = try bw.diffDst.input(g, what: what)
                    }
                    let buf = bw.diffWeights.outputBuffer(resultW)
                    var args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)] = [
                        (DNNL_ARG_SRC, bw.src.chosen, raw(xs)), (DNNL_ARG_DIFF_DST, bw.diffDst.chosen, raw(gs)),
                        (DNNL_ARG_DIFF_WEIGHTS, bw.diffWeights.chosen, raw(buf)),
                    ]
                    if needBias {
                        let resultB = Tensor(uninitializedShape: [geo.o])
                        args.append((DNNL_ARG_DIFF_BIAS, bw.biasMD, raw(resultB)))
                        gb = resultB
                    }
                    try bw.primitive.execute(args, what: "backward weights of " + what)
                    try bw.diffWeights.finish(buf, into: resultW, what: what)
                    gw = weight.requiresGrad ? resultW : nil
                }
                return bias == nil ? [gx, gw] : [gx, gw, gb]
            }
        }
    }
}
