import Foundation
import UnCLIPModels
import UnCLIPShapesWorld

/// Settings of the byte-level BPE tokenizer learned from the captions (stage "tokenizer").
public struct TokenizerTrainingConfiguration: Codable, Equatable, Sendable {
    /// Most merges to learn; fewer are learned when no pair occurs `minimumFrequency` times any more.
    public var maxMerges = 2000
    /// A pair must occur at least this often (counted over caption words) to be merged.
    public var minimumFrequency = 2
    /// Token length every prompt is padded to (`model_max_length`; also the text encoder's positions and the
    /// prior's `num_embeddings`). ShapesWorld captions take at most ~14 tokens with BOS and EOS.
    public var modelMaxLength = 24
    /// Captions read from the dataset (evenly spaced entries), enough to see every word of ShapesWorld.
    public var maxCaptions = 20_000

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case maxMerges = "max_merges", minimumFrequency = "minimum_frequency", modelMaxLength = "model_max_length"
        case maxCaptions = "max_captions"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self, section: "tokenizer")
        let d = TokenizerTrainingConfiguration()
        maxMerges = try c.decodeIfPresent(Int.self, forKey: .maxMerges) ?? d.maxMerges
        minimumFrequency = try c.decodeIfPresent(Int.self, forKey: .minimumFrequency) ?? d.minimumFrequency
        modelMaxLength = try c.decodeIfPresent(Int.self, forKey: .modelMaxLength) ?? d.modelMaxLength
        maxCaptions = try c.decodeIfPresent(Int.self, forKey: .maxCaptions) ?? d.maxCaptions
    }

    /// Learns the tokenizer from the dataset's captions and writes `out/tokenizer/`.
    ///
    /// Entries that fail to load are reported and skipped. The result is deterministic (ties between equally
    /// frequent pairs go to the lexicographically smallest), so `resume` has nothing to restore and is ignored.
    @discardableResult
    public func run(dataset: some CaptionedImageDataset, out: URL, resume: Bool = false,
                    progress: (TrainingEvent) -> Void = { _ in }) throws -> BPEVocabulary {
        guard dataset.count > 0 else { throw TrainingError.emptyDataset(stage: .tokenizer) }
        let n = min(dataset.count, maxCaptions)
        var captions: [String] = []
        captions.reserveCapacity(n)
        for k in 0..<n {
            let index = k * dataset.count / n
            if let shapes = dataset as? ShapesWorldDataset, let scene = try? shapes.scene(index) {
                captions.append(scene.caption)  // no need to render the image
                continue
            }
            do { captions.append(try dataset.sample(index).caption) } catch {
                progress(.skippedSample(stage: .tokenizer, index: index, message: "\(error)"))
            }
        }
        let vocabulary = try train(captions: captions)
        try ComponentWriter.writeTokenizer(vocabulary, to: out.appendingPathComponent("tokenizer"))
        progress(.message(stage: .tokenizer, text: "learned \(vocabulary.merges.count) merges from \(captions.count) captions (vocabulary \(vocabulary.tokens.count))"))
        return vocabulary
    }

    /// Learns merges from `captions`.
    public func train(captions: [String]) throws -> BPEVocabulary {
        guard maxMerges >= 0 else {
            throw TrainingError.invalidConfiguration(stage: Stage.tokenizer.key, option: "max_merges", value: "\(maxMerges)", rule: "0 or more")
        }
        guard minimumFrequency >= 1 else {
            throw TrainingError.invalidConfiguration(stage: Stage.tokenizer.key, option: "minimum_frequency", value: "\(minimumFrequency)", rule: "at least 1")
        }
        guard modelMaxLength >= 3 else {
            throw TrainingError.invalidConfiguration(stage: Stage.tokenizer.key, option: "model_max_length", value: "\(modelMaxLength)", rule: "at least 3 (BOS, a token, EOS)")
        }
        return BPEVocabulary.learn(captions: captions, maxMerges: maxMerges, minimumFrequency: minimumFrequency,
                                   modelMaxLength: modelMaxLength)
    }
}

/// A learned CLIP-layout byte-level BPE vocabulary.
///
/// Token ids follow openai/CLIP's `SimpleTokenizer`: the 256 byte symbols in GPT-2's `bytes_to_unicode` order, the
/// same 256 with `</w>`, one token per merge in merge order, then `<|startoftext|>` and `<|endoftext|>`.
public struct BPEVocabulary: Sendable {
    /// Tokens by id.
    public var tokens: [String]
    /// Merges in rank order.
    public var merges: [(String, String)]
    public var modelMaxLength: Int

    public static let startOfText = "<|startoftext|>"
    public static let endOfText = "<|endoftext|>"

