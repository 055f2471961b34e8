import Foundation

/// Encodes an `Encodable` value as Foundation JSON objects (`[String: Any]`, `[Any]`, `String`, `Bool`, `Int`,
/// `Double`, `NSNull`) that keep the Swift number types.
///
/// `JSONEncoder` prints the Double 1.0 as `1`, and transformers' strict config classes reject an int where they
/// declare a float; `ComponentWriter.writeJSON` can print `1.0` only while it still knows the number is a float.
enum JSONObjectEncoder {
    /// The value's JSON object (a config's keys and values).
    static func object(_ value: some Encodable) throws -> [String: Any] {
        let root = Slot()
        var single = SingleSlot(slot: root, codingPath: [])
        try single.encode(value)
        guard let object = root.resolved as? [String: Any] else {
            throw EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: "not a JSON object"))
        }
        return object
    }
}

/// One JSON value under construction; containers hold slots so nested encoders can fill them later.
private final class Slot {
    enum Content { case empty, scalar(Any), object([String: Slot]), array([Slot]) }
    var content = Content.empty

    var resolved: Any {
        switch content {
        case .empty: return [String: Any]()  // an Encodable that wrote nothing
        case .scalar(let v): return v
        case .object(let entries): return entries.mapValues(\.resolved)
        case .array(let items): return items.map(\.resolved)
        }
    }

    func child(_ key: String) -> Slot {
        guard case .object(var entries) = content else { preconditionFailure("not a keyed container") }
        let slot = Slot()
        entries[key] = slot
        content = .object(entries)
        return slot
    }

    func appended() -> Slot {
        guard case .array(var items) = content else { preconditionFailure("not an unkeyed container") }
        let slot = Slot()
        items.append(slot)
        content = .array(items)
        return slot
    }
}

private struct SlotEncoder: Encoder {
    let slot: Slot
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        // A second keyed container on the same value adds to the same object, as with JSONEncoder.
        if case .object = slot.content {} else { slot.content = .object([:]) }
        return KeyedEncodingContainer(KeyedSlots<Key>(slot: slot, codingPath: codingPath))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        if case .array = slot.content {} else { slot.content = .array([]) }
        return UnkeyedSlots(slot: slot, codingPath: codingPath)
    }

    func singleValueContainer() -> SingleValueEncodingContainer { SingleSlot(slot: slot, codingPath: codingPath) }
}

private struct SingleSlot: SingleValueEncodingContainer {
    let slot: Slot
    let codingPath: [CodingKey]

    mutating func encodeNil() throws { slot.content = .scalar(NSNull()) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        // The casts also unwrap a present Optional; an absent one encodes itself as null below.
        switch value {
        case let x as Bool: slot.content = .scalar(x)
        case let x as String: slot.content = .scalar(x)
        case let x as Int: slot.content = .scalar(x)
        case let x as any BinaryInteger: slot.content = .scalar(Int(exactly: x).map { $0 as Any } ?? Double(x))
        case let x as Double: slot.content = .scalar(x)
        // A Float is widened through its shortest decimal form, so 1e-5 stays 1e-05 in the file (not 9.99999974737875e-06).
        case let x as Float: slot.content = .scalar(x.isFinite ? Double("\(x)")! : Double(x))
        default: try value.encode(to: SlotEncoder(slot: slot, codingPath: codingPath))
        }
    }
}

private struct KeyedSlots<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let slot: Slot
    let codingPath: [CodingKey]

    mutating func encodeNil(forKey key: Key) throws { slot.child(key.stringValue).content = .scalar(NSNull()) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        var single = SingleSlot(slot: slot.child(key.stringValue), codingPath: codingPath + [key])
        try single.encode(value)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        SlotEncoder(slot: slot.child(key.stringValue), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        SlotEncoder(slot: slot.child(key.stringValue), codingPath: codingPath + [key]).unkeyedContainer()
    }

    mutating func superEncoder() -> Encoder { SlotEncoder(slot: slot.child("super"), codingPath: codingPath) }

    mutating func superEncoder(forKey key: Key) -> Encoder {
        SlotEncoder(slot: slot.child(key.stringValue), codingPath: codingPath + [key])
    }
}

private struct UnkeyedSlots: UnkeyedEncodingContainer {
    let slot: Slot
    let codingPath: [CodingKey]

    var count: Int {
        guard case .array(let items) = slot.content else { return 0 }
        return items.count
    }

    mutating func encodeNil() throws { slot.appended().content = .scalar(NSNull()) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        var single = SingleSlot(slot: slot.appended(), codingPath: codingPath)
        try single.encode(value)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        SlotEncoder(slot: slot.appended(), codingPath: codingPath).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
        SlotEncoder(slot: slot.appended(), codingPath: codingPath).unkeyedContainer()
    }

    mutating func superEncoder() -> Encoder { SlotEncoder(slot: slot.appended(), codingPath: codingPath) }
}
