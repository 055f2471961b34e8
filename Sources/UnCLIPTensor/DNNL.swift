import CDNNL
import Synchronization

// oneDNN (2.x C API) plumbing shared by the GEMM, convolution and attention kernels: one CPU engine, a small pool
// of streams, readable errors, and a cache of primitives keyed by problem shape so that a sampling loop creates
// each primitive once and then only executes it.

/// A oneDNN call that did not succeed.
public struct DNNLError: Error, CustomStringConvertible {
    /// The status oneDNN returned.
    public let status: dnnl_status_t
    /// What the engine was trying to do (the oneDNN function and the problem).
    public let operation: String

    public var description: String { "oneDNN \(operation) failed: \(DNNLError.explain(status))" }

    /// A sentence for each oneDNN status (the 2.x C API has no status-to-string function outside dnnl_debug.h).
    static func explain(_ s: dnnl_status_t) -> String {
        switch s {
        case dnnl_success: return "success"
        case dnnl_out_of_memory: return "out of memory"
        case dnnl_invalid_arguments: return "invalid arguments (shapes, strides or layouts oneDNN rejects)"
        case dnnl_unimplemented: return "no implementation for this problem on this CPU"
        case dnnl_iterator_ends: return "primitive iterator passed the last implementation"
        case dnnl_runtime_error: return "runtime error during execution"
        case dnnl_not_required: return "the queried object is not required"
        default: return "status \(s.rawValue)"
        }
    }
}

/// Throws a `DNNLError` naming `operation` unless `status` is success.
@inline(__always)
func dnnlCheck(_ status: dnnl_status_t, _ operation: @autoclosure () -> String) throws {
    if status != dnnl_success { throw DNNLError(status: status, operation: operation()) }
}

/// Runs a oneDNN step whose failure is a programming error in the engine, not a user mistake.
///
/// The agreed tensor op API does not throw; shapes are validated with readable preconditions before any oneDNN
/// call, so a failure here means oneDNN itself could not run a valid problem (e.g. out of memory). Stop with the
/// full oneDNN explanation rather than produce wrong numbers.
@inline(__always)
func dnnlMust<T>(_ body: () throws -> T) -> T {
    do { return try body() } catch { preconditionFailure("swift-unclip: \(error)") }
}

/// A `dnnl_dims_t` (a C array of 12 int64, passed as a pointer) from a Swift array.
func dnnlDims(_ values: [Int]) -> [Int64] {
    precondition(values.count <= Int(DNNL_MAX_NDIMS), "oneDNN supports at most \(DNNL_MAX_NDIMS) dimensions")
    return values.map { Int64($0) } + [Int64](repeating: 0, count: Int(DNNL_MAX_NDIMS) - values.count)
}

/// A plain (row-major) or `any` memory descriptor, float32 unless `type` says otherwise.
func dnnlMemoryDesc(_ dims: [Int], _ tag: dnnl_format_tag_t, _ type: dnnl_data_type_t = dnnl_f32) throws -> dnnl_memory_desc_t {
    var md = dnnl_memory_desc_t()
    try dnnlCheck(dnnl_memory_desc_init_by_tag(&md, Int32(dims.count), dnnlDims(dims), type, tag),
                  "memory_desc_init_by_tag(\(dims))")
    return md
}

/// The process-wide oneDNN CPU engine and its streams.
enum DNNL {
    /// The CPU engine (created on first use; oneDNN engines are thread-safe, hence `nonisolated(unsafe)`).
    nonisolated(unsafe) static let engine: dnnl_engine_t = dnnlMust {
        var e: dnnl_engine_t?
        try dnnlCheck(dnnl_engine_create(&e, dnnl_cpu, 0), "engine_create(cpu)")
        return e!
    }

    /// Primitive attributes asking for a user-managed scratchpad, so scratch memory comes from the engine's buffer
    /// pool and concurrent executions of one primitive never share oneDNN's global scratchpad. Never modified after
    /// creation, so sharing it between threads is safe.
    nonisolated(unsafe) static let userScratchpadAttr: dnnl_primitive_attr_t = dnnlMust {
        var a: dnnl_primitive_attr_t?
        try dnnlCheck(dnnl_primitive_attr_create(&a), "primitive_attr_create")
        try dnnlCheck(dnnl_primitive_attr_set_scratchpad_mode(a, dnnl_scratchpad_mode_user), "attr_set_scratchpad_mode")
        return a!
    }

    // oneDNN streams are not thread-safe; keep idle ones in a pool and lend one per execution.
    private static let idleStreams = Mutex<[StreamBox]>([])

