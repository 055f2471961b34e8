import Foundation

/// Why a tokenizer folder could not be loaded.
public enum CLIPTokenizerError: Error, CustomStringConvertible {
    /// The folder holds neither `tokenizer.json` nor the pair `vocab.json` + `merges.txt`.
    case missingFiles(directory: URL, expected: String)
    /// A file could not be read or parsed; `detail` says which entry is wrong.
    case malformed(file: String, detail: String)
    /// A special token (bos, eos, unk, pad or an added token) has no id in the vocabulary.
    case unknownToken(file: String, role: String, token: String)

    public var description: String {
        switch self {
        case let .missingFiles(directory, expected):
            return "tokenizer folder \(directory.path) is missing \(expected)"
        case let .malformed(file, detail):
            return "malformed tokenizer file \(file): \(detail)"
        case let .unknownToken(file, role, token):
            return "\(role) token \"\(token)\" (from \(file)) is not in the vocabulary"
        }
    }
}

/// Token ids and attention masks of a padded batch of prompts.
public struct TokenizedBatch: Equatable {
    /// One row of `length` ids per prompt: BOS, content, EOS, then the pad id.
    public var ids: [[Int]]
    /// 1 for BOS … EOS, 0 for padding.
    public var mask: [[Int]]
}

/// CLIP's byte-level BPE tokenizer, matching transformers' `CLIPTokenizer` id for id.
///
/// Pipeline (spec §4.2): special tokens are cut out of the raw text first; every other piece is normalised (NFC,
/// whitespace runs → one space, lowercase), pre-tokenised with CLIP's regex, mapped to byte symbols and merged by BPE
/// rank. BOS and EOS frame the result, which is truncated to `modelMaxLength` and padded with `padTokenID`.
public final class CLIPTokenizer: @unchecked Sendable {
    /// Token string → id.
    public let vocabulary: [String: Int]
    /// Beginning-of-sequence id (`<|startoftext|>`, 49406 in CLIP).
    public let bosTokenID: Int
    /// End-of-sequence id (`<|endoftext|>`, 49407 in CLIP).
    public let eosTokenID: Int
    /// Id used for padding (0, the token "!", in Karlo).
    public let padTokenID: Int
    /// Id of the unknown token; only used for characters whose byte symbols are missing from the vocabulary.
    public let unkTokenID: Int
    /// Length that `callAsFunction` truncates and pads to by default (77 for CLIP).
    public let modelMaxLength: Int

    /// A special token cut out of the text before normalisation (or after it, when `normalized`).
    struct AddedToken {
        var content: [Unicode.Scalar]
        var id: Int
        /// Matches transformers' AddedToken.normalized: such tokens are searched for in the normalised text.
        var normalized: Bool
    }

    private let addedTokens: [AddedToken]
    private let idToToken: [Int: String]
    /// (left id, right id) packed into one Int → (merge rank, id of the merged token).
    private let merges: [Int: (rank: Int, id: Int)]
    /// Id of each byte's symbol, and of the symbol with the end-of-word suffix; −1 if absent.
    private let byteSymbolIDs: [Int]
    private let byteSymbolEndIDs: [Int]
    /// Pre-token UTF-8 bytes → ids. Keyed by bytes, not String: Swift String equality is canonical equivalence, and
    /// "é" and "e\u{301}" must not share an entry.
    private var cache: [[UInt8]: [Int]] = [:]
    private let cacheLock = NSLock()
    private static let cacheLimit = 50_000