    public var bosTokenID: Int { tokens.count - 2 }
    public var eosTokenID: Int { tokens.count - 1 }

    /// GPT-2's byte → printable character table, in its construction order (the order of CLIP's vocabulary).
    static let byteSymbols: [(byte: UInt8, symbol: String)] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var symbols = printable.map { (UInt8($0), String(UnicodeScalar(UInt8($0)))) }
        var next: UInt32 = 256
        for b in 0..<256 where !printable.contains(b) {
            symbols.append((UInt8(b), String(Character(Unicode.Scalar(next)!))))
            printable.append(b)
            next += 1
        }
        return symbols
    }()

    static func learn(captions: [String], maxMerges: Int, minimumFrequency: Int, modelMaxLength: Int) -> BPEVocabulary {
        var symbolOf = [String](repeating: "", count: 256)
        for (b, s) in byteSymbols { symbolOf[Int(b)] = s }

        // Word frequencies over the pre-tokenised captions.
        var frequency: [String: Int] = [:]
        for caption in captions {
            for word in preTokenize(caption) { frequency[word, default: 0] += 1 }
        }
        // Each distinct word as a symbol sequence with `</w>` on its last symbol.
        var words: [[String]] = []
        var counts: [Int] = []
        for (word, count) in frequency.sorted(by: { $0.key < $1.key }) {
            var symbols = Array(word.utf8).map { symbolOf[Int($0)] }
            symbols[symbols.count - 1] += "</w>"
            words.append(symbols)
            counts.append(count)
        }

        var merges: [(String, String)] = []
        struct Pair: Hashable { var a: String, b: String }
        while merges.count < maxMerges {
            var pairCounts: [Pair: Int] = [:]
            for (symbols, count) in zip(words, counts) where symbols.count > 1 {
                for i in 0..<(symbols.count - 1) { pairCounts[Pair(a: symbols[i], b: symbols[i + 1]), default: 0] += count }
            }
            // The most frequent pair; ties to the lexicographically smallest so the result never depends on hashing.
            guard let best = pairCounts.max(by: { x, y in
                x.value != y.value ? x.value < y.value : (x.key.a, x.key.b) > (y.key.a, y.key.b)
            }), best.value >= minimumFrequency else { break }
            let pair = best.key
            merges.append((pair.a, pair.b))
            let merged = pair.a + pair.b
            for w in words.indices where words[w].count > 1 {
                var out: [String] = []
                out.reserveCapacity(words[w].count)
                var i = 0
                let s = words[w]
                while i < s.count {
                    if i < s.count - 1 && s[i] == pair.a && s[i + 1] == pair.b { out.append(merged); i += 2 } else { out.append(s[i]); i += 1 }
                }
                words[w] = out
            }
        }

        var tokens = byteSymbols.map(\.symbol)
        tokens += tokens.map { $0 + "</w>" }
        tokens += merges.map { $0.0 + $0.1 }
        tokens += [startOfText, endOfText]
        return BPEVocabulary(tokens: tokens, merges: merges, modelMaxLength: modelMaxLength)
    }

    /// CLIP's normalisation and pre-tokenisation, enough for training: NFC, lower case, then the regex
    /// `'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`.
    ///
    /// The project's `CLIPTokenizer` does this exactly (including special-token splitting); the learned merges only
    /// need the same word boundaries for ordinary text.
    static func preTokenize(_ text: String) -> [String] {
        let scalars = Array(text.precomposedStringWithCanonicalMapping.lowercased().unicodeScalars)
        func isLetter(_ s: Unicode.Scalar) -> Bool {
            switch s.properties.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
            default: return false
            }
        }
        func isNumber(_ s: Unicode.Scalar) -> Bool {
            switch s.properties.generalCategory {
            case .decimalNumber, .letterNumber, .otherNumber: return true
            default: return false
            }
        }
        let contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map { Array($0.unicodeScalars) }
        var words: [String] = []
        var i = 0
        scan: while i < scalars.count {
            let c = scalars[i]
            if c == "'" {
                for p in contractions where i + p.count <= scalars.count && Array(scalars[i..<(i + p.count)]) == p {
                    words.append(String(String.UnicodeScalarView(p)))
                    i += p.count
                    continue scan
                }
            }
            var j = i + 1
            if isLetter(c) {
                while j < scalars.count && isLetter(scalars[j]) { j += 1 }
            } else if isNumber(c) {
                // one digit per word
            } else if c.properties.isWhitespace {
                i += 1
                continue
            } else {
                while j < scalars.count && !scalars[j].properties.isWhitespace && !isLetter(scalars[j]) && !isNumber(scalars[j]) { j += 1 }
            }
            words.append(String(String.UnicodeScalarView(scalars[i..<j])))
            i = j
        }
        return words
    }
}
