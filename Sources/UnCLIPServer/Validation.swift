import Foundation

/// A JSON value, decoded without loss of type so that validation can say "expected an integer, got a string".
enum JSONValue: Decodable, Sendable, Equatable {
    case null, bool(Bool), integer(Int64), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        // Order matters: a JSON integer also decodes as Double, and only `true`/`false` decode as Bool.
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .integer(i) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .integer: "an integer"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// A request's fields, from a JSON object or a multipart form, read with the API's rules and errors.
///
/// Absent and null fields read as nil (the API's fields are nullable); fields nobody asks for are ignored, as the
/// real API ignored unknown JSON fields. Form fields are text, so they are parsed to the type asked for.
struct RequestFields: Sendable {
    private let values: [String: JSONValue]
    /// Form fields are all text, so numbers come as strings; in JSON a string where a number belongs is an error.
    private let textual: Bool

    init(json: [String: JSONValue]) { values = json; textual = false }

    /// The text fields of a form, each as a JSON string.
    init(form: [String: String]) { values = form.mapValues { .string($0) }; textual = true }

    /// The body as a JSON object, or a 400 saying why it is not one.
    static func parseJSON(_ bytes: some Sequence<UInt8>) throws -> RequestFields {
        let value: JSONValue
        do { value = try JSONDecoder().decode(JSONValue.self, from: Data(bytes)) } catch {
            throw APIError(.badRequest, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)")
        }
        guard case .object(let object) = value else {
            throw APIError(.badRequest, "The JSON body of your request must be an object, not \(value.typeName).")
        }
        return RequestFields(json: object)
    }

    private func value(_ name: String) -> JSONValue? {
        guard let v = values[name], v != .null else { return nil }
        return v
    }

    private func typeError(_ name: String, expected: String, got v: JSONValue) -> APIError {
        .invalid(name, "Invalid type for '\(name)': expected \(expected), but got \(v.typeName) instead.", code: "invalid_type")
    }

    func string(_ name: String, maxLength: Int? = nil) throws -> String? {
        guard let v = value(name) else { return nil }
        guard case .string(let s) = v else { throw typeError(name, expected: "a string", got: v) }
        if let maxLength, s.count > maxLength {
            throw APIError.invalid(name, "Invalid '\(name)': string too long. Expected a string with maximum length \(maxLength), but got a string with length \(s.count) instead.", code: "string_above_max_length")
        }
        return s
    }

    func requiredString(_ name: String, maxLength: Int? = nil) throws -> String {
        guard let s = try string(name, maxLength: maxLength) else {
            throw APIError.invalid(name, "Missing required parameter: '\(name)'.", code: "missing_required_parameter")
        }
        guard !s.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw APIError.invalid(name, "Invalid '\(name)': empty string. Expected a string with minimum length 1.", code: "empty_string")
        }
        return s
    }

    func integer(_ name: String, in range: ClosedRange<Int64>) throws -> Int64? {
        guard let v = value(name) else { return nil }
        let i: Int64
        switch v {
        case .integer(let x): i = x
        case .number(let x) where x.rounded() == x && abs(x) < 9e15: i = Int64(x)
        case .string(let s) where textual && Int64(s.trimmingCharacters(in: .whitespaces)) != nil: i = Int64(s.trimmingCharacters(in: .whitespaces))!
        default: throw typeError(name, expected: "an integer", got: v)
        }
        try check(name, Double(i), in: Double(range.lowerBound)...Double(range.upperBound), kind: "integer", shown: "\(i)")
        return i
    }

    func number(_ name: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = value(name) else { return nil }
        let x: Double
        switch v {
        case .integer(let i): x = Double(i)
        case .number(let d): x = d
        case .string(let s) where textual && Double(s.trimmingCharacters(in: .whitespaces))?.isFinite == true: x = Double(s.trimmingCharacters(in: .whitespaces))!
        default: throw typeError(name, expected: "a number", got: v)
        }
        try check(name, x, in: range, kind: "decimal", shown: "\(x)")
        return x
    }

    private func check(_ name: String, _ x: Double, in range: ClosedRange<Double>, kind: String, shown: String) throws {
        if x < range.lowerBound {
            throw APIError.invalid(name, "Invalid '\(name)': \(kind) below minimum value. Expected a value >= \(format(range.lowerBound)), but got \(shown) instead.", code: "\(kind)_below_min_value")
        }
        if x > range.upperBound {
            throw APIError.invalid(name, "Invalid '\(name)': \(kind) above maximum value. Expected a value <= \(format(range.upperBound)), but got \(shown) instead.", code: "\(kind)_above_max_value")
        }
    }

    /// One of `allowed` (the API's enums: `size`, `response_format`).
    func choice<T>(_ name: String, _ allowed: KeyValuePairs<String, T>) throws -> T? {
        guard let s = try string(name) else { return nil }
        guard let match = allowed.first(where: { $0.key == s }) else {
            let list = allowed.map { "'\($0.key)'" }
            let shown = list.count > 1 ? list.dropLast().joined(separator: ", ") + ", and " + list.last! : list.joined()
            throw APIError.invalid(name, "Invalid value: '\(s)'. Supported values are: \(shown).", code: "invalid_value")
        }
        return match.value
    }
}

private func format(_ x: Double) -> String { x.rounded() == x && abs(x) < 1e15 ? String(Int64(x)) : String(x) }

/// How images come back: `url` (served by this server for 60 minutes) or `b64_json` (base64 PNG in the JSON).
enum ResponseFormat: String, Sendable { case url, b64_json }

/// The fields every image route shares, validated: count, size, format, model, user and the extension fields.
struct ImageRequest: Sendable {
    /// The DALL·E 2 sizes: square, of these sides.
    static let sizes: KeyValuePairs<String, Int> = ["256x256": 256, "512x512": 512, "1024x1024": 1024]
    static let maxPromptLength = 1000

    var n = 1
    var size = 1024
    var responseFormat = ResponseFormat.url
    var user: String?
    // Extension fields, which standard clients never send (`extra_body` in openai-python).
    var seed: UInt64?
    var priorGuidance: Float?
    var decoderGuidance: Float?
    var steps: Int?
    var eta: Float?

    /// Reads the shared fields; `n` has the API's range 1–10 unless a route says otherwise (interpolation frames).
    init(_ fields: RequestFields, models: Set<String>, nRange: ClosedRange<Int64> = 1...10, defaultN: Int = 1) throws {
        if let model = try fields.string("model"), !models.contains(model) {
            let known = models.sorted().map { "'\($0)'" }.joined(separator: " or ")
            throw APIError.invalid("model", "The model '\(model)' does not exist or you do not have access to it. This server serves \(known).", code: "model_not_found")
        }
        n = Int(try fields.integer("n", in: nRange) ?? Int64(defaultN))
        size = try fields.choice("size", Self.sizes) ?? 1024
        responseFormat = try fields.choice("response_format", ["url": ResponseFormat.url, "b64_json": .b64_json]) ?? .url
        user = try fields.string("user")
        // `quality` (only "standard" applies to DALL·E 2) and `style` (DALL·E 3) are accepted and ignored.
        seed = try fields.integer("seed", in: 0...Int64.max).map { UInt64($0) }
        priorGuidance = try fields.number("prior_guidance_scale", in: 0...100).map { Float($0) }
        decoderGuidance = try fields.number("decoder_guidance_scale", in: 0...100).map { Float($0) }
        steps = try fields.integer("steps", in: 2...500).map { Int($0) }
        eta = try fields.number("eta", in: 0...10).map { Float($0) }
    }
}
