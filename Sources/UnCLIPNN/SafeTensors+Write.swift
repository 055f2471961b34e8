import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension SafeTensors {
    /// The float types `write` can store.
    public enum WriteDType: String, Sendable {
        case f32 = "F32", f16 = "F16", bf16 = "BF16"

        var size: Int { self == .f32 ? 4 : 2 }
    }

    /// Writes `tensors` to a safetensors file at `url`, atomically (a temporary file in the same folder,
    /// then a rename), converting to `dtype`.
    ///
    /// Matches the reference implementation's layout: header keys sorted with `__metadata__` first, tensors
    /// stored in name order, the header padded with spaces to a multiple of 8 bytes so the data section is aligned.
    public static func write(_ tensors: [String: Tensor], to url: URL, dtype: WriteDType = .f32,
                             metadata: [String: String] = [:]) throws {
        let path = url.path
        let names = tensors.keys.sorted()
        if let bad = names.first(where: { $0 == "__metadata__" || $0.isEmpty }) {
            throw SafeTensorsError.writeFailed(file: path, reason: "'\(bad)' cannot be a tensor name")
        }
        var header = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let items = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            parts.append("\"__metadata__\":{" + items.joined(separator: ",") + "}")
        }
        var offset = 0
        for name in names {
            let t = tensors[name]!
            let bytes = t.count * dtype.size
            let shape = t.shape.map(String.init).joined(separator: ",")
            parts.append("\(jsonString(name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        header += parts.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        headerBytes += [UInt8](repeating: UInt8(ascii: " "), count: (8 - headerBytes.count % 8) % 8)

        let folder = url.deletingLastPathComponent().path
        let temp = folder + "/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = posixOpen(temp, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw SafeTensorsError.writeFailed(file: path, reason: String(cString: strerror(errno))) }
        var ok = false
        defer {
            if !ok { close(fd); unlink(temp) }
        }
        func put(_ p: UnsafeRawPointer, _ n: Int) throws {
            var done = 0
            while done < n {
                let r = posixWrite(fd, p + done, n - done)
                if r < 0 {
                    if errno == EINTR { continue }
                    throw SafeTensorsError.writeFailed(file: path, reason: String(cString: strerror(errno)))
                }
                done += r
            }
        }
        var length = UInt64(headerBytes.count).littleEndian
        try withUnsafeBytes(of: &length) { try put($0.baseAddress!, 8) }
        try headerBytes.withUnsafeBytes { try put($0.baseAddress!, $0.count) }
        // Convert in chunks so a multi-gigabyte checkpoint never needs a second full copy in memory.
        let chunk = 1 << 20
        var buffer = [UInt16](repeating: 0, count: chunk)
        for name in names {
            let t = tensors[name]!
            let src = t.data
            switch dtype {
            case .f32:
                try put(UnsafeRawPointer(src), t.count * 4)
            case .f16, .bf16:
                var start = 0
                while start < t.count {
                    let n = min(chunk, t.count - start)
                    buffer.withUnsafeMutableBufferPointer { b in
                        if dtype == .f16 {
                            for i in 0..<n { b[i] = Float16(src[start + i]).bitPattern }
                        } else {
                            for i in 0..<n { b[i] = bfloat16Bits(src[start + i]) }
                        }
                    }
                    try buffer.withUnsafeBytes { try put($0.baseAddress!, n * 2) }
                    start += n
                }
            }
        }
        guard fsync(fd) == 0 else { throw SafeTensorsError.writeFailed(file: path, reason: "fsync: \(String(cString: strerror(errno)))") }
        close(fd)
        // The crash-safety test (Tests/UnCLIPCLITests/CrashSafetyTests) kills training here, between write and rename.
        if let value = ProcessInfo.processInfo.environment["UNCLIP_TEST_STALL_CHECKPOINT_WRITE"], let seconds = Double(value), seconds > 0 {
            usleep(useconds_t(min(seconds, 60) * 1_000_000))
        }
        guard rename(temp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temp)
            ok = true  // already closed and removed
            throw SafeTensorsError.writeFailed(file: path, reason: "rename: \(reason)")
        }
        ok = true
        // The rename itself must reach the disk before the caller counts the file as saved.
        let dir = posixOpen(folder, O_RDONLY, 0)
        if dir >= 0 { _ = fsync(dir); close(dir) }
    }

    /// The bfloat16 bit pattern nearest to `x`, ties to even.
    ///
    /// Matches PyTorch's `round_to_nearest_even`: NaN stays a quiet NaN with its sign, overflow rounds to ±inf.
    @inline(__always)
    public static func bfloat16Bits(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x0040) }
        let bias = 0x7FFF + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ bias) >> 16)
    }

    /// `s` as a JSON string literal.
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(u.value, radix: 16).count) + String(u.value, radix: 16)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

// File-scope wrappers: inside `SafeTensors` the names `open` and `write` refer to its own static methods.
private func posixOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
private func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }
