import Foundation
import XCTest
@testable import UnCLIPNN
@testable import UnCLIPTensor

/// Fixtures written by Scripts/make_safetensors_fixtures.py (the `safetensors` PyPI package and torch),
/// located next to this file so no resource bundle is needed.
private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("Fixtures/safetensors")

private struct ExpectedTensor: Decodable {
    let shape: [Int]
    let values: [Double]
    let dtype: String?
    let ints: [Int64]?
}

final class SafeTensorsTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("safetensors-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    private func expected() throws -> [String: [String: ExpectedTensor]] {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return try decoder.decode([String: [String: ExpectedTensor]].self,
                                  from: Data(contentsOf: fixtures.appendingPathComponent("expected.json")))
    }

    // MARK: Reading reference files

    func testReadsF32FileZeroCopyWithMetadata() throws {
        let file = try SafeTensorsFile(contentsOf: fixtures.appendingPathComponent("f32.safetensors"))
        XCTAssertEqual(file.names, ["a.weight", "b.bias", "scalar"])
        XCTAssertEqual(file.metadata, ["format": "pt", "note": "fixture \"quoted\""])
        let want = try expected()["f32.safetensors"]!
        for name in file.names {
            let t = try file.tensor(name)
            XCTAssertEqual(t.shape, want[name]!.shape, name)
            XCTAssertEqual(t.toArray(), want[name]!.values.map { Float($0) }, name)
            // Aligned F32 data is borrowed from the mapping, not copied: a second read views the same bytes.
            XCTAssertEqual(try file.tensor(name).data, t.data, name)
        }
        XCTAssertEqual(file.info("a.weight")?.dtype, .f32)
        XCTAssertEqual(file.info("scalar")?.shape, [])
        XCTAssertNil(file.info("nope"))
    }

    func testBorrowedTensorOutlivesFileObject() throws {
        var file: SafeTensorsFile? = try SafeTensorsFile(contentsOf: fixtures.appendingPathComponent("f32.safetensors"))
        let t = try file!.tensor("b.bias")
        file = nil  // the tensor's storage keeps the mapping alive
        XCTAssertEqual(t.toArray(), [1.5, -2.25, 3e-8, 1e30])
    }

    func testReadsEveryDTypeAsFloat() throws {
        let file = try SafeTensorsFile(contentsOf: fixtures.appendingPathComponent("mixed.safetensors"))
        let want = try expected()["mixed.safetensors"]!
        XCTAssertEqual(Set(file.names), Set(want.keys))
        for (name, w) in want {
            XCTAssertEqual(file.info(name)?.dtype.rawValue, w.dtype, name)
            let t = try file.tensor(name)
            XCTAssertEqual(t.shape, w.shape, name)
            // Each stored value is exactly representable in Float32 except the F64 and large I64 ones.
            XCTAssertEqual(t.toArray(), w.values.map { Float($0) }, name)
        }
        XCTAssertEqual(try file.int64s("position_ids"), (0..<77).map { Int64($0) })
        XCTAssertEqual(try file.int64s("big_i64"), want["big_i64"]!.ints)
        XCTAssertEqual(try file.int64s("i32"), [-3, 0, 2_147_483_647])
        XCTAssertEqual(try file.int64s("mask"), [1, 0, 1])
        XCTAssertThrowsError(try file.int64s("half")) { error in
            XCTAssertEqual(error as? SafeTensorsError,
                           .unsupportedDType(file: file.path, tensor: "half", dtype: "F16", wanted: "Int64"))
        }
        XCTAssertThrowsError(try file.tensor("missing")) { error in
            XCTAssertTrue("\(error)".contains("no tensor 'missing'"), "\(error)")
        }
    }

    func testShardedCheckpoint() throws {
        let index = fixtures.appendingPathComponent("sharded/model.safetensors.index.json")
        let sharded = try ShardedSafeTensors(indexURL: index)
        XCTAssertEqual(sharded.names, ["layer.0.bias", "layer.0.weight", "layer.1.steps", "layer.1.weight"])
        XCTAssertEqual(try sharded.tensor("layer.0.bias").toArray(), [0.5, -0.5])
        XCTAssertEqual(try sharded.tensor("layer.1.weight").toArray(), [2, 2, 2])
        XCTAssertEqual(try sharded.int64s("layer.1.steps"), [0, 1, 2, 3])
        XCTAssertEqual(sharded.info("layer.0.weight")?.shape, [2, 2])
        XCTAssertEqual(sharded.metadata["total_size"], "68")
        // `open` finds the index from the folder too.
        let opened = try SafeTensors.open(index.deletingLastPathComponent())
        XCTAssertTrue(opened is ShardedSafeTensors)
        XCTAssertEqual(try opened.allTensors().count, 4)
    }

    func testShardedErrorsNameShardAndTensor() throws {
        let folder = scratch!
        let shard = fixtures.appendingPathComponent("sharded/model-00001-of-00002.safetensors")
        try FileManager.default.copyItem(at: shard, to: folder.appendingPathComponent("a.safetensors"))
        let missingShard = folder.appendingPathComponent("missing.index.json")
        try Data(#"{"weight_map": {"layer.0.bias": "a.safetensors", "x": "b.safetensors"}}"#.utf8).write(to: missingShard)
        XCTAssertThrowsError(try ShardedSafeTensors(indexURL: missingShard)) { error in
            XCTAssertTrue("\(error)".contains("shard 'b.safetensors'"), "\(error)")
        }
        let wrongShard = folder.appendingPathComponent("wrong.index.json")
        try Data(#"{"weight_map": {"layer.9.weight": "a.safetensors"}}"#.utf8).write(to: wrongShard)
        XCTAssertThrowsError(try ShardedSafeTensors(indexURL: wrongShard)) { error in
            XCTAssertTrue("\(error)".contains("'layer.9.weight'") && "\(error)".contains("a.safetensors"), "\(error)")
        }
        let noMap = folder.appendingPathComponent("nomap.index.json")
        try Data(#"{"metadata": {}}"#.utf8).write(to: noMap)
        XCTAssertThrowsError(try ShardedSafeTensors(indexURL: noMap)) { error in
            XCTAssertTrue("\(error)".contains("weight_map"), "\(error)")
        }
        let escape = folder.appendingPathComponent("escape.index.json")
        try Data(#"{"weight_map": {"x": "../etc/passwd"}}"#.utf8).write(to: escape)
        XCTAssertThrowsError(try ShardedSafeTensors(indexURL: escape))
    }

    // MARK: Writing

    func testWriterMatchesReferenceBytesForF16AndBF16() throws {
        let input = try SafeTensorsFile(contentsOf: fixtures.appendingPathComponent("conversion_input.safetensors"))
        let tensors = try input.allTensors()
        for (dtype, reference) in [(SafeTensors.WriteDType.f16, "conversion_f16.safetensors"),
                                   (.bf16, "conversion_bf16.safetensors"),
                                   (.f32, "conversion_input.safetensors")] {
            let out = scratch.appendingPathComponent("out-\(dtype.rawValue).safetensors")
            try SafeTensors.write(tensors, to: out, dtype: dtype)
            let ours = try Data(contentsOf: out)
            let theirs = try Data(contentsOf: fixtures.appendingPathComponent(reference))
            // Same header text and padding, same rounding of every value (ties, overflow, subnormals). NaN payloads
            // may differ: torch's vectorised bf16 conversion writes 0xFFFF, its scalar one (and ours) 0x7FC0.
            XCTAssertEqual(ours.count, theirs.count, dtype.rawValue)
            let headerEnd = 8 + Int(theirs.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
            XCTAssertEqual(ours.prefix(headerEnd), theirs.prefix(headerEnd), "\(dtype.rawValue) header differs from the reference")
            guard dtype != .f32 else { XCTAssertEqual(ours, theirs); continue }
            let a = ours.dropFirst(headerEnd).withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
            let b = theirs.dropFirst(headerEnd).withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
            func isNaN(_ h: UInt16) -> Bool {
                dtype == .f16 ? Float16(bitPattern: h).isNaN : Float(bitPattern: UInt32(h) << 16).isNaN
            }
            for (i, (x, y)) in zip(a, b).enumerated() where x != y && !(isNaN(x) && isNaN(y)) {
                XCTFail("\(dtype.rawValue) element \(i): ours 0x\(String(x, radix: 16)), reference 0x\(String(y, radix: 16))")
            }
        }
    }

    func testWriteReadRoundTripWithMetadataAndAwkwardNames() throws {
        let url = scratch.appendingPathComponent("rt.safetensors")
        let a = Tensor(shape: [2, 2], [1, -2, 3.25, 1e-3])
        let tensors = ["w\"eird\\name\n": a, "b": Tensor(shape: [0], []), "s": Tensor(scalar: 4)]
        try SafeTensors.write(tensors, to: url, metadata: ["format": "pt", "ü": "ß\t"])
        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(file.names, ["b", "s", "w\"eird\\name\n"])
        XCTAssertEqual(file.metadata, ["format": "pt", "ü": "ß\t"])
        XCTAssertEqual(try file.tensor("w\"eird\\name\n").toArray(), a.toArray())
        XCTAssertEqual(try file.tensor("b").shape, [0])
        XCTAssertEqual(try file.tensor("s").shape, [])
        // The header is padded to 8 bytes so F32 data starts aligned.
        let bytes = try Data(contentsOf: url)
        let n = bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual(n % 8, 0)
        // No temporary files are left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path), ["rt.safetensors"])
    }

    func testBFloat16Rounding() {
        XCTAssertEqual(SafeTensors.bfloat16Bits(Float(bitPattern: 0x3F80_8000)), 0x3F80)  // tie → even
        XCTAssertEqual(SafeTensors.bfloat16Bits(Float(bitPattern: 0x3F81_8000)), 0x3F82)  // tie → even (up)
        XCTAssertEqual(SafeTensors.bfloat16Bits(Float(bitPattern: 0x3F80_8001)), 0x3F81)
        XCTAssertEqual(SafeTensors.bfloat16Bits(.infinity), 0x7F80)
        XCTAssertEqual(SafeTensors.bfloat16Bits(.greatestFiniteMagnitude), 0x7F80)
        XCTAssertEqual(SafeTensors.bfloat16Bits(-.nan) & 0x7FC0, 0x7FC0)
        XCTAssertEqual(SafeTensors.bfloat16Bits(Float(bitPattern: 0x7F80_0001)), 0x7FC0)  // signalling NaN stays NaN
    }

    func testUnalignedF32IsCopied() throws {
        // An F32 tensor at data offset 2 (after a U8 pair) cannot be borrowed; it must be read unaligned.
        let values: [Float] = [1.5, -7, 1e-20]
        var data: [UInt8] = [9, 8]
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data += $0 } }
        let url = try makeFile(#"{"p":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"x":{"dtype":"F32","shape":[3],"data_offsets":[2,14]}}"#, data)
        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(try file.tensor("x").toArray(), values)
        XCTAssertEqual(try file.int64s("p"), [9, 8])
    }

    // MARK: Malformed files

    private func makeFile(_ header: String, _ data: [UInt8], declaredLength: UInt64? = nil, name: String = "bad.safetensors") throws -> URL {
        var bytes = [UInt8]()
        let h = Array(header.utf8)
        withUnsafeBytes(of: (declaredLength ?? UInt64(h.count)).littleEndian) { bytes += $0 }
        bytes += h + data
        let url = scratch.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url
    }

    private func assertRejects(_ url: URL, mentioning words: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensorsFile(contentsOf: url), file: file, line: line) { error in
            XCTAssertTrue(error is SafeTensorsError, "\(type(of: error))", file: file, line: line)
            let message = "\(error)"
            XCTAssertTrue(message.contains(url.path), "message does not name the file: \(message)", file: file, line: line)
            for w in words {
                XCTAssertTrue(message.contains(w), "message lacks '\(w)': \(message)", file: file, line: line)
            }
        }
    }

    private let good = #"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
    private let eightBytes = [UInt8](repeating: 0, count: 8)

    func testRejectsEmptyAndTinyFiles() throws {
        assertRejects(try makeFile("", [], declaredLength: nil, name: "e.safetensors").truncatingFile(to: 0), mentioning: ["0 bytes"])
        assertRejects(try makeFile("", [], name: "t.safetensors").truncatingFile(to: 5), mentioning: ["5 bytes"])
    }

    func testRejectsTruncatedFile() throws {
        let full = try makeFile(good, eightBytes)
        let size = try Data(contentsOf: full).count
        assertRejects(try full.truncatingFile(to: size - 3), mentioning: ["'t'", "data section"])
        assertRejects(try full.truncatingFile(to: 20), mentioning: ["header declares"])
    }

    func testRejectsHeaderLongerThanFileOrLimit() throws {
        assertRejects(try makeFile(good, eightBytes, declaredLength: 1000), mentioning: ["header declares 1000 bytes"])
        assertRejects(try makeFile(good, eightBytes, declaredLength: UInt64.max), mentioning: ["limit"])
        assertRejects(try makeFile(good, eightBytes, declaredLength: 1 << 40), mentioning: ["limit"])
    }

    func testRejectsNonJSONAndNonObjectHeaders() throws {
        assertRejects(try makeFile("this is not json", eightBytes), mentioning: ["not valid JSON"])
        assertRejects(try makeFile(#"[{"dtype":"F32"}]"#, eightBytes), mentioning: ["array", "expected an object"])
        assertRejects(try makeFile("\u{FF}\u{FE}", eightBytes), mentioning: ["header"])
        var invalidUTF8 = [UInt8]()
        withUnsafeBytes(of: UInt64(3).littleEndian) { invalidUTF8 += $0 }
        invalidUTF8 += [0xC3, 0x28, 0xFF]
        let url = scratch.appendingPathComponent("utf8.safetensors")
        try Data(invalidUTF8).write(to: url)
        assertRejects(url, mentioning: ["UTF-8"])
        assertRejects(try makeFile(#"{"__metadata__":{"a":1}}"#, []), mentioning: ["__metadata__"])
        assertRejects(try makeFile(#"{"t":[1,2]}"#, []), mentioning: ["'t'", "expected an object"])
    }

    func testRejectsBadEntries() throws {
        assertRejects(try makeFile(#"{"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#, eightBytes), mentioning: ["'t'", "unknown dtype 'F33'"])
        assertRejects(try makeFile(#"{"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, eightBytes), mentioning: ["'t'", "negative"])
        assertRejects(try makeFile(#"{"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, eightBytes), mentioning: ["non-integer"])
        assertRejects(try makeFile(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}"#, eightBytes), mentioning: ["'t'", "past the data section"])
        assertRejects(try makeFile(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[4,0]}}"#, eightBytes), mentioning: ["'t'", "ordered"])
        assertRejects(try makeFile(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}"#, eightBytes), mentioning: ["'t'"])
        assertRejects(try makeFile(#"{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, eightBytes + eightBytes), mentioning: ["'t'", "needs 12"])
        assertRejects(try makeFile(#"{"t":{"dtype":"F32","shape":[2]}}"#, eightBytes), mentioning: ["missing 'data_offsets'"])
        assertRejects(try makeFile(#"{"t":{"shape":[2],"data_offsets":[0,8]}}"#, eightBytes), mentioning: ["missing 'dtype'"])
        assertRejects(try makeFile(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#, eightBytes), mentioning: ["[begin, end]"])
        assertRejects(try makeFile(#"{"t":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#, eightBytes),
                      mentioning: ["too many"])
        assertRejects(try makeFile(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,99999999999999999999999]}}"#, eightBytes),
                      mentioning: ["'t'"])
    }

    func testRejectsOverlappingTensors() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        assertRejects(try makeFile(header, eightBytes + eightBytes), mentioning: ["'a'", "'b'", "overlap"])
        // Empty tensors may sit anywhere, including inside another's range.
        let ok = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#
        XCTAssertNoThrow(try SafeTensorsFile(contentsOf: try makeFile(ok, eightBytes)))
    }

    func testRejectsPNGPassedAsSafeTensors() throws {
        // A real PNG signature plus IHDR: the first 8 bytes read as a huge header length.
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52,
                            0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0, 0x90, 0x77, 0x53, 0xDE]
        let url = scratch.appendingPathComponent("image.safetensors")
        try Data(png).write(to: url)
        assertRejects(url, mentioning: ["not a safetensors file"])
    }

    func testRejectsRandomBytesWithoutCrashing() throws {
        var rng = SystemRandomNumberGenerator()
        for trial in 0..<200 {
            // Small declared lengths so the parser, not the size check, sees the garbage.
            let length = Int.random(in: 0...40, using: &rng)
            var bytes = [UInt8]()
            withUnsafeBytes(of: UInt64(length).littleEndian) { bytes += $0 }
            bytes += (0..<(length + Int.random(in: 0...16, using: &rng))).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if trial % 2 == 0, length > 2 { bytes[8] = UInt8(ascii: "{"); bytes[8 + length - 1] = UInt8(ascii: "}") }
            let url = scratch.appendingPathComponent("r\(trial).safetensors")
            try Data(bytes).write(to: url)
            if let file = try? SafeTensorsFile(contentsOf: url) {
                for name in file.names { _ = try? file.tensor(name) }  // must not read out of bounds
            }
        }
    }

    func testMissingFileAndFolder() {
        let url = scratch.appendingPathComponent("nothing.safetensors")
        XCTAssertThrowsError(try SafeTensorsFile(contentsOf: url)) { XCTAssertTrue("\($0)".contains(url.path)) }
        XCTAssertThrowsError(try SafeTensorsFile(contentsOf: scratch)) { XCTAssertTrue("\($0)".contains("regular file"), "\($0)") }
        XCTAssertThrowsError(try SafeTensors.open(scratch)) { XCTAssertTrue("\($0)".contains("model.safetensors"), "\($0)") }
    }
}

extension URL {
    /// Truncates the file to `size` bytes and returns its URL.
    fileprivate func truncatingFile(to size: Int) throws -> URL {
        let data = try Data(contentsOf: self)
        try data.prefix(size).write(to: self)
        return self
    }
}

/// A memory-mapped, read-only convolution weight that keeps only its reordered copy hands its pages back to the
/// kernel; they come back from the file, so the weight and the convolution still read right.
final class MappedWeightTests: XCTestCase {
    func testMappedWeightKeptOnceStillReadsRight() throws {
        let values: [Float] = (0..<(32 * 32 * 9)).map { (i: Int) -> Float in Float((i * 37) % 101) / 101 - 0.5 }
        let original = Tensor(shape: [32, 32, 3, 3], values)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("mapped-weight-\(getpid()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensors.write(["w": original], to: url)
        let file = try SafeTensorsFile(contentsOf: url)
        let weight = try file.tensor("w")
        XCTAssertTrue(weight.storage.fileBacked, "aligned F32 is served from the mapping")
        weight.storage.markReadOnly()
        // Another view of the same mapped memory: after the weight drops its pages, this reads them from the file.
        let alias = Tensor(shape: weight.shape, storage: weight.storage, offset: weight.offset)
        let inputs: [Float] = (0..<(32 * 64)).map { (i: Int) -> Float in Float(i % 13) / 13 }
        let x = Tensor(shape: [1, 32, 8, 8], inputs)
        let reference = withNoGrad { x.conv2d(weight: original, bias: nil, padding: 1) }.toArray()
        XCTAssertEqual(withNoGrad { x.conv2d(weight: weight, bias: nil, padding: 1) }.toArray(), reference)
        let kept = weight.blockedValues != nil
        XCTAssertEqual(withNoGrad { x.conv2d(weight: weight, bias: nil, padding: 1) }.toArray(), reference)
        if !kept { throw XCTSkip("oneDNN chose the plain weight layout on this CPU: nothing was kept") }
        XCTAssertEqual(alias.toArray(), values, "the dropped pages read back from the file")
        XCTAssertEqual(weight.toArray(), values, "the weight reads back from its kept copy")
    }
}

/// What a bf16 model holds: a load hands back the pages of memory-mapped weights once it has checked them, and a
/// read-only weight converted to bf16 hands its fp32 pages back again, so the weight is resident once, in bf16.
/// Residency is read from /proc/self/smaps for the mapping itself, so nothing else in the process can move it.
final class MappedPageDroppingTests: XCTestCase {
    /// The resident bytes of the mapping that holds `pointer` (nil where /proc/self/smaps cannot be read).
    private func residentBytes(ofMappingHolding pointer: UnsafeRawPointer) -> Int? {
        // FileHandle, not String(contentsOfFile:): /proc files report size 0 and the latter stops after one read.
        guard let data = try? FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/smaps")).readToEnd(),
              let text = String(data: data, encoding: .utf8) else { return nil }
        let address = UInt(bitPattern: pointer)
        var inside = false
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let range = fields.first, range.contains("-"), !range.hasSuffix(":") {
                let bounds = range.split(separator: "-").compactMap { UInt($0, radix: 16) }
                inside = bounds.count == 2 && bounds[0] <= address && address < bounds[1]
            } else if inside, fields.first == "Rss:", fields.count >= 2, let kb = Int(fields[1]) {
                return kb * 1024
            }
        }
        return nil
    }

    func testLoadAndBF16ConversionHandBackMappedPages() throws {
        let conv = Conv2d(256, 256, kernelSize: 3, padding: 1, bias: false)  // 2.4 MB of weight
        let values: [Float] = (0..<conv.weight.count).map { Float(($0 * 7919) % 2003) / 2003 - 0.5 }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("page-dropping-\(getpid()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensors.write(["weight": Tensor(shape: conv.weight.shape, values)], to: url)

        let file = try SafeTensorsFile(contentsOf: url)
        try conv.load(file)
        let weight = conv.weight
        XCTAssertTrue(weight.storage.fileBacked, "aligned F32 is served from the mapping")
        let base = UnsafeRawPointer(weight.storage.base)
        guard let afterLoad = residentBytes(ofMappingHolding: base) else { throw XCTSkip("no /proc/self/smaps") }
        // The load read every value (its finite check) and handed the pages back; the header page may stay.
        XCTAssertLessThanOrEqual(afterLoad, 2 * 4096, "the checked weight's pages stayed resident after the load")
        XCTAssertEqual(weight.toArray(), values, "the dropped pages read back from the file")
        XCTAssertGreaterThan(residentBytes(ofMappingHolding: base) ?? 0, 2_000_000, "reading the weight maps it again")

        try XCTSkipUnless(Precision.hardwareSupportsBF16, "this CPU has no avx512_bf16 / AMX")
        weight.storage.markReadOnly()
        let x = Tensor(shape: [1, 256, 8, 8], (0..<(256 * 64)).map { Float($0 % 17) / 17 - 0.5 })
        let heapWeight = Tensor(shape: weight.shape, values)  // the same values, on the heap, cached apart
        let reference = withNoGrad { withPrecision(.bf16) { x.conv2d(weight: heapWeight, bias: nil, padding: 1) } }.toArray()
        let first = withNoGrad { withPrecision(.bf16) { conv(x) } }.toArray()
        XCTAssertEqual(first, reference, "a mapped weight converts to the same bf16 values")
        XCTAssertLessThanOrEqual(residentBytes(ofMappingHolding: base) ?? .max, 2 * 4096,
                                 "the fp32 pages stayed resident beside the weight's bf16 copy")
        XCTAssertEqual(withNoGrad { withPrecision(.bf16) { conv(x) } }.toArray(), reference, "the cached bf16 copy serves the next call")
        XCTAssertLessThanOrEqual(residentBytes(ofMappingHolding: base) ?? .max, 2 * 4096, "the second call read the fp32 pages")
        XCTAssertEqual(weight.toArray(), values, "fp32 readers still get the file's exact values")
    }

    func testHeapMemoryIsNeverDropped() {
        let t = Tensor(shape: [1 << 16], (0..<(1 << 16)).map { Float($0) })
        t.dropResidentPages()
        XCTAssertEqual(t.toArray(), (0..<(1 << 16)).map { Float($0) }, "heap values would read back as zeros")
    }
}
