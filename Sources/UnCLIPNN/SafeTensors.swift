import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Reading of the safetensors format (https://github.com/huggingface/safetensors):
//   8 bytes   little-endian UInt64 N, the header length
//   N bytes   a UTF-8 JSON object: name → {"dtype", "shape", "data_offsets": [begin, end]}, plus an optional
//             "__metadata__" string → string map; offsets are relative to the data section
//   rest      the data section, little-endian tensors in row-major order
// Every header field is validated before any tensor byte is touched, so a malformed file throws instead of
// reading out of bounds.

/// The element types a safetensors file can declare.
public enum SafeTensorsDType: String, CaseIterable, Sendable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2: return 1
        }
    }

    /// Whether the type holds integers (or booleans), readable exactly by `int64s`.
    public var isInteger: Bool {
        switch self {
        case .i64, .i32, .i16, .i8, .u64, .u32, .u16, .u8, .bool: return true
        default: return false
        }
    }
}

/// A reason a safetensors file or sharded checkpoint could not be read or written.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable {
    /// The file could not be opened, sized or mapped.
    case cannotOpen(file: String, reason: String)
    /// The file is shorter than the 8-byte header length, or the declared header does not fit in it.
    case truncated(file: String, detail: String)
    /// The header length is implausibly large.
    case headerTooLarge(file: String, length: UInt64, limit: Int)
    /// The header is not valid UTF-8 JSON, or not a JSON object.
    case invalidHeader(file: String, detail: String)
    /// One tensor entry of the header is malformed (bad dtype, shape, offsets or byte count).
    case invalidEntry(file: String, tensor: String, detail: String)
    /// Two tensors' byte ranges overlap.
    case overlappingTensors(file: String, first: String, second: String)
    /// The requested tensor is not in the file (or not in any shard).
    case missingTensor(file: String, tensor: String)
    /// The tensor's dtype cannot be converted as asked.
    case unsupportedDType(file: String, tensor: String, dtype: String, wanted: String)
    /// A sharded checkpoint's index is malformed.
    case invalidIndex(file: String, detail: String)
    /// A shard named by an index does not exist or cannot be read.
    case missingShard(index: String, shard: String, reason: String)
    /// Writing a file failed.
    case writeFailed(file: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(file, reason):
            return "safetensors: cannot open \(file): \(reason)"
        case let .truncated(file, detail):
            return "safetensors: \(file) is truncated: \(detail)"
        case let .headerTooLarge(file, length, limit):
            return "safetensors: \(file) declares a header of \(length) bytes, more than the \(limit)-byte limit (not a safetensors file?)"
        case let .invalidHeader(file, detail):
            return "safetensors: \(file) has an invalid header: \(detail)"
        case let .invalidEntry(file, tensor, detail):
            return "safetensors: \(file), tensor '\(tensor)': \(detail)"
        case let .overlappingTensors(file, first, second):
            return "safetensors: \(file): the data of tensors '\(first)' and '\(second)' overlap"
        case let .missingTensor(file, tensor):
            return "safetensors: \(file) has no tensor '\(tensor)'"
        case let .unsupportedDType(file, tensor, dtype, wanted):
            return "safetensors: \(file), tensor '\(tensor)': dtype \(dtype) cannot be read as \(wanted)"
        case let .invalidIndex(file, detail):
            return "safetensors index \(file): \(detail)"
        case let .missingShard(index, shard, reason):
            return "safetensors index \(index): shard '\(shard)' cannot be opened: \(reason)"
        case let .writeFailed(file, reason):
            return "safetensors: cannot write \(file): \(reason)"
        }
    }
}

/// The declared type and shape of one tensor in a safetensors file.
public struct SafeTensorInfo: Equatable, Sendable {
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Byte range within the data section.
    public let byteRange: Range<Int>
    /// Number of elements (1 for a scalar).
    public var count: Int { shape.reduce(1, *) }
}

/// Something that serves named tensors: a single safetensors file or a sharded checkpoint.
public protocol TensorSource: AnyObject {
    /// All tensor names, sorted.
    var names: [String] { get }
    /// The dtype and shape of a tensor, or nil if there is no such tensor.
    func info(_ name: String) -> SafeTensorInfo?
    /// The tensor as Float32 (zero copy where the file allows it).
    func tensor(_ name: String) throws -> Tensor
    /// An integer tensor's values, exactly.
    func int64s(_ name: String) throws -> [Int64]
}

extension TensorSource {
    /// Whether the source holds a tensor of that name.
    public func contains(_ name: String) -> Bool { info(name) != nil }

