import Foundation

/// A configuration value the implementation does not support, named so the user knows what to change.
public struct UnsupportedConfiguration: Error, CustomStringConvertible {
    public var component: String
    public var option: String
    public var value: String
    public var supported: [String]

    public var description: String {
        "\(component): unsupported \(option) = \(value)" + (supported.isEmpty ? "" : " (supported: \(supported.joined(separator: ", ")))")
    }
}

/// A config.json that could not be read, with its path.
public struct ConfigurationFileError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
}

/// Decodes a diffusers/transformers `config.json` into `T`, naming the file in any error.
public func loadConfig<T: Decodable>(_ type: T.Type, from url: URL) throws -> T {
    let data: Data
    do { data = try Data(contentsOf: url) } catch {
        throw ConfigurationFileError(path: url.path, reason: "cannot be read (\(error.localizedDescription))")
    }
    do { return try JSONDecoder().decode(T.self, from: data) } catch let DecodingError.typeMismatch(_, ctx) {
        throw ConfigurationFileError(path: url.path, reason: "wrong type at \(ctx.codingPath.map(\.stringValue).joined(separator: ".")): \(ctx.debugDescription)")
    } catch let DecodingError.dataCorrupted(ctx) {
        throw ConfigurationFileError(path: url.path, reason: "not valid JSON (\(ctx.debugDescription))")
    } catch {
        throw ConfigurationFileError(path: url.path, reason: "\(error)")
    }
}

extension KeyedDecodingContainer {
    /// (option, value) when `key` is present with a value outside `allowed` (nil in `allowed` accepts JSON null).
    func unsupported<T: Decodable & Equatable>(_ key: K, _ type: T.Type, allowed: [T?]) throws -> (String, String)? {
        guard contains(key) else { return nil }
        let v = try decodeIfPresent(T.self, forKey: key)
        return allowed.contains(v) ? nil : (key.stringValue, v.map { "\($0)" } ?? "null")
    }

    /// The value at `key`, or `fallback` when the key is absent or JSON null.
    func value<T: Decodable>(_ key: K, or fallback: T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? fallback
    }
}

extension KeyedDecodingContainer {
    /// The option at `key` (`fallback` when absent), or an error naming the option and its allowed values.
    func option<E: RawRepresentable & CaseIterable>(_ key: K, or fallback: E, component: String) throws -> E where E.RawValue == String {
        guard let raw = try decodeIfPresent(String.self, forKey: key) else { return fallback }
        guard let value = E(rawValue: raw) else {
            throw UnsupportedConfiguration(component: component, option: key.stringValue, value: raw, supported: E.allCases.map(\.rawValue))
        }
        return value
    }
}

extension KeyedEncodingContainer {
    /// `value` written as a JSON integer when it is whole: diffusers declares such options (`freq_shift`) as ints.
    mutating func encodeWhole(_ value: Float, forKey key: K) throws {
        if let whole = Int(exactly: value) { try encode(whole, forKey: key) } else { try encode(value, forKey: key) }
    }
}
