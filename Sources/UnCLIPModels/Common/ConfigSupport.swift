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

/// A configuration value no model can have (zero heads, a group count that does not divide the channels, a size no
/// memory holds), named with what was expected: checked before anything is allocated.
public struct InvalidConfiguration: Error, CustomStringConvertible {
    public var component: String
    public var option: String
    public var value: String
    public var expected: String

    public var description: String { "\(component): \(option) = \(value), expected \(expected)" }
}

/// Upper bounds on the sizes a configuration may ask for. Each is well above every published unCLIP / CLIP model
/// (Karlo's widest block is 1280, ViT-bigG's MLP 8192, CLIP's context 77) and far below what would exhaust memory
/// on its own, so a typo or a hostile file fails with a message instead of a multi-gigabyte allocation.
public enum ConfigurationLimits {
    public static let width = 16_384
    public static let mlpWidth = 65_536
    public static let layers = 128
    public static let positions = 4_096
    public static let vocabulary = 1 << 20
    public static let blocks = 8
    public static let sampleSize = 4_096
    public static let channels = 64
    public static let trainTimesteps = 100_000
}

/// A configuration with rules of its own (positive sizes, divisibility, bounds), checked as a whole when decoded
/// from a file and again when a model is built from it.
public protocol CheckedConfiguration {
    func validate() throws
}

/// The checks of one component's configuration, each failure naming the option, the value and the rule.
struct ConfigurationChecks {
    let component: String

    func require(_ ok: Bool, _ option: String, _ value: Any, _ expected: @autoclosure () -> String) throws {
        if !ok { throw InvalidConfiguration(component: component, option: option, value: "\(value)", expected: expected()) }
    }

    /// A size in 1 … `max`.
    func size(_ value: Int, _ option: String, max: Int) throws {
        try require((1...max).contains(value), option, value, "an integer in 1 … \(max)")
    }

    /// `heads` in 1 … `width` dividing `width` (each head gets width / heads features).
    func heads(_ heads: Int, _ option: String, width: Int, widthOption: String) throws {
        try require(heads >= 1 && heads <= width && width % heads == 0, option, heads,
                    "a positive divisor of \(widthOption) (\(width))")
    }

    /// A finite, non-negative epsilon or scale.
    func finite(_ value: Float, _ option: String, nonNegative: Bool = true) throws {
        try require(value.isFinite && (!nonNegative || value >= 0), option, value, nonNegative ? "a finite number ≥ 0" : "a finite number")
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
    return try decodeConfig(T.self, from: data, path: url.path)
}

/// Decodes and, for a `CheckedConfiguration`, validates a config, naming `path` in any error.
func decodeConfig<T: Decodable>(_ type: T.Type, from data: Data, path: String) throws -> T {
    let value: T
    do { value = try JSONDecoder().decode(T.self, from: data) } catch let DecodingError.typeMismatch(_, ctx) {
        throw ConfigurationFileError(path: path, reason: "wrong type at \(ctx.codingPath.map(\.stringValue).joined(separator: ".")): \(ctx.debugDescription)")
    } catch let DecodingError.dataCorrupted(ctx) {
        throw ConfigurationFileError(path: path, reason: "not valid JSON (\(ctx.debugDescription))")
    } catch {
        throw ConfigurationFileError(path: path, reason: "\(error)")
    }
    if let checked = value as? CheckedConfiguration {
        do { try checked.validate() } catch { throw ConfigurationFileError(path: path, reason: "\(error)") }
    }
    return value
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
