import CDNNL
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// Persistent blocked layouts: in inference a convolution's output stays in the layout oneDNN chose for it (nChw16c
// on AVX-512) when the next op can read that layout, instead of being reordered to NCHW and back between every pair
// of convolutions. The ops that read it are the convolution itself, the fused group norm (+ conditioning + SiLU) of
// the resnet blocks, same-shape addition (the residual sum) and channel concatenation (an up block's skip), so a
// resnet block, and a run of them, converts only where an op needs row-major order (attention, resampling, the
// sampler). Everything else is
// unchanged: any other op reads `Tensor.data`, which converts the values to row-major order on first use. Recorded
// (differentiated) computations never produce blocked values, so training is unaffected.

extension Engine {
    /// Whether inference keeps convolution outputs in oneDNN's blocked layout between ops that read it.
    ///
    /// On by default; `UNCLIP_PERSISTENT_LAYOUTS=0` in the environment turns it off (for comparisons: the values
    /// are the same to the bit).
    public static var persistentLayouts: Bool {
        get { persistentLayoutsFlag.load(ordering: .relaxed) }
        set { persistentLayoutsFlag.store(newValue, ordering: .relaxed) }
    }
}

private let persistentLayoutsFlag = Atomic<Bool>(getenv("UNCLIP_PERSISTENT_LAYOUTS").map { String(cString: $0) != "0" } ?? true)

/// The values of an NCHW float tensor in a oneDNN blocked layout, with the reorder that makes them row-major.
final class BlockedValues: @unchecked Sendable {
    /// Guards every tensor's switch from blocked to row-major values (rare, so one lock serves all).
    static let lock = Mutex<Void>(())

    /// The blocked layout (f32) and the row-major layout of the same tensor.
    let md: dnnl_memory_desc_t
    let plainMD: dnnl_memory_desc_t
    /// The values in `md` (a flat tensor of the layout's size, padding included).
    let buffer: Tensor
    let toPlain: DNNLPrimitive
    /// Channels per block when `md` is nChw16c over whole blocks (what the fused kernels read), else nil.
    let channelBlock: Int?
    /// Whether the row-major values made from these are read-only (those of a loaded weight).
    let readOnly: Bool

    init(md: dnnl_memory_desc_t, plainMD: dnnl_memory_desc_t, buffer: Tensor, toPlain: DNNLPrimitive, readOnly: Bool = false) {
        self.md = md
        self.plainMD = plainMD
        self.buffer = buffer
        self.toPlain = toPlain
        self.channelBlock = BlockedValues.isWholeNChw16c(md) ? 16 : nil
        self.readOnly = readOnly
    }

    /// The same layout over a fresh, uninitialised buffer.
    func sibling() -> BlockedValues {
        BlockedValues(md: md, plainMD: plainMD, buffer: Tensor(uninitializedShape: buffer.shape), toPlain: toPlain)
    }

    /// Writes the values in row-major order to `p`.
    func writePlain(into p: UnsafeMutablePointer<Float>) {
        dnnlMust {
            try toPlain.execute([(DNNL_ARG_FROM, md, UnsafeMutableRawPointer(buffer.data)),
                                 (DNNL_ARG_TO, plainMD, UnsafeMutableRawPointer(p))], what: "reorder to plain")
        }
    }

    /// Whether two layouts are the same.
    static func same(_ a: dnnl_memory_desc_t, _ b: dnnl_memory_desc_t) -> Bool {
        var a = a, b = b
        return dnnl_memory_desc_equal(&a, &b) != 0
    }