    /// Loads `tokenizer.json`, or else `vocab.json` + `merges.txt`, plus the special tokens and `model_max_length` from
    /// `tokenizer_config.json` / `special_tokens_map.json` when present.
    public convenience init(directory: URL) throws {
        let fm = FileManager.default
        let file = { (name: String) in directory.appendingPathComponent(name) }
        var vocabulary: [String: Int]
        var mergeLines: [(String, String)]
        var added: [String: (id: Int?, normalized: Bool)] = [:]
        var addedOrder: [String] = []
        func noteAdded(_ content: String, id: Int?, normalized: Bool) {
            if added[content] == nil { addedOrder.append(content) }
            added[content] = (id ?? added[content]?.id, normalized)
        }

        if fm.fileExists(atPath: file("tokenizer.json").path) {
            let name = "tokenizer.json"
            let root = try Self.readJSONObject(file(name), name: name)
            guard let model = root["model"] as? [String: Any] else { throw CLIPTokenizerError.malformed(file: name, detail: "no \"model\" object") }
            if let type = model["type"] as? String, type != "BPE" {
                throw CLIPTokenizerError.malformed(file: name, detail: "model type is \"\(type)\", expected \"BPE\"")
            }
            if let suffix = model["end_of_word_suffix"] as? String, suffix != "</w>" {
                throw CLIPTokenizerError.malformed(file: name, detail: "end_of_word_suffix is \"\(suffix)\", expected \"</w>\"")
            }
            vocabulary = try Self.parseVocabulary(model["vocab"], file: name + " model.vocab")
            guard let rawMerges = model["merges"] as? [Any] else { throw CLIPTokenizerError.malformed(file: name, detail: "no model.merges array") }
            mergeLines = []
            mergeLines.reserveCapacity(rawMerges.count)
            for (i, entry) in rawMerges.enumerated() {
                if let s = entry as? String {
                    mergeLines.append(try Self.parseMergeLine(s, file: name, line: "model.merges[\(i)]"))
                } else if let pair = entry as? [Any], pair.count == 2, let a = pair[0] as? String, let b = pair[1] as? String {
                    mergeLines.append((a, b))
                } else {
                    throw CLIPTokenizerError.malformed(file: name, detail: "model.merges[\(i)] is neither \"a b\" nor [\"a\", \"b\"]")
                }
            }
            for (i, entry) in ((root["added_tokens"] as? [Any]) ?? []).enumerated() {
                guard let token = entry as? [String: Any], let content = token["content"] as? String, let id = token["id"] as? Int else {
                    throw CLIPTokenizerError.malformed(file: name, detail: "added_tokens[\(i)] lacks \"id\" or \"content\"")
                }
                noteAdded(content, id: id, normalized: (token["normalized"] as? Bool) ?? false)
            }
        } else if fm.fileExists(atPath: file("vocab.json").path) && fm.fileExists(atPath: file("merges.txt").path) {
            vocabulary = try Self.parseVocabulary(try Self.readJSON(file("vocab.json"), name: "vocab.json"), file: "vocab.json")
            guard let text = try? String(contentsOf: file("merges.txt"), encoding: .utf8) else {
                throw CLIPTokenizerError.malformed(file: "merges.txt", detail: "not readable as UTF-8 text")
            }
            mergeLines = []
            for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let trimmed = line.hasSuffix("\r") ? line.dropLast() : line
                // Matches transformers: the "#version" header and empty lines are not merges.
                if trimmed.isEmpty || (i == 0 && trimmed.hasPrefix("#version")) { continue }
                mergeLines.append(try Self.parseMergeLine(String(trimmed), file: "merges.txt", line: "line \(i + 1)"))
            }
        } else {
            throw CLIPTokenizerError.missingFiles(directory: directory, expected: "tokenizer.json, or vocab.json and merges.txt")
        }

