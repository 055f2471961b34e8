import CDNNL
import Synchronization

/// Convolution and linear weights already reordered into the layout (and, in bf16, the data type) a oneDNN primitive
/// chose, kept between inference calls.
///
/// Reordering a large weight costs a sizeable fraction of a low-resolution convolution (docs/benchmarks.md, "Caching
/// reordered convolution weights", has the figures). A weight is reused only while (a) its storage object is the same
/// (a weak reference, so a freed and re-allocated block never matches), and (b) a checksum over every element still
/// matches, which catches in-place writes (optimizer steps, EMA updates, `copyValues`) at the cost of one read pass
/// (skipped for read-only storages: the weights of a model loaded for inference, `TensorStorage.isReadOnly`).
/// Weights being differentiated in a recorded graph are never cached, and small writable weights (under
/// `minElements`) are reordered each time because that is cheaper than the checksum; small read-only weights are
/// cached too (a lookup costs less than a reorder, which is also a parallel region of its own).
///
/// The limit holds every convolution weight of one Karlo U-Net: with a smaller one the least-recently-used policy
/// misses on every call of a U-Net step, which then pays the checksum, the reorder and a fresh allocation for each
/// large weight. Entries of weights that were freed are dropped before each new reorder is allocated, so a pipeline
/// that releases one stage's model before the next does not hold two models' reorders. Entries are keyed by the
/// chosen layout's contents, not by the primitive, so problems of other batch sizes that choose the same layout share
/// one copy.
final class WeightCache: @unchecked Sendable {
    static let shared = WeightCache()
    /// Writable weights with fewer elements are reordered every call.
    static let minElements = 1 << 16
    /// Most bytes of reordered weights kept (least recently used go first).
    static let limitBytes = 3 << 30

    private struct Key: Hashable {
        let storage: ObjectIdentifier, offset: Int, layout: Int
    }
    /// Only touched under the cache's lock; the reordered tensor is never written after it is made.
    private struct Entry: @unchecked Sendable {
        weak var storage: TensorStorage?
        /// The layout of `reordered` (the key holds only its hash).
        let chosen: dnnl_memory_desc_t
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
        // A read-only weight that keeps only its reordered values (below) is its own cache entry. (Checked first:
        // reading `weight.storage` would convert it back to row-major.)
        if layout.toChosen != nil, let kept = weight.blockedValues {
            if layout.chooses(kept.md) { return kept.buffer }
            // Another layout (bf16, or another primitive's choice): made from the kept values once, cached by them.
            let key = Key(storage: ObjectIdentifier(kept.buffer.storage), offset: 0, layout: WeightCache.hash(layout.chosen))
            if let hit = state.withLock({ s -> Tensor? in
                guard let e = s.entries[key], e.storage === kept.buffer.storage, layout.chooses(e.chosen) else { return nil }
                return e.reordered
            }) { return hit }
            let fresh = try LayoutReorder.cached(from: kept.md, to: layout.chosen).run(kept.buffer.data)
            insert(Entry(storage: kept.buffer.storage, chosen: layout.chosen, checksum: 0, reordered: fresh, lastUse: 0), key)
            return fresh
        }
        guard layout.toChosen != nil, weight.count >= WeightCache.minElements || weight.storage.isReadOnly,
              !(GradMode.isEnabled && weight.requiresGrad) else {
            return try layout.input(weight, what: what)
        }
        // Held while the weight is read, so a concurrent `keepOnly` cannot free the memory under the reorder.
        let storage = weight.storage
        let key = Key(storage: ObjectIdentifier(storage), offset: weight.offset, layout: WeightCache.hash(layout.chosen))
        // Read-only weights (a model loaded for inference) cannot change, so the checksum pass over them is skipped.
        let sum = storage.isReadOnly ? 0 : WeightCache.checksum(weight)
        let hit = state.withLock { s -> Tensor? in
            guard var e = s.entries[key] else { return nil }
            guard e.storage === weight.storage, layout.chooses(e.chosen), e.checksum == sum else {
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
        let fresh = try withExtendedLifetime(storage) { try layout.input(weight, what: what) }
        // With persistent layouts a read-only weight reordered losslessly (fp32) keeps only the reordered copy: its
        // row-major memory is released (or, memory-mapped, its pages handed back), so the U-Nets no longer hold
        // each convolution weight twice. A reader of `weight.data` gets the values back.
        if Engine.persistentLayouts, storage.isReadOnly, layout.chosen.data_type == dnnl_f32, layout.chosen.ndims == 4,
           weight.keepOnly(BlockedValues(md: layout.chosen, plainMD: layout.plain, buffer: fresh,
                                         toPlain: try LayoutReorder.cached(from: layout.chosen, to: layout.plain).primitive,
                                         readOnly: true)) {
            return fresh
        }
        // At bf16 a read-only weight is read as this copy from now on. A view of a memory-mapped file hands its fp32
        // pages back (they come back from the file if an fp32 op reads them), so a bf16 model holds its large weights
        // once, in bf16, instead of in both precisions.
        if layout.chosen.data_type == dnnl_bf16, storage.isReadOnly { weight.dropResidentPages() }
        insert(Entry(storage: storage, chosen: layout.chosen, checksum: sum, reordered: fresh, lastUse: 0), key)
        return fresh
    }

    /// Adds an entry, then drops the least recently used until under the limit.
    private func insert(_ entry: Entry, _ key: Key) {
        state.withLock { s in
            s.clock += 1
            var entry = entry
            entry.lastUse = s.clock
            if let old = s.entries[key] { s.bytes -= old.reordered.count * 4 }
            s.entries[key] = entry
            s.bytes += entry.reordered.count * 4
            // Then the least recently used until under the limit.
            while s.bytes > WeightCache.limitBytes, let oldest = s.entries.min(by: { $0.value.lastUse < $1.value.lastUse }) {
                s.bytes -= oldest.value.reordered.count * 4
                s.entries[oldest.key] = nil
            }
        }
    }

    /// A hash of what makes a memory layout: dimensions, data type and blocking (equal layouts hash equally; the
    /// entry compares the whole descriptor).
    static func hash(_ md: dnnl_memory_desc_t) -> Int {
        var h = Hasher()
        var md = md
        h.combine(md.ndims)
        h.combine(md.data_type.rawValue)
        h.combine(md.format_kind.rawValue)
        withUnsafeBytes(of: &md.dims) { h.combine(bytes: $0) }
        withUnsafeBytes(of: &md.padded_dims) { h.combine(bytes: $0) }
        if md.format_kind == dnnl_blocked {
            h.combine(md.format_desc.blocking.inner_nblks)
            withUnsafeBytes(of: &md.format_desc.blocking.strides) { h.combine(bytes: $0) }
            withUnsafeBytes(of: &md.format_desc.blocking.inner_blks) { h.combine(bytes: $0) }
            withUnsafeBytes(of: &md.format_desc.blocking.inner_idxs) { h.combine(bytes: $0) }
        }
        return h.finalize()
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