    /// nChw16c, f32, no channel padding, dense: element (n, c, h, w) at ((n·C/16 + c/16)·H·W + h·W + w)·16 + c%16.
    static func isWholeNChw16c(_ md: dnnl_memory_desc_t) -> Bool {
        var md = md
        guard md.ndims == 4, md.data_type == dnnl_f32, md.format_kind == dnnl_blocked, md.offset0 == 0 else { return false }
        let dims = withUnsafeBytes(of: &md.dims) { Array($0.bindMemory(to: Int64.self).prefix(4)) }
        let padded = withUnsafeBytes(of: &md.padded_dims) { Array($0.bindMemory(to: Int64.self).prefix(4)) }
        guard dims == padded, dims[1] % 16 == 0 else { return false }
        let b = md.format_desc.blocking
        var blocking = b
        let strides = withUnsafeBytes(of: &blocking.strides) { Array($0.bindMemory(to: Int64.self).prefix(4)) }
        let hw = dims[2] * dims[3]
        return b.inner_nblks == 1 && b.inner_blks.0 == 16 && b.inner_idxs.0 == 1
            && strides == [dims[1] * hw, hw * 16, dims[3] * 16, 16]
    }
}

/// Reorders between two layouts of one tensor, cached by the pair.
final class LayoutReorder {
    let from: dnnl_memory_desc_t, to: dnnl_memory_desc_t
    let primitive: DNNLPrimitive
    let toBytes: Int

    init(from: dnnl_memory_desc_t, to: dnnl_memory_desc_t) throws {
        self.from = from
        self.to = to
        var t = to
        toBytes = dnnl_memory_desc_get_size(&t)
        primitive = try DNNLPrimitive(reorderFrom: from, to: to, what: "reorder between layouts")
    }

    static func cached(from: dnnl_memory_desc_t, to: dnnl_memory_desc_t) throws -> LayoutReorder {
        let made = try DNNL.cache.get("reorder.layouts", [WeightCache.hash(from), WeightCache.hash(to)]) {
            try LayoutReorder(from: from, to: to)
        }
        // The key is a pair of hashes: on the (theoretical) collision, build the right one uncached.
        if BlockedValues.same(made.from, from) && BlockedValues.same(made.to, to) { return made }
        return try LayoutReorder(from: from, to: to)
    }

    /// `source` (laid out as `from`) in `to`, as a new flat tensor.
    func run(_ source: UnsafeMutablePointer<Float>) throws -> Tensor {
        let out = Tensor(uninitializedShape: [(toBytes + 3) / 4])
        try primitive.execute([(DNNL_ARG_FROM, from, UnsafeMutableRawPointer(source)),
                               (DNNL_ARG_TO, to, UnsafeMutableRawPointer(out.data))], what: "reorder between layouts")
        return out
    }
}

extension Tensor {
    /// `a + b` of two same-shape tensors when either holds blocked values, computed in that layout; nil otherwise.
    static func blockedSum(_ a: Tensor, _ b: Tensor) -> Tensor? {
        guard a.shape == b.shape, Engine.persistentLayouts else { return nil }
        let ba = a.blockedValues, bb = b.blockedValues
        guard let layout = ba ?? bb else { return nil }
        if GradMode.isEnabled && (a.requiresGrad || b.requiresGrad) { return nil }
        func values(_ t: Tensor, _ tb: BlockedValues?) -> Tensor {
            if let tb, BlockedValues.same(tb.md, layout.md) { return tb.buffer }
            // The other operand, row-major (or in another layout), reordered into this one.
            return dnnlMust {
                if let tb { return try LayoutReorder.cached(from: tb.md, to: layout.md).run(tb.buffer.data) }
                return try LayoutReorder.cached(from: layout.plainMD, to: layout.md).run(t.data)
            }
        }
        let va = values(a, ba), vb = values(b, bb)
        let out = layout.sibling()
        let pa = va.data, pb = vb.data, po = out.buffer.data, n = out.buffer.count
        // An operand reordered here is held by nothing else: it must outlive the loop that reads its pointer.
        withExtendedLifetime((va, vb)) {
            parallelFor((n + 15) / 16, grain: 2048) { r in
                for blk in r {
                    let i = blk * 16
                    if i + 16 <= n {
                        (UnsafeRawPointer(pa + i).loadUnaligned(as: SIMD16<Float>.self)
                            + UnsafeRawPointer(pb + i).loadUnaligned(as: SIMD16<Float>.self)).storeUnaligned(to: po + i)
                    } else {
                        for j in i..<n { po[j] = pa[j] + pb[j] }
                    }
                }
            }
        }
        return Tensor(shape: a.shape, blocked: out)
    }

