import Foundation

/// Any JSON object key, for finding the ones a settings type does not know.
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension Decoder {
    /// The keyed container of a settings object, after checking that every key in it is one of `keys`: a misspelt
    /// option must be an error naming it, not a silently kept default.
    public func strictContainer<K: CodingKey & CaseIterable>(keyedBy keys: K.Type, section: String) throws -> KeyedDecodingContainer<K> {
        let known = Set(K.allCases.map(\.stringValue))
        let unknown = try container(keyedBy: AnyKey.self).allKeys.map(\.stringValue).filter { !known.contains($0) }.sorted()
        if let first = unknown.first {
            throw DecodingError.dataCorrupted(DecodingError.Context(
                codingPath: codingPath + [AnyKey(stringValue: first)],
                debugDescription: "unknown \(section) option\(unknown.count > 1 ? "s" : "") \(unknown.map { "\"\($0)\"" }.joined(separator: ", ")) (known: \(known.sorted().joined(separator: ", ")))"))
        }
        return try container(keyedBy: K.self)
    }
}