        // Special tokens: special_tokens_map.json first, tokenizer_config.json on top (both optional).
        var specials: [String: String] = [:]
        var specialsSource: [String: String] = [:]
        var maxLength = 77
        for name in ["special_tokens_map.json", "tokenizer_config.json"] where fm.fileExists(atPath: file(name).path) {
            let root = try Self.readJSONObject(file(name), name: name)
            if let decoder = root["added_tokens_decoder"] as? [String: Any] {
                for (key, value) in decoder {
                    guard let id = Int(key), let token = value as? [String: Any], let content = token["content"] as? String else {
                        throw CLIPTokenizerError.malformed(file: name, detail: "added_tokens_decoder[\"\(key)\"] needs an integer key and a \"content\"")
                    }
                    noteAdded(content, id: id, normalized: (token["normalized"] as? Bool) ?? false)
                }
            }
            for role in ["bos_token", "eos_token", "unk_token", "pad_token"] {
                guard let value = root[role], !(value is NSNull) else { continue }
                if let s = value as? String {
                    specials[role] = s
                    if added[s] == nil { noteAdded(s, id: nil, normalized: false) }
                } else if let dict = value as? [String: Any], let s = dict["content"] as? String {
                    specials[role] = s
                    noteAdded(s, id: nil, normalized: (dict["normalized"] as? Bool) ?? false)
                } else {
                    throw CLIPTokenizerError.malformed(file: name, detail: "\(role) is neither a string nor an object with \"content\"")
                }
                specialsSource[role] = name
            }
            if let value = root["model_max_length"] {
                guard let number = value as? NSNumber else {
                    throw CLIPTokenizerError.malformed(file: name, detail: "model_max_length is not a number")
                }
                // Matches transformers: int(1e30) (VERY_LARGE_INTEGER) means "no limit"; CLIP's positions stop at 77.
                let v = number.doubleValue
                if v >= 1e9 { maxLength = 77; continue }
                // BOS and EOS need two positions; the bound keeps the text encoder's L × L attention in memory.
                guard v >= 2, v <= Double(ConfigurationLimits.positions), v == v.rounded() else {
                    throw CLIPTokenizerError.malformed(file: name, detail: "model_max_length is \(number), expected an integer in 2 … \(ConfigurationLimits.positions) (or transformers' 1e30 for \"no limit\")")
                }
                maxLength = Int(v)
            }
        }
        // CLIPTokenizer's constructor defaults.
        let defaults = ["bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"]
        var ids: [String: Int] = [:]
        for role in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            let token = specials[role] ?? defaults[role]!
            if specials[role] == nil, added[token] == nil { noteAdded(token, id: nil, normalized: false) }
            guard let id = added[token]?.id ?? vocabulary[token] else {
                throw CLIPTokenizerError.unknownToken(file: specialsSource[role] ?? "defaults", role: role, token: token)
            }
            ids[role] = id
        }
        var addedTokens: [AddedToken] = []
        for content in addedOrder {
            let entry = added[content]!
            guard let id = entry.id ?? vocabulary[content] else {
                throw CLIPTokenizerError.unknownToken(file: "added tokens", role: "added", token: content)
            }
            if content.isEmpty { continue }
            addedTokens.append(AddedToken(content: Array(content.unicodeScalars), id: id, normalized: entry.normalized))
        }
        try self.init(vocabulary: vocabulary, merges: mergeLines, addedTokens: addedTokens,
                      bos: ids["bos_token"]!, eos: ids["eos_token"]!, unk: ids["unk_token"]!, pad: ids["pad_token"]!,
                      modelMaxLength: maxLength)
    }

    init(vocabulary: [String: Int], merges mergeLines: [(String, String)], addedTokens: [AddedToken],
         bos: Int, eos: Int, unk: Int, pad: Int, modelMaxLength: Int) throws {
        self.vocabulary = vocabulary
        var idToToken: [Int: String] = [:]
        idToToken.reserveCapacity(vocabulary.count)
        for (token, id) in vocabulary { idToToken[id] = token }
        for token in addedTokens { idToToken[token.id] = String(String.UnicodeScalarView(token.content)) }
        self.idToToken = idToToken
        var merges: [Int: (rank: Int, id: Int)] = [:]
        merges.reserveCapacity(mergeLines.count)
        for (rank, (a, b)) in mergeLines.enumerated() {
            guard let left = vocabulary[a], let right = vocabulary[b] else {
                throw CLIPTokenizerError.malformed(file: "merges", detail: "merge \(rank) \"\(a) \(b)\" uses a token that is not in the vocabulary")
            }
            guard let merged = vocabulary[a + b] else {
                throw CLIPTokenizerError.malformed(file: "merges", detail: "merge \(rank) \"\(a) \(b)\" makes \"\(a + b)\", which is not in the vocabulary")
            }
            let key = Self.pairKey(left, right)
            // Matches HF tokenizers: a repeated merge keeps its first (lowest) rank.
            if merges[key] == nil { merges[key] = (rank, merged) }
        }
        self.merges = merges
        var symbols = [Int](repeating: -1, count: 256), endSymbols = [Int](repeating: -1, count: 256)
        for b in 0..<256 {
            let symbol = String(Character(Self.byteToUnicode[b]))
            symbols[b] = vocabulary[symbol] ?? -1
            endSymbols[b] = vocabulary[symbol + "</w>"] ?? -1
        }
        self.byteSymbolIDs = symbols
        self.byteSymbolEndIDs = endSymbols
        self.addedTokens = addedTokens
        self.bosTokenID = bos
        self.eosTokenID = eos
        self.unkTokenID = unk
        self.padTokenID = pad
        self.modelMaxLength = modelMaxLength
    }

    // MARK: Encoding

    /// BOS, the text's token ids and EOS, truncated to `maxLength` (default `modelMaxLength`) by keeping BOS … EOS.
    public func encode(_ text: String, maxLength: Int? = nil) -> [Int] {
        var content = tokenize(text)
        let limit = maxLength ?? modelMaxLength
        if content.count > limit - 2 { content.removeLast(content.count - max(limit - 2, 0)) }
        return [bosTokenID] + content + [eosTokenID]
    }

    /// Pads (and truncates) every prompt to `padToLength` (default `modelMaxLength`), as
    /// `tokenizer(texts, padding="max_length", max_length=L, truncation=True)` does.
    public func callAsFunction(_ texts: [String], padToLength length: Int? = nil) -> TokenizedBatch {
        let length = length ?? modelMaxLength
        var batch = TokenizedBatch(ids: [], mask: [])
        for text in texts {
            let ids = encode(text, maxLength: length)
            let padding = max(length - ids.count, 0)
            batch.ids.append(ids + [Int](repeating: padTokenID, count: padding))
            batch.mask.append([Int](repeating: 1, count: ids.count) + [Int](repeating: 0, count: padding))
        }
        return batch
    }

    /// The text's token ids without BOS, EOS, truncation or padding.
    public func tokenize(_ text: String) -> [Int] {
        var ids: [Int] = []
        let rawPieces = splitOnAddedTokens(Array(text.unicodeScalars), normalized: false)
        for piece in rawPieces {
            switch piece {
            case .token(let id): ids.append(id)
            case .text(let scalars):
                let normalized = Self.normalize(scalars)
                for inner in splitOnAddedTokens(normalized, normalized: true) {
                    switch inner {
                    case .token(let id): ids.append(id)
                    case .text(let s):
                        for word in Self.preTokenize(s) { ids.append(contentsOf: bpe(word)) }
                    }
                }
            }
        }
        return ids
    }

    enum Piece { case text([Unicode.Scalar]), token(Int) }

    /// Cuts the added tokens of one kind out of `scalars`, leftmost-longest (like the tokenizers' Aho–Corasick matcher).
    func splitOnAddedTokens(_ scalars: [Unicode.Scalar], normalized: Bool) -> [Piece] {
        let candidates = addedTokens.filter { $0.normalized == normalized }
        if candidates.isEmpty { return [.text(scalars)] }
        var pieces: [Piece] = []
        var start = 0, i = 0
        while i < scalars.count {
            var best: AddedToken?
            for token in candidates where token.content.count <= scalars.count - i && token.content.count > (best?.content.count ?? 0) {
                if token.content.first == scalars[i] && scalars[i..<(i + token.content.count)].elementsEqual(token.content) { best = token }
            }
            if let best {
                if start < i { pieces.append(.text(Array(scalars[start..<i]))) }
                pieces.append(.token(best.id))
                i += best.content.count
                start = i
            } else {
                i += 1
            }
        }
        if start < scalars.count { pieces.append(.text(Array(scalars[start...]))) }
        return pieces
    }

    /// NFC, every whitespace run → one space, then per-scalar full lowercase mapping.
    ///
    /// Matches the tokenizers normalizer Sequence[NFC, Replace(\s+, " "), Lowercase]: the lowercase mapping is applied
    /// scalar by scalar (Rust `char::to_lowercase`), so there is no final-sigma rule, and the result is not re-composed.
    static func normalize(_ scalars: [Unicode.Scalar]) -> [Unicode.Scalar] {
        let composed = String(String.UnicodeScalarView(scalars)).precomposedStringWithCanonicalMapping
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(scalars.count)
        var inSpace = false
        for s in composed.unicodeScalars {
            if isSpace(s) {
                if !inSpace { out.append(" ") }
                inSpace = true
                continue
            }
            inSpace = false
            if s.isASCII {
                out.append(s.value >= 65 && s.value <= 90 ? Unicode.Scalar(s.value + 32)! : s)
            } else {
                out.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return out
    }

    /// Oniguruma's `\s` under Unicode: the White_Space property.
    @inline(__always) static func isSpace(_ s: Unicode.Scalar) -> Bool {
        if s.isASCII { return s.value == 32 || (s.value >= 9 && s.value <= 13) }
        return s.properties.isWhitespace
    }

    /// `\p{L}`.
    @inline(__always) static func isLetter(_ s: Unicode.Scalar) -> Bool {
        if s.isASCII { return (s.value | 0x20) >= 97 && (s.value | 0x20) <= 122 }
        guard isAssignedForOniguruma(s) else { return false }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// `\p{N}`.
    @inline(__always) static func isNumber(_ s: Unicode.Scalar) -> Bool {
        if s.isASCII { return s.value >= 48 && s.value <= 57 }
        guard isAssignedForOniguruma(s) else { return false }
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// Whether `s` was assigned by Unicode 16.0, the version of the Oniguruma tables in tokenizers 0.2x.
    ///
    /// Matches transformers' CLIPTokenizer: scalars assigned later (Unicode 17 letters and digits, which Swift's own
    /// tables already know) are unassigned there, so they pre-tokenise as "other", not as letters or numbers.
    @inline(__always) static func isAssignedForOniguruma(_ s: Unicode.Scalar) -> Bool {
        guard let age = s.properties.age else { return false }
        return (age.major, age.minor) <= (16, 0)
    }

    private static let contractions: [[Unicode.Scalar]] = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].map { Array($0.unicodeScalars) }
    private static let specialPatterns: [(whole: [Unicode.Scalar], name: [Unicode.Scalar])] =
        ["startoftext", "endoftext"].map { (Array("<|\($0)|>".unicodeScalars), Array($0.unicodeScalars)) }

    /// The matches of CLIP's pre-tokenisation regex, tried in order at each position (whitespace is dropped):
    /// `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`.
    static func preTokenize(_ s: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var words: [ArraySlice<Unicode.Scalar>] = []
        var i = 0
        let n = s.count
        func hasPrefix(_ p: [Unicode.Scalar], at i: Int) -> Bool {
            p.count <= n - i && s[i..<(i + p.count)].elementsEqual(p)
        }
        scan: while i < n {
            let c = s[i]
            if c == "<" {
                for pattern in specialPatterns where hasPrefix(pattern.whole, at: i) {
                    // Matches transformers: the ByteLevel pre-tokenizer that follows re-splits this match with the
                    // GPT-2 regex into "<|", the name and "|>"; for every other match that second split is a no-op.
                    let nameEnd = i + 2 + pattern.name.count
                    words.append(s[i..<(i + 2)])
                    words.append(s[(i + 2)..<nameEnd])
                    words.append(s[nameEnd..<(nameEnd + 2)])
                    i = nameEnd + 2
                    continue scan
                }
            }
            if c == "'" {
                for pattern in contractions where hasPrefix(pattern, at: i) {
                    words.append(s[i..<(i + pattern.count)])
                    i += pattern.count
                    continue scan
                }
            }
            if isLetter(c) {
                var j = i + 1
                while j < n && isLetter(s[j]) { j += 1 }
                words.append(s[i..<j])
                i = j
            } else if isNumber(c) {
                words.append(s[i..<(i + 1)])
                i += 1
            } else if isSpace(c) {
                i += 1
            } else {
                var j = i + 1
                while j < n && !isSpace(s[j]) && !isLetter(s[j]) && !isNumber(s[j]) { j += 1 }
                words.append(s[i..<j])
                i = j
            }
        }
        return words
    }

    @inline(__always) private static func pairKey(_ a: Int, _ b: Int) -> Int { a << 32 | b }

    /// BPE on one pre-token: byte symbols, `</w>` on the last one, then merge by rank until nothing merges.
    func bpe(_ word: ArraySlice<Unicode.Scalar>) -> [Int] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(word.count)
        for s in word { bytes.append(contentsOf: UTF8.encode(s)!) }
        cacheLock.lock()
        if let hit = cache[bytes] { cacheLock.unlock(); return hit }
        cacheLock.unlock()

        // −1 marks a symbol missing from the vocabulary; it never merges and becomes the unk id.
        var symbols = bytes.enumerated().map { i, b in i == bytes.count - 1 ? byteSymbolEndIDs[Int(b)] : byteSymbolIDs[Int(b)] }
        // Matches openai/CLIP simple_tokenizer.bpe: merge every occurrence of the lowest-ranked pair, left to right.
        while symbols.count > 1 {
            var bestRank = Int.max, bestPair = (0, 0), bestID = 0
            for i in 0..<(symbols.count - 1) where symbols[i] >= 0 && symbols[i + 1] >= 0 {
                if let m = merges[Self.pairKey(symbols[i], symbols[i + 1])], m.rank < bestRank {
                    bestRank = m.rank; bestPair = (symbols[i], symbols[i + 1]); bestID = m.id
                }
            }
            if bestRank == Int.max { break }
            var merged: [Int] = []
            merged.reserveCapacity(symbols.count)
            var i = 0
            while i < symbols.count {
                if i < symbols.count - 1 && symbols[i] == bestPair.0 && symbols[i + 1] == bestPair.1 {
                    merged.append(bestID); i += 2
                } else {
                    merged.append(symbols[i]); i += 1
                }
            }
            symbols = merged
        }
        let ids = symbols.map { $0 >= 0 ? $0 : unkTokenID }
        cacheLock.lock()
        if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
        cache[bytes] = ids
        cacheLock.unlock()
        return ids
    }

    // MARK: Decoding

    /// Text for `ids`: byte symbols back to UTF-8, `</w>` → space, trimmed (like transformers' `decode`).
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = true) -> String {
        let special = Set(addedTokens.map(\.id) + [bosTokenID, eosTokenID, padTokenID, unkTokenID])
        var bytes: [UInt8] = []
        for id in ids {
            if skipSpecialTokens && special.contains(id) { continue }
            guard let token = idToToken[id] else { continue }
            for s in token.unicodeScalars {
                if let b = Self.unicodeToByte[s] { bytes.append(b) } else { bytes.append(contentsOf: String(s).utf8) }
            }
        }
        let text = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "</w>", with: " ")
        return text.trimmingCharacters(in: .whitespaces)
    }

    // MARK: Byte-level table and file helpers

    /// GPT-2's byte → printable scalar table: printable Latin-1 bytes map to themselves, the other 68 to U+0100 ….
    static let byteToUnicode: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable { table[b] = Unicode.Scalar(UInt32(b))! } else { table[b] = Unicode.Scalar(next)!; next += 1 }
        }
        return table
    }()

    static let unicodeToByte: [Unicode.Scalar: UInt8] = {
        var map: [Unicode.Scalar: UInt8] = [:]
        for (b, s) in byteToUnicode.enumerated() { map[s] = UInt8(b) }
        return map
    }()

    private static func readJSON(_ url: URL, name: String) throws -> Any {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw CLIPTokenizerError.malformed(file: name, detail: "cannot be read (\(error.localizedDescription))")
        }
        do { return try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) } catch {
            throw CLIPTokenizerError.malformed(file: name, detail: "invalid JSON (\(error.localizedDescription))")
        }
    }

    private static func readJSONObject(_ url: URL, name: String) throws -> [String: Any] {
        guard let object = try readJSON(url, name: name) as? [String: Any] else {
            throw CLIPTokenizerError.malformed(file: name, detail: "top level is not a JSON object")
        }
        return object
    }

    private static func parseVocabulary(_ value: Any?, file: String) throws -> [String: Int] {
        guard let dict = value as? [String: Any] else { throw CLIPTokenizerError.malformed(file: file, detail: "vocabulary is not a {token: id} object") }
        var vocabulary: [String: Int] = [:]
        vocabulary.reserveCapacity(dict.count)
        for (token, id) in dict {
            guard let number = id as? NSNumber, let value = Int(exactly: number.doubleValue), value >= 0 else {
                throw CLIPTokenizerError.malformed(file: file, detail: "id of \"\(token)\" is not a non-negative integer")
            }
            vocabulary[token] = value
        }
        return vocabulary
    }

    private static func parseMergeLine(_ line: String, file: String, line position: String) throws -> (String, String) {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2 else {
            throw CLIPTokenizerError.malformed(file: file, detail: "\(position) \"\(line)\" is not two space-separated tokens")
        }
        return (String(parts[0]), String(parts[1]))
    }
}