    /// Channel concatenation of NCHW tensors when one of them holds nChw16c values and every part has whole blocks
    /// of 16 channels, the result in nChw16c; nil otherwise. Per sample an nChw16c tensor is its blocks in channel
    /// order, so the concatenation copies each part's per-sample run, as the row-major one does.
    static func blockedConcat(_ ts: [Tensor], shape: [Int]) -> Tensor? {
        guard shape.count == 4, Engine.persistentLayouts, ts.allSatisfy({ $0.shape[1] % 16 == 0 }) else { return nil }
        let parts = ts.map { $0.blockedValues }
        guard parts.contains(where: { $0?.channelBlock == 16 }) else { return nil }
        if GradMode.isEnabled && ts.contains(where: { $0.requiresGrad }) { return nil }
        return dnnlMust {
            let md = try dnnlMemoryDesc(shape, dnnl_nChw16c), plainMD = try dnnlMemoryDesc(shape, dnnl_nchw)
            let sources: [Tensor] = try zip(ts, parts).map { t, b in
                if let b, b.channelBlock == 16 { return b.buffer }
                let whole = try dnnlMemoryDesc(t.shape, dnnl_nChw16c)
                if let b { return try LayoutReorder.cached(from: b.md, to: whole).run(b.buffer.data) }
                return try LayoutReorder.cached(from: try dnnlMemoryDesc(t.shape, dnnl_nchw), to: whole).run(t.data)
            }
            let hw = shape[2] * shape[3], runs = ts.map { $0.shape[1] * hw }, row = shape[1] * hw
            var starts = [0]
            for r in runs.dropLast() { starts.append(starts.last! + r) }
            let out = BlockedValues(md: md, plainMD: plainMD, buffer: Tensor(uninitializedShape: [shape[0] * row]),
                                    toPlain: try LayoutReorder.cached(from: md, to: plainMD).primitive)
            let dst = out.buffer.data, src = sources.map { UnsafePointer($0.data) }
            // The parts reordered here are held by `sources` alone: it must outlive the copy.
            withExtendedLifetime(sources) {
                parallelFor(shape[0], grain: Swift.max(1, 32_768 / Swift.max(row, 1))) { r in
                    for o in r {
                        for k in 0..<src.count { (dst + o * row + starts[k]).update(from: src[k] + o * runs[k], count: runs[k]) }
                    }
                }
            }
            return Tensor(shape: shape, blocked: out)
        }
    }