    private final class StreamBox: @unchecked Sendable {
        let stream: dnnl_stream_t
        init() throws {
            var s: dnnl_stream_t?
            try dnnlCheck(dnnl_stream_create(&s, DNNL.engine, dnnl_stream_default_flags.rawValue), "stream_create")
            stream = s!
        }
        deinit { dnnl_stream_destroy(stream) }
    }

    /// Runs `body` with a stream no other thread is using.
    static func withStream<T>(_ body: (dnnl_stream_t) throws -> T) throws -> T {
        let box = try DNNL.idleStreams.withLock { $0.popLast() } ?? StreamBox()
        defer { DNNL.idleStreams.withLock { $0.append(box) } }
        return try body(box.stream)
    }

    /// Primitives built so far, by problem key.
    static let cache = PrimitiveCache()
}

/// A oneDNN primitive with its descriptor; destroyed when the last reference goes.
final class DNNLPrimitive: @unchecked Sendable {
    let pd: dnnl_primitive_desc_t
    let primitive: dnnl_primitive_t
    /// Bytes of scratch memory each execution needs.
    let scratchpadBytes: Int

    /// Creates the primitive for an operation descriptor (a pointer to e.g. `dnnl_convolution_desc_t`).
    init(opDesc: UnsafeRawPointer, hint: DNNLPrimitive? = nil, what: String) throws {
        var pd: dnnl_primitive_desc_t?
        try dnnlCheck(dnnl_primitive_desc_create(&pd, opDesc, DNNL.userScratchpadAttr, DNNL.engine, hint?.pd),
                      "primitive_desc_create(\(what))")
        var prim: dnnl_primitive_t?
        let status = dnnl_primitive_create(&prim, pd)
        if status != dnnl_success { dnnl_primitive_desc_destroy(pd); throw DNNLError(status: status, operation: "primitive_create(\(what))") }
        self.pd = pd!
        self.primitive = prim!
        if let md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0) {
            scratchpadBytes = dnnl_memory_desc_get_size(md)
        } else {
            scratchpadBytes = 0
        }
    }

    /// A reorder between two layouts of the same data.
    convenience init(reorderFrom src: dnnl_memory_desc_t, to dst: dnnl_memory_desc_t, what: String) throws {
        var src = src, dst = dst
        var pd: dnnl_primitive_desc_t?
        try dnnlCheck(dnnl_reorder_primitive_desc_create(&pd, &src, DNNL.engine, &dst, DNNL.engine, DNNL.userScratchpadAttr),
                      "reorder_primitive_desc_create(\(what))")
        try self.init(ownedPD: pd!, what: what)
    }

    private init(ownedPD pd: dnnl_primitive_desc_t, what: String) throws {
        var prim: dnnl_primitive_t?
        let status = dnnl_primitive_create(&prim, pd)
        if status != dnnl_success { dnnl_primitive_desc_destroy(pd); throw DNNLError(status: status, operation: "primitive_create(\(what))") }
        self.pd = pd
        self.primitive = prim!
        if let md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0) {
            scratchpadBytes = dnnl_memory_desc_get_size(md)
        } else {
            scratchpadBytes = 0
        }
    }

    deinit {
        dnnl_primitive_destroy(primitive)
        dnnl_primitive_desc_destroy(pd)
    }

    /// The memory descriptor the implementation chose for `query` (e.g. `dnnl_query_src_md`).
    func md(_ query: dnnl_query_t, _ index: Int32 = 0) -> dnnl_memory_desc_t {
        guard let p = dnnl_primitive_desc_query_md(pd, query, index) else { return dnnl_memory_desc_t() }
        return p.pointee
    }

    /// Executes with `(argument, descriptor, pointer)` triples, adding a pooled scratchpad when needed.
    func execute(_ args: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)], what: String) throws {
        var memories: [dnnl_memory_t?] = []
        defer { for m in memories { dnnl_memory_destroy(m) } }
        var execArgs: [dnnl_exec_arg_t] = []
        execArgs.reserveCapacity(args.count + 1)
        for (arg, desc, ptr) in args {
            var desc = desc
            var m: dnnl_memory_t?
            try dnnlCheck(dnnl_memory_create(&m, &desc, DNNL.engine, ptr), "memory_create(\(what))")
            memories.append(m)
            execArgs.append(dnnl_exec_arg_t(arg: arg, memory: m))
        }
        var scratch: Tensor?
        if scratchpadBytes > 0 {
            let s = Tensor(uninitializedShape: [(scratchpadBytes + 3) / 4])
            scratch = s
            var desc = md(dnnl_query_scratchpad_md)
            var m: dnnl_memory_t?
            try dnnlCheck(dnnl_memory_create(&m, &desc, DNNL.engine, s.data), "memory_create(scratchpad, \(what))")
            memories.append(m)
            execArgs.append(dnnl_exec_arg_t(arg: DNNL_ARG_SCRATCHPAD, memory: m))
        }
        try DNNL.withStream { stream in
            try dnnlCheck(dnnl_primitive_execute(primitive, stream, Int32(execArgs.count), execArgs), "primitive_execute(\(what))")
            try dnnlCheck(dnnl_stream_wait(stream), "stream_wait(\(what))")
        }
        withExtendedLifetime(scratch) {}
    }
}