    /// Every tensor, by name, as Float32.
    public func allTensors() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for name in names { out[name] = try tensor(name) }
        return out
    }
}

/// A read-only memory map of a whole file, unmapped when the last tensor borrowing it is gone.
final class MappedFile: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let size: Int

    init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw SafeTensorsError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SafeTensorsError.cannotOpen(file: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw SafeTensorsError.cannotOpen(file: path, reason: "not a regular file") }
        size = Int(st.st_size)
        guard size >= 8 else {
            throw SafeTensorsError.truncated(file: path, detail: "the file has \(size) bytes, fewer than the 8-byte header length field")
        }
        // A private writable mapping: the file is never modified, but a training loop that updates a loaded
        // parameter in place gets a copy-on-write page instead of a segmentation fault.
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw SafeTensorsError.cannotOpen(file: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = p
    }

    deinit { munmap(base, size) }
}

/// A safetensors file, memory-mapped and validated on open.
///
/// F32 tensors at 4-byte-aligned offsets are served without copying: the returned `Tensor` borrows the mapped
/// memory and keeps the mapping alive. Other float types (F16, BF16, F64, unaligned F32) and integer types are
/// converted to new Float32 tensors.
public final class SafeTensorsFile: TensorSource {
    /// The file path, used in error messages.
    public let path: String
    /// The `__metadata__` map (empty when absent).
    public let metadata: [String: String]
    /// All tensor names, sorted.
    public let names: [String]

    private let entries: [String: SafeTensorInfo]
    private let mapping: MappedFile
    private let dataStart: Int

    /// The largest header accepted; the reference implementation uses the same 100 MB bound.
    public static let maxHeaderBytes = 100_000_000

    /// Opens, maps and validates `url`.
    public init(contentsOf url: URL) throws {
        path = url.path
        mapping = try MappedFile(path: path)
        let size = mapping.size
        let raw = UnsafeRawPointer(mapping.base)
        let declared = UInt64(littleEndian: raw.loadUnaligned(as: UInt64.self))
        guard declared <= UInt64(Self.maxHeaderBytes) else {
            throw SafeTensorsError.headerTooLarge(file: path, length: declared, limit: Self.maxHeaderBytes)
        }
        let headerLength = Int(declared)
        guard headerLength <= size - 8 else {
            throw SafeTensorsError.truncated(file: path, detail: "the header declares \(headerLength) bytes but only \(size - 8) follow the length field")
        }
        dataStart = 8 + headerLength
        let dataSize = size - dataStart
        let headerBytes = UnsafeRawBufferPointer(start: raw + 8, count: headerLength)
        let parsed = try Self.parseHeader(headerBytes, dataSize: dataSize, file: path)
        metadata = parsed.metadata
        entries = parsed.entries
        names = parsed.entries.keys.sorted()
    }

    /// The dtype and shape of `name`, or nil.
    public func info(_ name: String) -> SafeTensorInfo? { entries[name] }

    /// The tensor `name` as Float32: zero copy for aligned F32, converted otherwise.
    public func tensor(_ name: String) throws -> Tensor {
        let e = try entry(name)
        let n = e.count
        let src = UnsafeRawPointer(mapping.base) + dataStart + e.byteRange.lowerBound
        if n == 0 { return Tensor(uninitializedShape: e.shape) }
        if e.dtype == .f32, Int(bitPattern: src) % MemoryLayout<Float>.alignment == 0 {
            let p = UnsafeMutableRawPointer(mutating: src).assumingMemoryBound(to: Float.self)
            return Tensor(shape: e.shape, storage: TensorStorage(borrowing: p, count: n, owner: mapping, fileBacked: true))
        }
        let out = Tensor(uninitializedShape: e.shape)
        let dst = out.data
        switch e.dtype {
        case .f32: convert(n, src, dst) { $0.loadUnaligned(fromByteOffset: $1 * 4, as: Float.self) }
        case .f16:
            // A 256 KiB table: on many CPUs the Float16 → Float conversion is a library call per value, a look-up a load.
            Self.halfToFloat.withUnsafeBufferPointer { table in
                let t = table.baseAddress!
                convert(n, src, dst) { t[Int($0.loadUnaligned(fromByteOffset: $1 * 2, as: UInt16.self))] }
            }
        case .bf16: convert(n, src, dst) { Float(bitPattern: UInt32($0.loadUnaligned(fromByteOffset: $1 * 2, as: UInt16.self)) << 16) }
        case .f64: convert(n, src, dst) { Float($0.loadUnaligned(fromByteOffset: $1 * 8, as: Double.self)) }
        case .i64: convert(n, src, dst) { Float($0.loadUnaligned(fromByteOffset: $1 * 8, as: Int64.self)) }
        case .i32: convert(n, src, dst) { Float($0.loadUnaligned(fromByteOffset: $1 * 4, as: Int32.self)) }
        case .i16: convert(n, src, dst) { Float($0.loadUnaligned(fromByteOffset: $1 * 2, as: Int16.self)) }
        case .i8: convert(n, src, dst) { Float($0.load(fromByteOffset: $1, as: Int8.self)) }
        case .u64: convert(n, src, dst) { Float($0.loadUnaligned(fromByteOffset: $1 * 8, as: UInt64.self)) }
        case .u32: convert(n, src, dst) { Float($0.loadUnaligned(fromByteOffset: $1 * 4, as: UInt32.self)) }
        case .u16: convert(n, src, dst) { Float($0.loadUnaligned(fromByteOffset: $1 * 2, as: UInt16.self)) }
        case .u8: convert(n, src, dst) { Float($0.load(fromByteOffset: $1, as: UInt8.self)) }
        case .bool: convert(n, src, dst) { $0.load(fromByteOffset: $1, as: UInt8.self) != 0 ? 1 : 0 }
        case .f8e4m3, .f8e5m2:
            throw SafeTensorsError.unsupportedDType(file: path, tensor: name, dtype: e.dtype.rawValue, wanted: "Float32")
        }
        return out
    }