    /// `groupNormConditioned` on nChw16c values (inference only), the result in the same layout; nil when the input
    /// is not in that layout. Equal to the bit to the row-major kernel: the statistics come from the same function
    /// over the same values in the same order (from a row-major copy that oneDNN reorders), and the normalising
    /// pass does the same float operations per element, 16 channels per vector instead of 16 positions.
    func groupNormConditionedBlocked(groups: Int, weight: Tensor?, bias: Tensor?, eps: Float, inputShift: Tensor?,
                                     scale: Tensor?, shift: Tensor?, silu: Bool) -> Tensor? {
        guard rank == 4, Engine.persistentLayouts, let xb = blockedValues, xb.channelBlock == 16 else { return nil }
        let operands: [Tensor?] = [self, weight, bias, inputShift, scale, shift]
        if GradMode.isEnabled && operands.contains(where: { $0?.requiresGrad ?? false }) { return nil }
        typealias V = SIMD16<Float>
        let n = shape[0], c = shape[1], spatial = shape[2] * shape[3]
        let cg = c / groups, groupSize = cg * spatial, blocks = c / 16
        // A unit: the fewest whole blocks that hold whole groups.
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
        let unitChannels = 16 / gcd(16, cg) * cg, unitsPerSample = c / unitChannels, unitBlocks = unitChannels / 16
        let out = xb.sibling()
        let x = UnsafePointer(xb.buffer.data), y = out.buffer.data
        let pw = weight?.data, pb = bias?.data, pt = inputShift?.data, ps = scale?.data, ph = shift?.data
        @inline(__always) func lanes(_ f: (Int) -> Float) -> V {
            var v = V(); for l in 0..<16 { v[l] = f(l) }; return v
        }
        // The statistics from a row-major copy of u = x + inputShift (oneDNN's reorder, then the row-major kernel's
        // own additions and `NormKernels.moments` over the same values in the same order): equal to the bit.
        let rowMajor = Tensor(uninitializedShape: shape)
        let r = rowMajor.data
        xb.writePlain(into: r)
        let moments = UnsafeMutablePointer<Float>.allocate(capacity: 3 * n * groups)
        defer { moments.deallocate() }
        // One region: each task takes a unit's groups (their statistics), then its blocks.
        parallelFor(n * unitsPerSample, grain: Swift.max(1, 16_384 / Swift.max(unitChannels * spatial, 1))) { range in
            for task in range {
                let sample = task / unitsPerSample, c0 = (task % unitsPerSample) * unitChannels
                for g in (c0 / cg)..<((c0 + unitChannels) / cg) {
                    let u = sample * groups + g, base = u * groupSize
                    if let pt {
                        for k in 0..<cg { FusedKernels.addScalar(r + base + k * spatial, pt[sample * c + g * cg + k], r + base + k * spatial, spatial) }
                    }
                    let (mu, low, rs) = NormKernels.moments(r + base, groupSize, eps: eps)
                    moments[3 * u] = mu; moments[3 * u + 1] = low; moments[3 * u + 2] = rs
                }
                func block(_ k: Int) -> Int { (sample * blocks + c0 / 16 + k) * spatial * 16 }
                func shiftIn(_ k: Int) -> V { pt.map { p in lanes { p[sample * c + c0 + k * 16 + $0] } } ?? V() }
                // The moments of the group of each lane's channel.
                func perLane(_ k: Int, _ m: Int) -> V { lanes { moments[3 * (sample * groups + (c0 + k * 16 + $0) / cg) + m] } }
                // y = silu?((((u − mean) − meanLow) · rstd·w + b) · (1 + scale) + shift), as the row-major kernel.
                for k in 0..<unitBlocks {
                    let src = x + block(k), dst = y + block(k), t = shiftIn(k)
                    let ch = { (l: Int) in c0 + k * 16 + l }
                    let meanV = perLane(k, 0), lowV = perLane(k, 1), rstd = perLane(k, 2)
                    let a = lanes { rstd[$0] * (pw?[ch($0)] ?? 1) }
                    let b = lanes { pb?[ch($0)] ?? 0 }
                    let ts = ps.map { p in lanes { p[sample * c + ch($0)] + 1 } }
                    let th = ph.map { p in lanes { p[sample * c + ch($0)] } }
                    for p in 0..<spatial {
                        var z = ((UnsafeRawPointer(src + p * 16).loadUnaligned(as: V.self) + t) - meanV - lowV) * a + b
                        if let ts { z = z * ts }
                        if let th { z = z + th }
                        if silu { z = z * VectorMath.sigmoid(z) }
                        z.storeUnaligned(to: dst + p * 16)
                    }
                }
            }
        }
        withExtendedLifetime((rowMajor, xb)) {}
        return Tensor(shape: shape, blocked: out)
    }
}

extension SIMD16<Float> {
    @inline(__always) func storeUnaligned(to p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: self, as: SIMD16<Float>.self)
    }
}
