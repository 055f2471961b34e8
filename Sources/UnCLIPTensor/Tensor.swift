import Synchronization

/// A Float32 tensor of any rank, stored contiguously in row-major order.
///
/// Tensors are reference types: the graph of a differentiable computation links them. Views share storage
/// where it is cheap (`reshaped`, slices along the first axis); other layout changes copy.
///
/// In inference a convolution's output may exist only in oneDNN's blocked layout (`BlockedValues`, see
/// BlockedLayout.swift): the ops that read that layout (convolution, the fused group norm, same-shape addition,
/// channel concatenation) use it as it is, and the first access to `data` or `storage` by anything else converts it
/// to row-major order, once. A loaded convolution weight may likewise keep only its reordered copy (`keepOnly`).
public final class Tensor: CustomStringConvertible {
    /// The extent of each axis, outermost first.
    public let shape: [Int]
    /// Number of elements.
    public let count: Int
    /// The memory this tensor views. Replaced only by `assign(_:)` (loading weights into a parameter).
    public var storage: TensorStorage { makePlain(); return plainStorage }
    /// Element offset of this view into `storage`.
    public var offset: Int { makePlain(); return plainOffset }
    private var plainStorage: TensorStorage
    private var plainOffset: Int
    /// The values in a blocked layout, while they exist only there (`hasBlocked` says so without the lock).
    private var blocked: BlockedValues?
    private let hasBlocked: Atomic<Bool>

    /// Whether gradients flow to this tensor. Set on parameters and on inputs you differentiate.
    public var requiresGrad: Bool
    /// The accumulated gradient of a leaf tensor after `backward()`.
    public var grad: Tensor?
    /// How this tensor was computed, when it is part of a recorded graph.
    public internal(set) var gradFn: GradFunction?

    // MARK: Creation

    /// A new tensor with uninitialised contents.
    public init(uninitializedShape shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in shape \(shape)")
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.plainStorage = TensorStorage(uninitialized: count)
        self.plainOffset = 0
        self.hasBlocked = Atomic(false)
        self.requiresGrad = false
    }

