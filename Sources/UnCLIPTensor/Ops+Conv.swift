import CDNNL

// 2-D convolution on oneDNN's direct convolution primitives (forward, backward data, backward weights).
//
// Tensors stay NCHW / OIHW (PyTorch layout). oneDNN runs fastest on its blocked layouts (nChw16c activations,
// OIhw16i16o-style weights), so each call reorders inputs into the layout the implementation chose and the output
// back; the reorders cost a few percent of the convolution (measured in docs/benchmarks.md), and this is also
// what PyTorch does on CPU. In bf16 inference (`Precision.bf16`) the same reorders convert the source and the weight
// to bf16; the weight's bf16 copy is cached (`WeightCache`), the result is fp32. In mixed-precision training
// (`withPrecision(.bf16, differentiating: true)`) the backward primitives take bf16 operands as well (the upstream
// gradient, the weight, the saved input) and write fp32 gradients.

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
///
/// In bf16 the source and weights are bf16 (the reorders into the chosen layouts convert them), the bias and the
/// destination fp32: oneDNN accumulates in fp32, so only the operands are rounded. fp32 is always built for training
/// (bit-identical to before bf16 existed); bf16 for inference unless `training` (the backward primitives' hint).
final class ConvForward {
    let primitive: DNNLPrimitive
    let src, weights, dst: DNNLLayout
    let biasMD: dnnl_memory_desc_t

    init(_ g: ConvGeometry, bf16: Bool = false, training: Bool = false) throws {
        let operand = bf16 ? dnnl_bf16 : dnnl_f32
        var srcAny = try dnnlMemoryDesc(g.srcDims, dnnl_format_tag_any, operand)
        var wAny = try dnnlMemoryDesc(g.weightDims, dnnl_format_tag_any, operand)
        var dstAny = try dnnlMemoryDesc(g.dstDims, dnnl_format_tag_any)
        var bias = try dnnlMemoryDesc([g.o], dnnl_x)
        var desc = dnnl_convolution_desc_t()
        let kind = bf16 && !training ? dnnl_forward_inference : dnnl_forward_training
        let status = g.hasBias
            ? dnnl_convolution_forward_desc_init(&desc, kind, dnnl_convolution_direct,
                                                 &srcAny, &wAny, &bias, &dstAny, g.strides, g.pads, g.pads)
            : dnnl_convolution_forward_desc_init(&desc, kind, dnnl_convolution_direct,
                                                 &srcAny, &wAny, nil, &dstAny, g.strides, g.pads, g.pads)
        try dnnlCheck(status, "convolution_forward_desc_init(\(g.describe)\(bf16 ? ", bf16" : ""))")
        primitive = try DNNLPrimitive(opDesc: &desc, what: g.describe + (bf16 ? " (bf16)" : ""))
        biasMD = bias
        src = try DNNLLayout(plain: dnnlMemoryDesc(g.srcDims, dnnl_nchw), chosen: primitive.md(dnnl_query_src_md),
                             input: true, what: "src of \(g.describe)")
        weights = try DNNLLayout(plain: dnnlMemoryDesc(g.weightDims, dnnl_oihw), chosen: primitive.md(dnnl_query_weights_md),
                                 input: true, what: "weights of \(g.describe)")
        dst = try DNNLLayout(plain: dnnlMemoryDesc(g.dstDims, dnnl_nchw), chosen: primitive.md(dnnl_query_dst_md),
                             input: false, what: "dst of \(g.describe)")
    }

    static func cached(_ g: ConvGeometry, bf16: Bool = false, training: Bool = false) throws -> ConvForward {
        let kind = !bf16 ? "conv2d.fwd" : training ? "conv2d.fwd.bf16.training" : "conv2d.fwd.bf16"
        return try DNNL.cache.get(kind, g.key) { try ConvForward(g, bf16: bf16, training: training) }
    }
}

/// Backward-data primitive (gradient with respect to the input). In bf16 the upstream gradient and the weight are
/// bf16, the input gradient fp32.
final class ConvBackwardData {
    let primitive: DNNLPrimitive
    let diffDst, weights, diffSrc: DNNLLayout

    init(_ g: ConvGeometry, bf16: Bool, hint: ConvForward) throws {
        let operand = bf16 ? dnnl_bf16 : dnnl_f32
        var srcAny = try dnnlMemoryDesc(g.srcDims, dnnl_format_tag_any)
        var wAny = try dnnlMemoryDesc(g.weightDims, dnnl_format_tag_any, operand)
        var dstAny = try dnnlMemoryDesc(g.dstDims, dnnl_format_tag_any, operand)
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

    static func cached(_ g: ConvGeometry, bf16: Bool = false) throws -> ConvBackwardData {
        try DNNL.cache.get(bf16 ? "conv2d.bwd_data.bf16" : "conv2d.bwd_data", g.key) {
            try ConvBackwardData(g, bf16: bf16, hint: ConvForward.cached(g, bf16: bf16, training: true))
        }
    }
}

/// Backward-weights primitive (gradients with respect to the weight and, when asked, the bias). In bf16 the input
/// and the upstream gradient are bf16, the weight and bias gradients fp32.
final class ConvBackwardWeights {
    let primitive: DNNLPrimitive
    let src, diffDst, diffWeights: DNNLLayout
    let biasMD: dnnl_memory_desc_t
    /// Whether the primitive also produces the bias gradient.
    let biasGrad: Bool