/// One tensor argument of a primitive: its plain PyTorch layout, the layout the implementation prefers, and the
/// reorders between them (nil when the two are the same).
final class DNNLLayout: @unchecked Sendable {
    let plain: dnnl_memory_desc_t
    let chosen: dnnl_memory_desc_t
    /// Bytes of the chosen layout (blocked layouts may pad channels up to a multiple of 16).
    let chosenBytes: Int
    let toChosen: DNNLPrimitive?
    let toPlain: DNNLPrimitive?

    /// `input`: build the plain→chosen reorder; otherwise chosen→plain.
    init(plain: dnnl_memory_desc_t, chosen: dnnl_memory_desc_t, input: Bool, what: String) throws {
        var p = plain, c = chosen
        self.plain = plain
        self.chosen = chosen
        self.chosenBytes = dnnl_memory_desc_get_size(&c)
        if dnnl_memory_desc_equal(&p, &c) != 0 {
            toChosen = nil; toPlain = nil
        } else if input {
            toChosen = try DNNLPrimitive(reorderFrom: plain, to: chosen, what: "reorder to blocked, \(what)")
            toPlain = nil
        } else {
            toChosen = nil
            toPlain = try DNNLPrimitive(reorderFrom: chosen, to: plain, what: "reorder to plain, \(what)")
        }
    }

    /// Whether `md` is exactly the layout this argument uses.
    func chooses(_ md: dnnl_memory_desc_t) -> Bool {
        var a = md, b = chosen
        return dnnl_memory_desc_equal(&a, &b) != 0
    }

    /// Whether the primitive works directly on the plain layout.
    var isPlain: Bool { toChosen == nil && toPlain == nil }

    /// The data of `t` in the chosen layout: `t` itself when no reorder is needed, else a reordered copy.
    func input(_ t: Tensor, what: String) throws -> Tensor {
        guard let r = toChosen else { return t }
        let out = Tensor(uninitializedShape: [(chosenBytes + 3) / 4])
        try r.execute([(DNNL_ARG_FROM, plain, UnsafeMutableRawPointer(t.data)),
                       (DNNL_ARG_TO, chosen, UnsafeMutableRawPointer(out.data))], what: what)
        return out
    }

    /// A buffer for an output in the chosen layout (`plainOut` itself when no reorder is needed).
    func outputBuffer(_ plainOut: Tensor) -> Tensor {
        isPlain ? plainOut : Tensor(uninitializedShape: [(chosenBytes + 3) / 4])
    }

    /// Copies an output computed in the chosen layout into `plainOut` (nothing when they are the same buffer).
    func finish(_ buffer: Tensor, into plainOut: Tensor, what: String) throws {
        guard let r = toPlain else { return }
        try r.execute([(DNNL_ARG_FROM, chosen, UnsafeMutableRawPointer(buffer.data)),
                       (DNNL_ARG_TO, plain, UnsafeMutableRawPointer(plainOut.data))], what: what)
    }
}

/// A bounded, thread-safe map from problem keys to built primitives (or groups of them).
///
/// Keys are the op kind plus every dimension that shapes the primitive. oneDNN keeps its own cache of compiled
/// kernels, but creating a primitive descriptor still costs tens of microseconds; this cache skips that too.
final class PrimitiveCache: @unchecked Sendable {
    struct Key: Hashable {
        let kind: String
        let dims: [Int]
    }

    /// Most entries kept; past it the cache starts over (a sampling loop uses a few dozen shapes).
    static let capacity = 512

    /// A cached primitive: immutable once made, executed concurrently by oneDNN's rules.
    private struct Cached: @unchecked Sendable { let object: AnyObject }
    private let entries = Mutex<[Key: Cached]>([:])

    /// The cached object for `key`, built by `make` on first use.
    func get<T: AnyObject>(_ kind: String, _ dims: [Int], make: () throws -> T) throws -> T {
        let key = Key(kind: kind, dims: dims)
        if let hit = entries.withLock({ $0[key] }) { return hit.object as! T }
        let made = try make()
        let cached = Cached(object: made)
        entries.withLock { e in
            if e.count >= PrimitiveCache.capacity { e.removeAll() }
            e[key] = cached
        }
        return made
    }

    /// Number of cached problems.
    var count: Int { entries.withLock { $0.count } }

    /// Releases every cached primitive (they are destroyed once no running op holds them).
    func removeAll() { entries.withLock { $0.removeAll() } }
}
