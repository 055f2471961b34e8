import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A block of Float32 memory that one or more tensors view.
///
/// Owned blocks come from `BufferPool.current` and go back to the pool they came from, so a sampling loop that makes
/// tensors of the same shapes step after step stops allocating after its first step. Borrowed blocks (a memory-mapped weight file)
/// keep their owner alive and are never written by the engine.
public final class TensorStorage: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Float>
    public let count: Int
    /// Whatever keeps borrowed memory alive (a memory map); nil for pooled memory.
    let owner: AnyObject?
    /// The pool the block came from and returns to; nil for borrowed memory.
    let pool: BufferPool?
    /// Borrowed memory that a file backs (its dropped pages come back from the file).
    public let fileBacked: Bool

    /// Uninitialised pooled memory for `count` floats, from the current task's pool.
    init(uninitialized count: Int) {
        let pool = BufferPool.current
        self.count = count
        self.base = pool.take(count)
        self.owner = nil
        self.pool = pool
        self.fileBacked = false
    }

    /// Memory owned by someone else (e.g. a memory-mapped file); `owner` is retained for the storage's lifetime.
    /// `fileBacked`: the memory is a private mapping of a file that is never written, so its pages may be dropped
    /// and read back from the file (`discardWhenReleased`); anything else must say false.
    public init(borrowing base: UnsafeMutablePointer<Float>, count: Int, owner: AnyObject?, fileBacked: Bool = false) {
        self.base = base
        self.count = count
        self.owner = owner
        self.pool = nil
        self.fileBacked = fileBacked
    }

    deinit {
        if let pool { if bypassPool.load(ordering: .relaxed) { free(base) } else { pool.give(base, count) } }
    }

    /// For memory that is being given up for good (a weight that now lives only in its reordered form): pooled
    /// memory goes straight back to the system when the storage is freed instead of into the pool's cache, and the
    /// resident pages of borrowed, file-backed memory (a memory-mapped weight file) are handed back now (they come
    /// back from the file if read again).
    func discardWhenReleased() {
        if pool != nil { bypassPool.store(true, ordering: .relaxed); return }
        dropResidentPages(0..<count)
    }

    /// Hands back the resident pages of the elements `range` when the memory is file-backed (they come back from the
    /// file if read again, so the values never change); does nothing to any other memory, which would read back as
    /// zeros. Only whole pages inside `range` are dropped, never a neighbour's.
    public func dropResidentPages(_ range: Range<Int>) {
        guard fileBacked, !range.isEmpty, range.lowerBound >= 0, range.upperBound <= count else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: base + range.lowerBound) + page - 1) / page * page
        let end = Int(bitPattern: base + range.upperBound) / page * page
        if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED) }
    }

    /// `count` zeros in memory the kernel maps on first write (an anonymous mapping), so they take no RAM while
    /// untouched: the parameters a model is built with before a load replaces them (`Tensor.withUntouchedZeros`).
    /// Nil when the mapping fails (the caller then allocates as usual).
    static func untouchedZeros(_ count: Int) -> TensorStorage? {
        guard let mapping = AnonymousMapping(bytes: count * 4) else { return nil }
        return TensorStorage(borrowing: mapping.base.bindMemory(to: Float.self, capacity: count), count: count, owner: mapping)
    }

    /// No elements: what a tensor whose values are still blocked views until it is made row-major.
    static let empty = TensorStorage(borrowing: UnsafeMutablePointer<Float>.allocate(capacity: 1), count: 0, owner: nil)

    /// Whether the values are final: set on the weights of a model loaded for inference, so caches derived from them
    /// (reordered and bf16 weights, `WeightCache`) are reused without re-reading them to check they did not change.
    /// Writing a read-only storage in place is a programming error (`copyValues` refuses it; the optimizers assign
    /// writable copies before their first step).
    public var isReadOnly: Bool { readOnly.load(ordering: .acquiring) }
    private let readOnly = Atomic<Bool>(false)
    private let bypassPool = Atomic<Bool>(false)

    /// Marks the values final (see `isReadOnly`); there is no way back.
    public func markReadOnly() { readOnly.store(true, ordering: .releasing) }
}