    init(_ g: ConvGeometry, biasGrad: Bool, bf16: Bool, hint: ConvForward) throws {
        let operand = bf16 ? dnnl_bf16 : dnnl_f32
        var srcAny = try dnnlMemoryDesc(g.srcDims, dnnl_format_tag_any, operand)
        var wAny = try dnnlMemoryDesc(g.weightDims, dnnl_format_tag_any)
        var dstAny = try dnnlMemoryDesc(g.dstDims, dnnl_format_tag_any, operand)
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

    static func cached(_ g: ConvGeometry, biasGrad: Bool, bf16: Bool = false) throws -> ConvBackwardWeights {
        try DNNL.cache.get(bf16 ? "conv2d.bwd_weights.bf16" : "conv2d.bwd_weights", g.key + [biasGrad ? 1 : 0]) {
            try ConvBackwardWeights(g, biasGrad: biasGrad, bf16: bf16, hint: ConvForward.cached(g, bf16: bf16, training: true))
        }
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
        Engine.addFLOPs(2 * geo.dstDims.reduce(1, *) * geo.c * geo.kh * geo.kw)
        let bf16 = Precision.bf16Applies(x, weight, bias)
        let recording = GradMode.isEnabled && (x.requiresGrad || weight.requiresGrad || (bias?.requiresGrad ?? false))
        // In mixed-precision training the input's bf16 copy made for the forward pass also serves the weight
        // gradient (half the input's bytes held until backward, one conversion per convolution less).
        let (out, savedSource): (Tensor, (dnnl_memory_desc_t, Tensor)?) = dnnlMust {
            let fwd = try ConvForward.cached(geo, bf16: bf16, training: recording)
            let what = geo.describe
            // An input still in a blocked layout is used as it is, or reordered straight into the chosen one.
            let xs: Tensor
            if let xb = x.blockedValues {
                xs = BlockedValues.same(xb.md, fwd.src.chosen)
                    ? xb.buffer : try LayoutReorder.cached(from: xb.md, to: fwd.src.chosen).run(xb.buffer.data)
            } else {
                xs = try fwd.src.input(x, what: what)
            }
            let ws = try WeightCache.shared.reordered(weight, fwd.weights, what: what)
            // In inference the output stays in the chosen layout (BlockedLayout.swift) until an op needs row-major.
            let keepBlocked = !recording && Engine.persistentLayouts && fwd.dst.toPlain != nil
            let plainOut = keepBlocked ? nil : Tensor(uninitializedShape: geo.dstDims)
            let ys = plainOut.map { fwd.dst.outputBuffer($0) } ?? Tensor(uninitializedShape: [(fwd.dst.chosenBytes + 3) / 4])
            var args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)] = [
                (DNNL_ARG_SRC, fwd.src.chosen, raw(xs)), (DNNL_ARG_WEIGHTS, fwd.weights.chosen, raw(ws)),
                (DNNL_ARG_DST, fwd.dst.chosen, raw(ys)),
            ]
            if let bias { args.append((DNNL_ARG_BIAS, fwd.biasMD, raw(bias))) }
            // The reordered input (and a weight reordered for this call) are held by nothing else: kept alive past
            // the call that reads their pointers.
            try withExtendedLifetime((xs, ws)) { try fwd.primitive.execute(args, what: what) }
            let saved = bf16 && recording && weight.requiresGrad ? (fwd.src.chosen, xs) : nil
            guard let plainOut else {
                return (Tensor(shape: geo.dstDims, blocked: BlockedValues(md: fwd.dst.chosen, plainMD: fwd.dst.plain,
                                                                          buffer: ys, toPlain: fwd.dst.toPlain!)), saved)
            }
            try fwd.dst.finish(ys, into: plainOut, what: what)
            return (plainOut, saved)
        }
        let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
        return out.recorded("conv2d", inputs) { g, _ in
            dnnlMust {
                let what = geo.describe
                var gx: Tensor?, gw: Tensor?, gb: Tensor?
                // The upstream gradient reordered for backward data, reused by backward weights when layouts agree.
                var reorderedG: (dnnl_memory_desc_t, Tensor)?
                if x.requiresGrad {
                    let bd = try ConvBackwardData.cached(geo, bf16: bf16)
                    let result = Tensor(uninitializedShape: x.shape)
                    let gs = try bd.diffDst.input(g, what: what)
                    reorderedG = (bd.diffDst.chosen, gs)
                    // Not through WeightCache: backward runs in training, where the weight changes every step.
                    let ws = try bd.weights.input(weight, what: what)
                    let buf = bd.diffSrc.outputBuffer(result)
                    try withExtendedLifetime((gs, ws)) {
                        try bd.primitive.execute([(DNNL_ARG_DIFF_DST, bd.diffDst.chosen, raw(gs)),
                                                  (DNNL_ARG_WEIGHTS, bd.weights.chosen, raw(ws)),
                                                  (DNNL_ARG_DIFF_SRC, bd.diffSrc.chosen, raw(buf))], what: "backward data of " + what)
                    }
                    try bd.diffSrc.finish(buf, into: result, what: what)
                    gx = result
                }
                let needBias = bias?.requiresGrad ?? false
                if weight.requiresGrad || needBias {
                    // The bias gradient (a sum over N, H, W) rides along with the weight gradient when needed.
                    let bw = try ConvBackwardWeights.cached(geo, biasGrad: needBias, bf16: bf16)
                    let resultW = Tensor(uninitializedShape: weight.shape)
                    let xs: Tensor
                    if let (md, t) = savedSource, bw.src.chooses(md) {
                        xs = t
                    } else {
                        xs = try bw.src.input(x, what: what)
                    }
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
                    try withExtendedLifetime((xs, gs)) { try bw.primitive.execute(args, what: "backward weights of " + what) }
                    try bw.diffWeights.finish(buf, into: resultW, what: what)
                    gw = weight.requiresGrad ? resultW : nil
                }
                return bias == nil ? [gx, gw] : [gx, gw, gb]
            }
        }
    }
}
