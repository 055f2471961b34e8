import Foundation

/// Any JSON object key, for finding the ones a settings type does not know.
public struct AnyKey: CodingKey {
    public var stringValue: String
    public var intValue: Int? { nil }
    public init(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}

extension Decoder {
    /// The keyed container of a settings object, after checking that every key in it is one of `keys`: a misspelt
    /// option must be an error naming it, not a silently kept default. `alsoKnown` names keys the caller reads
    /// another way (a section's earlier name).
    public func strictContainer<K: CodingKey & CaseIterable>(keyedBy keys: K.Type, section: String,
                                                              alsoKnown: [String] = []) throws -> KeyedDecodingContainer<K> {
        let known = Set(K.allCases.map(\.stringValue) + alsoKnown)
        let unknown = try container(keyedBy: AnyKey.self).allKeys.map(\.stringValue).filter { !known.contains($0) }.sorted()
        if let first = unknown.first {
            throw DecodingError.dataCorrupted(DecodingError.Context(
                codingPath: codingPath + [AnyKey(stringValue: first)],
                debugDescription: "unknown \(section) option\(unknown.count > 1 ? "s" : "") \(unknown.map { "\"\($0)\"" }.joined(separator: ", ")) (known: \(known.sorted().joined(separator: ", ")))"))
        }
        return try container(keyedBy: K.self)
    }
}