/// A private anonymous mapping, unmapped when the last storage viewing it goes.
final class AnonymousMapping: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let bytes: Int

    init?(bytes: Int) {
        guard bytes > 0 else { return nil }
        let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let p, p != MAP_FAILED else { return nil }
        self.base = p
        self.bytes = bytes
    }

    deinit { munmap(base, bytes) }
}

/// A size-bucketed cache of 64-byte-aligned buffers.
///
/// Freed buffers are kept by exact element count (diffusion loops repeat the same shapes), up to `limitBytes`;
/// beyond that the oldest cached buffers are released to the system. A miss while the cache holds at least the bytes
/// asked for releases the oldest cached buffers first, so a model of many shapes (a U-Net's levels) reuses their
/// memory instead of holding a cache of sizes it no longer asks for beside its live tensors. Tensors take their memory from
/// `BufferPool.current`: the process-wide `shared` pool unless a task runs with its own (`withPool`), so a model that
/// serves many callers can release its scratch memory between stages without emptying anyone else's cache.
public final class BufferPool: @unchecked Sendable {
    public static let shared = BufferPool()

    /// The pool new tensors of the current task take their memory from.
    @TaskLocal public static var current = BufferPool.shared

    /// A pool caching at most `limitBytes` of freed buffers (default `defaultLimitBytes`).
    public init(limitBytes: Int = BufferPool.defaultLimitBytes) { limit.store(limitBytes, ordering: .relaxed) }

    /// 2 GiB, or `UNCLIP_SCRATCH_POOL_MB` MiB when that is set to a whole number ≥ 0. 0 caches nothing: every freed
    /// buffer goes straight back to the C allocator, which is what the AddressSanitizer run wants (a pooled buffer
    /// read after its tensor died is invisible to it) and what trades speed for the lowest peak memory.
    public static let defaultLimitBytes: Int = {
        guard let raw = getenv("UNCLIP_SCRATCH_POOL_MB") else { return 2 << 30 }
        let text = String(cString: raw)
        guard let mb = Int(text), mb >= 0, mb <= (1 << 30) else {
            let message = "swift-unclip: ignoring UNCLIP_SCRATCH_POOL_MB=\(text) (expected a whole number of MiB ≥ 0); using 2048\n"
            _ = message.withCString { write(2, $0, strlen($0)) }
            return 2 << 30
        }
        return mb << 20
    }()

    /// Runs `body` with `self` as the pool new tensors come from.
    public func withPool<T>(_ body: () throws -> T) rethrows -> T {
        try Self.$current.withValue(self, operation: body)
    }

    /// A free buffer; only the pool, under its lock, touches it.
    private struct Block: @unchecked Sendable, Equatable {
        let pointer: UnsafeMutablePointer<Float>
    }
    private struct State {
        var free: [Int: [Block]] = [:]
        var order: [(Int, Block)] = []  // release order, oldest first
        var cachedBytes = 0
    }
    private let state = Mutex(State())
    /// The most memory kept cached for reuse (default 2 GiB).
    public var limitBytes: Int {
        get { limit.load(ordering: .relaxed) }
        set { limit.store(newValue, ordering: .relaxed); trim() }
    }
    private let limit = Atomic<Int>(0)