    /// The values of an integer (or BOOL) tensor, exactly.
    public func int64s(_ name: String) throws -> [Int64] {
        let e = try entry(name)
        let src = UnsafeRawPointer(mapping.base) + dataStart + e.byteRange.lowerBound
        let n = e.count
        switch e.dtype {
        case .i64: return (0..<n).map { src.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self) }
        case .i32: return (0..<n).map { Int64(src.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
        case .i16: return (0..<n).map { Int64(src.loadUnaligned(fromByteOffset: $0 * 2, as: Int16.self)) }
        case .i8: return (0..<n).map { Int64(src.load(fromByteOffset: $0, as: Int8.self)) }
        case .u32: return (0..<n).map { Int64(src.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)) }
        case .u16: return (0..<n).map { Int64(src.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)) }
        case .u8, .bool: return (0..<n).map { Int64(src.load(fromByteOffset: $0, as: UInt8.self)) }
        case .u64:
            var out = [Int64](); out.reserveCapacity(n)
            for i in 0..<n {
                let v = src.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
                guard let s = Int64(exactly: v) else {
                    throw SafeTensorsError.unsupportedDType(file: path, tensor: name, dtype: "U64 (value \(v))", wanted: "Int64")
                }
                out.append(s)
            }
            return out
        default:
            throw SafeTensorsError.unsupportedDType(file: path, tensor: name, dtype: e.dtype.rawValue, wanted: "Int64")
        }
    }

    /// Every Float16 bit pattern's Float32 value.
    private static let halfToFloat: [Float] = (0...UInt16.max).map { Float(Float16(bitPattern: $0)) }

    private func entry(_ name: String) throws -> SafeTensorInfo {
        guard let e = entries[name] else { throw SafeTensorsError.missingTensor(file: path, tensor: name) }
        return e
    }

    /// Converts `n` elements with `load(src, index)`, spread over the cores for large tensors.
    private func convert(_ n: Int, _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>,
                         _ load: (UnsafeRawPointer, Int) -> Float) {
        parallelFor(n, grain: 1 << 18) { range in
            for i in range { dst[i] = load(src, i) }
        }
    }

    // MARK: Header validation

    struct ParsedHeader {
        var metadata: [String: String]
        var entries: [String: SafeTensorInfo]
    }

    /// Parses and validates a header against a data section of `dataSize` bytes.
    static func parseHeader(_ bytes: UnsafeRawBufferPointer, dataSize: Int, file: String) throws -> ParsedHeader {
        let data = Data(bytes)
        guard String(data: data, encoding: .utf8) != nil else {
            throw SafeTensorsError.invalidHeader(file: file, detail: "the header is not UTF-8 text")
        }
        let json: JSONValue
        do {
            json = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw SafeTensorsError.invalidHeader(file: file, detail: "the header is not valid JSON (\(Self.shortReason(error)))")
        }
        guard case let .object(top) = json else {
            throw SafeTensorsError.invalidHeader(file: file, detail: "the header is a JSON \(json.kind), expected an object")
        }
        var metadata: [String: String] = [:]
        var entries: [String: SafeTensorInfo] = [:]
        for (name, value) in top {
            if name == "__metadata__" {
                guard case let .object(m) = value else {
                    throw SafeTensorsError.invalidHeader(file: file, detail: "__metadata__ is a JSON \(value.kind), expected an object of strings")
                }
                for (k, v) in m {
                    guard case let .string(s) = v else {
                        throw SafeTensorsError.invalidHeader(file: file, detail: "__metadata__['\(k)'] is a JSON \(v.kind), expected a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            entries[name] = try parseEntry(value, name: name, dataSize: dataSize, file: file)
        }
        // No two non-empty tensors may share bytes. Sorting by start makes it one linear sweep.
        let sorted = entries.filter { !$0.value.byteRange.isEmpty }
            .sorted { ($0.value.byteRange.lowerBound, $0.key) < ($1.value.byteRange.lowerBound, $1.key) }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.value.byteRange.lowerBound < a.value.byteRange.upperBound {
            throw SafeTensorsError.overlappingTensors(file: file, first: a.key, second: b.key)
        }
        return ParsedHeader(metadata: metadata, entries: entries)
    }

    private static func parseEntry(_ value: JSONValue, name: String, dataSize: Int, file: String) throws -> SafeTensorInfo {
        func bad(_ detail: String) -> SafeTensorsError { .invalidEntry(file: file, tensor: name, detail: detail) }
        guard case let .object(fields) = value else { throw bad("the entry is a JSON \(value.kind), expected an object") }
        for key in fields.keys where !["dtype", "shape", "data_offsets"].contains(key) {
            throw bad("unexpected field '\(key)'")
        }
        guard let dtypeValue = fields["dtype"] else { throw bad("missing 'dtype'") }
        guard case let .string(dtypeName) = dtypeValue else { throw bad("'dtype' is a JSON \(dtypeValue.kind), expected a string") }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw bad("unknown dtype '\(dtypeName)' (known: \(SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let shapeValue = fields["shape"] else { throw bad("missing 'shape'") }
        guard case let .array(dims) = shapeValue else { throw bad("'shape' is a JSON \(shapeValue.kind), expected an array") }
        var shape: [Int] = []
        var count = 1
        for d in dims {
            guard case let .integer(n) = d else { throw bad("shape \(shapeValue) holds a non-integer") }
            guard n >= 0 else { throw bad("shape \(shapeValue) has a negative extent") }
            let (product, overflow) = count.multipliedReportingOverflow(by: n)
            guard !overflow else { throw bad("shape \(shapeValue) has too many elements") }
            count = product
            shape.append(n)
        }
        let (byteCount, overflow) = count.multipliedReportingOverflow(by: dtype.size)
        guard !overflow else { throw bad("shape \(shapeValue) has too many bytes") }
        guard let offsetsValue = fields["data_offsets"] else { throw bad("missing 'data_offsets'") }
        guard case let .array(offsets) = offsetsValue, offsets.count == 2,
              case let .integer(begin) = offsets[0], case let .integer(end) = offsets[1] else {
            throw bad("'data_offsets' is \(offsetsValue), expected [begin, end]")
        }
        guard begin >= 0, begin <= end else { throw bad("data_offsets [\(begin), \(end)] are not an ordered non-negative range") }
        guard end <= dataSize else {
            throw bad("data_offsets [\(begin), \(end)] reach past the data section of \(dataSize) bytes (file truncated?)")
        }
        guard end - begin == byteCount else {
            throw bad("data_offsets [\(begin), \(end)] span \(end - begin) bytes but \(dtypeName) \(shape) needs \(byteCount)")
        }
        return SafeTensorInfo(dtype: dtype, shape: shape, byteRange: begin..<end)
    }

    private static func shortReason(_ error: Error) -> String {
        if case let DecodingError.dataCorrupted(context) = error {
            return (context.underlyingError.map { "\($0)" } ?? context.debugDescription)
        }
        return "\(error)"
    }
}

/// A parsed JSON value; integers are kept apart from other numbers so shapes and offsets are exact.
enum JSONValue: Decodable, CustomStringConvertible {
    case null
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .integer(i) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    /// The JSON type name, for error messages.
    var kind: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .integer, .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    var description: String {
        switch self {
        case .null: return "null"
        case let .bool(b): return "\(b)"
        case let .integer(i): return "\(i)"
        case let .number(d): return "\(d)"
        case let .string(s): return "\"\(s)\""
        case let .array(a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case let .object(o): return "{" + o.keys.sorted().map { "\"\($0)\": \(o[$0]!)" }.joined(separator: ", ") + "}"
        }
    }
}

/// A checkpoint split over several safetensors files by a `*.safetensors.index.json` file.
///
/// The index's `"weight_map"` maps each tensor name to a shard file in the index's folder. Every shard is opened
/// (mapped and validated) up front, and every mapped name must be present in its shard.
public final class ShardedSafeTensors: TensorSource {
    /// The index file path.
    public let path: String
    /// The index's `"metadata"` entries that are strings or numbers, as text.
    public let metadata: [String: String]
    /// All tensor names, sorted.
    public let names: [String]
    /// Shard file name for each tensor.
    public let weightMap: [String: String]
    private let shards: [String: SafeTensorsFile]

    /// Opens the index at `url` and every shard it names.
    public init(indexURL url: URL) throws {
        path = url.path
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw SafeTensorsError.cannotOpen(file: path, reason: error.localizedDescription)
        }
        let json: JSONValue
        do { json = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            throw SafeTensorsError.invalidIndex(file: path, detail: "not valid JSON")
        }
        guard case let .object(top) = json else { throw SafeTensorsError.invalidIndex(file: path, detail: "expected a JSON object, found \(json.kind)") }
        guard case let .object(map)? = top["weight_map"] else {
            throw SafeTensorsError.invalidIndex(file: path, detail: "missing or malformed \"weight_map\" object")
        }
        var weightMap: [String: String] = [:]
        for (name, v) in map {
            guard case let .string(shard) = v, !shard.isEmpty, !shard.contains("/") else {
                throw SafeTensorsError.invalidIndex(file: path, detail: "weight_map['\(name)'] is \(v), expected a shard file name")
            }
            weightMap[name] = shard
        }
        var metadata: [String: String] = [:]
        if case let .object(m)? = top["metadata"] {
            for (k, v) in m {
                switch v {
                case let .string(s): metadata[k] = s
                case let .integer(i): metadata[k] = String(i)
                case let .number(d): metadata[k] = String(d)
                default: break
                }
            }
        }
        let folder = url.deletingLastPathComponent()
        var shards: [String: SafeTensorsFile] = [:]
        for shard in Set(weightMap.values).sorted() {
            let shardURL = folder.appendingPathComponent(shard)
            guard FileManager.default.fileExists(atPath: shardURL.path) else {
                throw SafeTensorsError.missingShard(index: path, shard: shard, reason: "no such file in \(folder.path)")
            }
            shards[shard] = try SafeTensorsFile(contentsOf: shardURL)
        }
        for (name, shard) in weightMap where shards[shard]?.info(name) == nil {
            throw SafeTensorsError.invalidIndex(file: path, detail: "tensor '\(name)' is mapped to shard '\(shard)', which does not contain it")
        }
        self.weightMap = weightMap
        self.shards = shards
        self.metadata = metadata
        self.names = weightMap.keys.sorted()
    }

    public func info(_ name: String) -> SafeTensorInfo? {
        weightMap[name].flatMap { shards[$0]?.info(name) }
    }

    public func tensor(_ name: String) throws -> Tensor { try shard(for: name).tensor(name) }

    public func int64s(_ name: String) throws -> [Int64] { try shard(for: name).int64s(name) }

    private func shard(for name: String) throws -> SafeTensorsFile {
        guard let shard = weightMap[name], let file = shards[shard] else {
            throw SafeTensorsError.missingTensor(file: path, tensor: name)
        }
        return file
    }
}

/// Opening checkpoints without knowing whether they are sharded.
public enum SafeTensors {
    /// File names looked for, in order, when `open` is given a folder.
    public static let standardFileNames = [
        "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors",
        "model.safetensors.index.json", "model.safetensors",
    ]

    /// Opens a `.safetensors` file, a `.safetensors.index.json` sharded index, or a folder holding one of
    /// `standardFileNames`.
    public static func open(_ url: URL) throws -> TensorSource {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw SafeTensorsError.cannotOpen(file: url.path, reason: "no such file or folder")
        }
        if isDirectory.boolValue {
            for name in standardFileNames {
                let candidate = url.appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: candidate.path) { return try open(candidate) }
            }
            throw SafeTensorsError.cannotOpen(file: url.path, reason: "the folder holds none of \(standardFileNames.joined(separator: ", "))")
        }
        if url.lastPathComponent.hasSuffix(".index.json") { return try ShardedSafeTensors(indexURL: url) }
        return try SafeTensorsFile(contentsOf: url)
    }
}
