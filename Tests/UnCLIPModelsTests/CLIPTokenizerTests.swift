import Foundation
import XCTest
@testable import UnCLIPModels

/// Ids from transformers' CLIPTokenizer (transformers 5, tokenizers backend), recorded by
/// Scripts/make_tokenizer_fixtures.py for the real CLIP vocabulary (Karlo layout) and a derived tokenizer.json one.
final class CLIPTokenizerTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer")

    struct Cases: Decodable {
        struct Case: Decodable {
            var text: String
            var karlo: [Int]
            var karloUntruncated: [Int]?
            var small: [Int]
            var smallUntruncated: [Int]?
        }
        struct Batch: Decodable { var texts: [String]; var ids: [[Int]]; var mask: [[Int]] }
        var reference: String
        var smallIDs: [String: Int]
        var cases: [Case]
        var paddedBatch: Batch
    }

    static let karlo = Result { try CLIPTokenizer(directory: fixtures.appendingPathComponent("karlo")) }
    static let small = Result { try CLIPTokenizer(directory: fixtures.appendingPathComponent("small")) }

    func loadCases() throws -> Cases {
        try JSONDecoder().decode(Cases.self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("cases.json")))
    }

    func testKarloSpecialTokens() throws {
        let tok = try Self.karlo.get()
        XCTAssertEqual(tok.vocabulary.count, 49408)
        XCTAssertEqual(tok.bosTokenID, 49406)
        XCTAssertEqual(tok.eosTokenID, 49407)
        XCTAssertEqual(tok.unkTokenID, 49407)
        XCTAssertEqual(tok.padTokenID, 0)
        XCTAssertEqual(tok.modelMaxLength, 77)
    }

    /// The verified examples of spec §4.2.
    func testSpecExamples() throws {
        let tok = try Self.karlo.get()
        let examples: [(String, [Int])] = [
            ("horse", [49406, 4558, 49407]),
            ("", [49406, 49407]),
            ("A  Photo of a CAT!", [49406, 320, 1125, 539, 320, 2368, 0, 49407]),
            ("a high-resolution photograph of a big red frog on a green leaf.",
             [49406, 320, 1400, 268, 9977, 8853, 539, 320, 1205, 736, 11438, 525, 320, 1901, 7232, 269, 49407]),
            (String(repeating: "horse ", count: 100), [49406] + [Int](repeating: 4558, count: 75) + [49407]),
        ]
        for (text, expected) in examples {
            let batch = tok([text])
            XCTAssertEqual(batch.ids[0].count, 77)
            XCTAssertEqual(Array(batch.ids[0].prefix(expected.count)), expected, text)
            XCTAssertTrue(batch.ids[0].dropFirst(expected.count).allSatisfy { $0 == 0 }, text)
            XCTAssertEqual(batch.mask[0].reduce(0, +), expected.count, text)
        }
    }

    func testMatchesTransformersOnKarloVocabulary() throws {
        let tok = try Self.karlo.get()
        let cases = try loadCases()
        XCTAssertGreaterThanOrEqual(cases.cases.count, 200)
        var failures = 0
        for c in cases.cases {
            let ids = tok.encode(c.text)
            if ids != c.karlo { failures += 1; XCTFail("\(c.text.debugDescription): \(ids) != \(c.karlo)") }
            let full = [tok.bosTokenID] + tok.tokenize(c.text) + [tok.eosTokenID]
            XCTAssertEqual(full, c.karloUntruncated ?? c.karlo, c.text.debugDescription)
            if failures > 10 { break }
        }
    }

    func testMatchesTransformersOnTokenizerJSON() throws {
        let tok = try Self.small.get()
        let cases = try loadCases()
        XCTAssertEqual(tok.bosTokenID, cases.smallIDs["bos"])
        XCTAssertEqual(tok.eosTokenID, cases.smallIDs["eos"])
        XCTAssertEqual(tok.padTokenID, cases.smallIDs["pad"])
        XCTAssertEqual(tok.modelMaxLength, 77, "the 1e30 sentinel means 77")
        var failures = 0
        for c in cases.cases {
            let ids = tok.encode(c.text)
            if ids != c.small { failures += 1; XCTFail("\(c.text.debugDescription): \(ids) != \(c.small)") }
            XCTAssertEqual([tok.bosTokenID] + tok.tokenize(c.text) + [tok.eosTokenID], c.smallUntruncated ?? c.small)
            if failures > 10 { break }
        }
    }

    /// tokenizer.json may spell merges as "a b" strings (older tokenizers) instead of pairs.
    func testTokenizerJSONWithStringMerges() throws {
        let source = Self.fixtures.appendingPathComponent("small")
        var root = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("tokenizer.json"))) as? [String: Any])
        var model = try XCTUnwrap(root["model"] as? [String: Any])
        let merges = try XCTUnwrap(model["merges"] as? [[String]])
        model["merges"] = merges.map { $0.joined(separator: " ") }
        root["model"] = model
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("clip-tokenizer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try JSONSerialization.data(withJSONObject: root).write(to: dir.appendingPathComponent("tokenizer.json"))
        let tok = try CLIPTokenizer(directory: dir)
        let reference = try Self.small.get()
        for c in try loadCases().cases.prefix(80) { XCTAssertEqual(tok.encode(c.text), reference.encode(c.text)) }
        // No tokenizer_config.json: CLIPTokenizer's defaults (pad = eos) and max length 77.
        XCTAssertEqual(tok.padTokenID, tok.eosTokenID)
        XCTAssertEqual(tok.modelMaxLength, 77)
    }

    func testPaddedBatchMatchesTransformers() throws {
        let tok = try Self.karlo.get()
        let reference = try loadCases().paddedBatch
        let batch = tok(reference.texts, padToLength: 77)
        XCTAssertEqual(batch.ids, reference.ids)
        XCTAssertEqual(batch.mask, reference.mask)
        let short = tok(["a photo of a cat", "horse"], padToLength: 5)
        XCTAssertEqual(short.ids, [[49406, 320, 1125, 539, 49407], [49406, 4558, 49407, 0, 0]])
        XCTAssertEqual(short.mask, [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    }

    /// Every scalar's pre-tokeniser class (space, letter, number, other) equals Oniguruma's under tokenizers.
    func testScalarClassesMatchOniguruma() throws {
        struct Tables: Decodable { var classRuns: [[TokenizerJSONValue]]; var normalized: [[TokenizerJSONValue]] }
        let tables = try JSONDecoder().decode(Tables.self, from: Data(contentsOf: Self.fixtures.appendingPathComponent("unicode.json")))
        let runs: [(start: UInt32, cls: String)] = tables.classRuns.map { (UInt32($0[0].int!), $0[1].string!) }
        var mismatches: [String] = []
        for (k, run) in runs.enumerated() {
            let end = k + 1 < runs.count ? runs[k + 1].start : 0x110000
            for v in run.start..<end {
                guard let s = Unicode.Scalar(v) else { continue }
                let cls = CLIPTokenizer.isSpace(s) ? "S" : CLIPTokenizer.isLetter(s) ? "L" : CLIPTokenizer.isNumber(s) ? "N" : "O"
                if cls != run.cls { mismatches.append(String(format: "U+%04X %@≠%@", v, cls, run.cls)) }
            }
        }
        XCTAssertEqual(mismatches.count, 0, "\(mismatches.count) class mismatches: \(mismatches.prefix(20))")

        var changed: [UInt32: [UInt32]] = [:]
        for entry in tables.normalized { changed[UInt32(entry[0].int!)] = entry[1].ints! }
        var normMismatches: [String] = []
        for v in UInt32(0)..<0x110000 {
            guard let s = Unicode.Scalar(v) else { continue }
            let out = CLIPTokenizer.normalize([s]).map(\.value)
            let expected = changed[v] ?? [v]
            if out != expected { normMismatches.append(String(format: "U+%04X → %@ (expected %@)", v, out.description, expected.description)) }
        }
        XCTAssertEqual(normMismatches.count, 0, "\(normMismatches.count) normalisation mismatches: \(normMismatches.prefix(20))")
    }

    func testDecodeRoundTrip() throws {
        let tok = try Self.karlo.get()
        XCTAssertEqual(tok.decode(tok.encode("A  Photo of a CAT")), "a photo of a cat")
        XCTAssertEqual(tok.decode(tok.encode("naïve café 😀")), "naïve café 😀")
        XCTAssertEqual(tok.decode([49406, 4558, 49407], skipSpecialTokens: false), "<|startoftext|>horse <|endoftext|>")
    }

    func testMissingAndMalformedFilesAreNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("clip-tokenizer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("vocab.json and merges.txt"), "\(error)")
        }
        try #"{"a": 0, "b": 1, "ab</w>": 2, "<|startoftext|>": 3, "<|endoftext|>": 4}"#.write(to: dir.appendingPathComponent("vocab.json"), atomically: true, encoding: .utf8)
        try "#version: 0.2\na b c\n".write(to: dir.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("merges.txt") && "\(error)".contains("line 2"), "\(error)")
        }
        try "#version: 0.2\na b\n".write(to: dir.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("\"ab\", which is not in the vocabulary"), "\(error)")
        }
        try "#version: 0.2\na b</w>\n".write(to: dir.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8)
        try #"{"a": 0, "b</w>": 1, "ab</w>": 2, "<|startoftext|>": 3, "<|endoftext|>": 4}"#.write(to: dir.appendingPathComponent("vocab.json"), atomically: true, encoding: .utf8)
        try #"{"pad_token": "<pad>"}"#.write(to: dir.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("pad_token") && "\(error)".contains("<pad>"), "\(error)")
        }
        try #"{"pad_token": {"content": "<|endoftext|>"}, "model_max_length": 10}"#.write(to: dir.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8)
        let tok = try CLIPTokenizer(directory: dir)
        XCTAssertEqual(tok.padTokenID, 4)
        XCTAssertEqual(tok.modelMaxLength, 10)
        // "ab" merges into one token; characters without a byte symbol in this toy vocabulary become unk.
        XCTAssertEqual(tok.encode("ab"), [3, 2, 4])
        XCTAssertEqual(tok.encode("x"), [3, 4, 4])
    }

    func testSpeed() throws {
        let tok = try Self.karlo.get()
        let prompts = try loadCases().cases.map(\.text)
        let start = Date()
        for p in prompts { _ = tok.encode(p) }
        let perPrompt = Date().timeIntervalSince(start) / Double(prompts.count)
        XCTAssertLessThan(perPrompt, 0.01, "tokenising takes \(perPrompt * 1000) ms per prompt")
    }
}

/// Minimal heterogenous JSON value for the unicode tables ([code point, class] and [code point, [scalars]]).
struct TokenizerJSONValue: Decodable {
    var int: Int?
    var string: String?
    var ints: [UInt32]?
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let v = try? c.decode(Int.self) { int = v } else if let v = try? c.decode(String.self) { string = v } else { ints = try c.decode([UInt32].self) }
    }
}