    func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        let n = max(count, 1)
        if let block = state.withLock({ s -> Block? in
            guard var list = s.free[n], let p = list.popLast() else { return nil }
            s.free[n] = list
            s.cachedBytes -= n * 4
            if let i = s.order.lastIndex(where: { $0.1 == p }) { s.order.remove(at: i) }
            return p
        }) { return block.pointer }
        // A miss while the cache holds at least as much in other sizes: release the oldest of those first, so the
        // new buffer reuses their memory instead of adding to it (a stage with many shapes would otherwise peak at
        // its live tensors plus a cache of sizes it no longer asks for). Loops that repeat their shapes hit and
        // never get here after their first pass.
        release(atLeast: n * 4)
        var raw: UnsafeMutableRawPointer?
        let status = posix_memalign(&raw, 64, n * MemoryLayout<Float>.stride)
        guard status == 0, let raw else {
            // Out of memory is not recoverable for a tensor engine; say how much was asked for.
            fatalError("swift-unclip: could not allocate \(n * 4) bytes for a tensor")
        }
        return raw.bindMemory(to: Float.self, capacity: n)
    }

    func give(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        let n = max(count, 1)
        // Very large blocks (> 256 MiB) go straight back to the system: they are rare and would crowd the cache.
        if n * 4 > (256 << 20) || n * 4 > limitBytes { free(p); return }
        let block = Block(pointer: p)
        state.withLock { s in
            s.free[n, default: []].append(block)
            s.order.append((n, block))
            s.cachedBytes += n * 4
        }
        trim()
    }

    deinit { trim(to: 0) }

    /// Releases the oldest cached buffers, `bytes` of them or more, when the cache holds that much.
    private func release(atLeast bytes: Int) {
        let released = state.withLock { s -> [Block] in
            guard s.cachedBytes >= bytes else { return [] }
            let target = s.cachedBytes - bytes
            return Self.popOldest(&s) { $0.cachedBytes > target }
        }
        for block in released { free(block.pointer) }
    }

    /// Takes cached buffers out of `s`, oldest first, while `more(s)` holds (under the lock; the caller frees them).
    private static func popOldest(_ s: inout State, while more: (State) -> Bool) -> [Block] {
        var released: [Block] = []
        while more(s), !s.order.isEmpty {
            let (n, p) = s.order.removeFirst()
            if var list = s.free[n], let i = list.firstIndex(of: p) {
                list.remove(at: i); s.free[n] = list
                s.cachedBytes -= n * 4
                released.append(p)
            }
        }
        return released
    }

    /// Releases cached buffers until the cache holds at most `limitBytes`.
    public func trim(to bytes: Int? = nil) {
        let target = bytes ?? limitBytes
        let released = state.withLock { s in Self.popOldest(&s) { $0.cachedBytes > target } }
        for block in released { free(block.pointer) }
        #if canImport(Glibc)
        // Emptying the cache is asking for the memory back: glibc keeps freed heap blocks (those under its
        // dynamic mmap threshold, up to 32 MiB) mapped unless asked, and a server's RSS would creep up.
        if target == 0 && !released.isEmpty { Self.returnFreedMemoryToSystem() }
        #endif
    }

    /// Asks the C allocator to give the memory freed by every thread back to the system (glibc's `malloc_trim`;
    /// nothing elsewhere). A server calls it when idle, so its RSS returns to its model's.
    public static func returnFreedMemoryToSystem() {
        #if canImport(Glibc)
        _ = glibcMallocTrim(0)
        #endif
    }

    /// Caps the C allocator's arenas at `count` (glibc's `mallopt(M_ARENA_MAX)`; nothing elsewhere), unless the user
    /// set `MALLOC_ARENA_MAX`, which wins; call it before other threads allocate. A long-running process wants 1:
    /// glibc gives threads that contend for the heap arenas of their own, and `malloc_trim` gives back the free top of
    /// the main arena only, so a thread arena's top chunk (up to the dynamic trim threshold, 64 MiB) stays resident
    /// when idle. With the default arenas a server's idle heap wandered by the size of that chunk between identical
    /// rounds of load (61 ↔ 87 MiB here); with 2 it was steady but high (89.5 MiB); with one it stayed at
    /// 62.2 ± 0.2 MiB over eight rounds at the same throughput (docs/serving.md).
    public static func limitAllocatorArenas(_ count: Int) {
        #if canImport(Glibc)
        guard getenv("MALLOC_ARENA_MAX") == nil else { return }
        _ = glibcMallopt(-8 /* M_ARENA_MAX */, Int32(max(count, 1)))
        #endif
    }

    #if canImport(Glibc)
    /// glibc's `malloc_trim` and `mallopt` (malloc.h, which the Glibc module does not export).
    @_silgen_name("malloc_trim") private static func glibcMallocTrim(_ pad: Int) -> Int32
    @_silgen_name("mallopt") private static func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
    #endif

    /// Bytes currently held in the cache (not in use by any tensor).
    public var cachedBytes: Int { state.withLock { $0.cachedBytes } }
}