    /// A tensor whose values are `blocked` (an NCHW tensor in a oneDNN blocked layout); the row-major storage is
    /// allocated and filled on first use.
    init(shape: [Int], blocked: BlockedValues) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.plainStorage = TensorStorage.empty
        self.plainOffset = 0
        self.blocked = blocked
        self.hasBlocked = Atomic(true)
        self.requiresGrad = false
    }

    /// A tensor viewing `storage` from `offset`.
    public init(shape: [Int], storage: TensorStorage, offset: Int = 0) {
        let n = shape.reduce(1, *)
        precondition(offset >= 0 && offset + n <= storage.count, "view \(shape) at \(offset) exceeds storage of \(storage.count)")
        self.shape = shape
        self.count = n
        self.plainStorage = storage
        self.plainOffset = offset
        self.hasBlocked = Atomic(false)
        self.requiresGrad = false
    }

    /// A tensor holding a copy of `values` (row-major).
    public convenience init(shape: [Int], _ values: [Float]) {
        self.init(uninitializedShape: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape) (\(count) elements)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    /// A 0-dimensional tensor.
    public convenience init(scalar: Float) { self.init(shape: [], [scalar]) }

    public static func empty(_ shape: [Int]) -> Tensor { Tensor(uninitializedShape: shape) }

    public static func full(_ shape: [Int], _ value: Float) -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        t.data.update(repeating: value, count: t.count)
        return t
    }

    public static func zeros(_ shape: [Int]) -> Tensor {
        let n = shape.reduce(1, *)
        if untouchedZeros, n >= 1 << 18, shape.allSatisfy({ $0 >= 0 }), let s = TensorStorage.untouchedZeros(n) {
            return Tensor(shape: shape, storage: s)
        }
        return full(shape, 0)
    }

    /// Whether `zeros` of 1 MiB and more comes from memory the kernel maps on first write (`withUntouchedZeros`).
    @TaskLocal static var untouchedZeros = false

    /// Runs `body` (building a model whose weights a load will replace) with large `zeros` tensors in untouched,
    /// lazily mapped memory: a parameter that is never written then never takes RAM, so loading a model does not hold
    /// a zero-filled copy of it beside the loaded weights. The values are zeros either way.
    public static func withUntouchedZeros<T>(_ body: () throws -> T) rethrows -> T {
        try $untouchedZeros.withValue(true, operation: body)
    }
    public static func ones(_ shape: [Int]) -> Tensor { full(shape, 1) }

    /// 0, 1, …, n−1.
    public static func arange(_ n: Int) -> Tensor {
        let t = Tensor(uninitializedShape: [n])
        for i in 0..<n { t.data[i] = Float(i) }
        return t
    }

    // MARK: Access

    /// Pointer to the first element of this view.
    @inline(__always) public var data: UnsafeMutablePointer<Float> { makePlain(); return plainStorage.base + plainOffset }

    /// The blocked form of the values, when they have not been made row-major yet.
    var blockedValues: BlockedValues? {
        guard hasBlocked.load(ordering: .acquiring) else { return nil }
        return BlockedValues.lock.withLock { _ in blocked }
    }

    /// Converts blocked values to row-major storage (once; concurrent readers wait for the first).
    @inline(__always) private func makePlain() {
        if hasBlocked.load(ordering: .acquiring) { convertBlocked() }
    }

    /// Keeps only `values` (this tensor's values in another layout, losslessly), releasing the row-major storage;
    /// a later reader of `data` gets them back, converted. Returns false (and changes nothing) when the tensor
    /// already holds blocked values. Used for read-only convolution weights once reordered (`WeightCache`).
    func keepOnly(_ values: BlockedValues) -> Bool {
        BlockedValues.lock.withLock { _ in
            guard blocked == nil else { return false }
            let released = plainStorage
            blocked = values
            plainStorage = TensorStorage.empty
            plainOffset = 0
            hasBlocked.store(true, ordering: .releasing)
            released.discardWhenReleased()
            return true
        }
    }

    @inline(never) private func convertBlocked() {
        BlockedValues.lock.withLock { _ in
            guard let b = blocked else { return }
            let s = TensorStorage(uninitialized: count)
            b.writePlain(into: s.base)
            if b.readOnly { s.markReadOnly() }
            plainStorage = s
            plainOffset = 0
            blocked = nil
            hasBlocked.store(false, ordering: .releasing)
        }
    }
    public var rank: Int { shape.count }

    /// The elements in row-major order.
    public func toArray() -> [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// The rows of a [N, D] tensor as N arrays of D elements.
    public func rowArrays() -> [[Float]] {
        precondition(rank == 2, "rowArrays of a tensor with shape \(shape)")
        let d = shape[1]
        return (0..<shape[0]).map { Array(UnsafeBufferPointer(start: data + $0 * d, count: d)) }
    }

    /// The single element of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item of a tensor with shape \(shape)")
        return data[0]
    }

    /// Element at a full multi-index.
    public subscript(_ index: Int...) -> Float {
        get { data[flatIndex(index)] }
        set { data[flatIndex(index)] = newValue }
    }

    private func flatIndex(_ index: [Int]) -> Int {
        precondition(index.count == rank, "index \(index) for shape \(shape)")
        var flat = 0
        for (i, n) in zip(index, shape) { precondition(i >= 0 && i < n, "index \(index) out of range for shape \(shape)"); flat = flat * n + i }
        return flat
    }

    /// Row-major strides of `shape`.
    public static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = acc; acc *= shape[i] }
        return s
    }

    /// Resolves a possibly negative axis.
    @inline(__always) public func axis(_ a: Int) -> Int {
        let r = a < 0 ? a + rank : a
        precondition(r >= 0 && r < max(rank, 1), "axis \(a) out of range for rank \(rank)")
        return r
    }

    /// Hands back the resident pages of this tensor's values when they are a view of a memory-mapped file (they come
    /// back from the file when read again); nothing otherwise. A loader calls it after checking a weight, and the
    /// engine after converting a read-only weight to bf16, so the fp32 file pages do not stay resident beside it.
    public func dropResidentPages() {
        BlockedValues.lock.withLock { _ in
            guard blocked == nil else { return }  // its row-major memory is already released
            plainStorage.dropResidentPages(plainOffset..<plainOffset + count)
        }
    }

    /// Replaces this tensor's contents by `other`'s memory (same shape), without copying.
    ///
    /// Used to load weights into existing parameters: a memory-mapped checkpoint becomes the parameter's storage.
    public func assign(_ other: Tensor) {
        precondition(other.shape == shape, "assign: shape \(other.shape) into \(shape)")
        let (s, o) = (other.storage, other.offset)
        makePlain()
        plainStorage = s
        plainOffset = o
    }

    /// Copies `other`'s values into this tensor's memory (same element count).
    public func copyValues(from other: Tensor) {
        precondition(other.count == count, "copyValues: \(other.count) elements into \(count)")
        precondition(!storage.isReadOnly, "copyValues: this tensor's storage is read-only (a model loaded for inference); assign a copy instead")
        data.update(from: other.data, count: count)
    }

    /// A new tensor with the same values, not linked to the graph.
    public func clone() -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// This tensor's values cut from the graph (shares memory).
    public func detached() -> Tensor { Tensor(shape: shape, storage: storage, offset: offset) }

    public var description: String {
        let values = toArray()
        let shown = values.prefix(8).map { String($0) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(shown)\(values.count > 8 ? ", …" : "")])"
    }
}
