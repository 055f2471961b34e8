import Foundation

/// A streaming `multipart/form-data` parser (RFC 7578 over RFC 2046's multipart syntax), fed the body chunk by
/// chunk as it arrives, with every size bounded.
///
/// The project's own because the server reads every byte from the network as hostile: MultipartKit 4.7.1, the
/// parser used before, traps (index out of range) on a header-name byte of 0x80 or more, so one request could stop
/// the server; the fuzz target `FuzzRequest` found it (docs/reliability.md, "Fuzzing").
///
///     preamble CRLF "--" boundary padding CRLF      (the body is read as if it began with a CRLF, so the
///       header-line* CRLF                            first delimiter may open it; the preamble is dropped)
///       content
///     CRLF "--" boundary padding CRLF               (the next part) … or
///     CRLF "--" boundary "--" epilogue              (the end; the epilogue is dropped)
///
/// The content runs to the next delimiter, found with Knuth–Morris–Pratt across chunk boundaries: bytes that begin
/// a possible delimiter are held back until it matches or fails.
struct MultipartReader {
    /// Longest header line, and most header lines in one part.
    static let maxHeaderLine = 8 << 10, maxHeaders = 16
    /// Most parts in one form (the API's routes take at most six fields and two files).
    static let maxParts = 64
    /// Most bytes after the closing delimiter.
    static let maxEpilogue = 1 << 10

    private enum State {
        case preamble, afterBoundary, padding, header, content, closing, epilogue
    }

    private let delimiter: [UInt8]
    private let failure: [Int]
    private let maxFileBytes: Int
    private var state = State.preamble
    private var matched = 0
    private var line: [UInt8] = []
    private var epilogue = 0
    private var parts = 0
    private var headers = 0
    // The part being read.
    private var name: String?
    private var filename: String?
    private var content: [UInt8] = []
    private(set) var form = FormData()

    init(boundary: String, maxFileBytes: Int) {
        delimiter = Array("\r\n--\(boundary)".utf8)
        failure = Self.failureFunction(delimiter)
        self.maxFileBytes = maxFileBytes
        // The body is read as if it began with CRLF, so that a delimiter at its very start is found.
        matched = 2
    }

    /// Reads the next bytes of the body.
    mutating func feed(_ bytes: some Collection<UInt8>) throws {
        var i = bytes.startIndex
        while i != bytes.endIndex {
            // Content up to the next CR cannot hold a delimiter: it is taken whole.
            if matched == 0 && (state == .content || state == .preamble) {
                let end = bytes[i...].firstIndex(of: UInt8(ascii: "\r")) ?? bytes.endIndex
                if end != i { try emit(bytes[i..<end]); i = end; continue }
            }
            let byte = bytes[i]
            i = bytes.index(after: i)
            switch state {
            case .preamble, .content:
                try scan(byte)
            case .afterBoundary:
                // "--" closes the form; anything else is padding before the CRLF that opens the next part's headers.
                if byte == UInt8(ascii: "-") { state = .closing } else { state = .padding; try pad(byte) }
            case .closing:
                guard byte == UInt8(ascii: "-") else { throw Self.malformed("a delimiter is followed by one '-'") }
                state = .epilogue
            case .padding:
                try pad(byte)
            case .header:
                try header(byte)
            case .epilogue:
                epilogue += 1
                if epilogue > Self.maxEpilogue { throw Self.malformed("more than \(Self.maxEpilogue) bytes follow the closing boundary") }
            }
        }
    }

    /// The form, once the closing delimiter has been read.
    func finish() throws -> FormData {
        guard state == .epilogue else {
            throw APIError(.badRequest, "The multipart/form-data body is truncated: it ends before its closing boundary.",
                           code: "invalid_multipart")
        }
        return form
    }

    // MARK: States

    /// A content (or preamble) byte, or part of a delimiter.
    private mutating func scan(_ byte: UInt8) throws {
        while matched > 0 && delimiter[matched] != byte {
            // The held bytes delimiter[0..<matched] cannot all begin a delimiter: the first ones are content.
            let kept = failure[matched - 1]
            try emit(delimiter[0..<(matched - kept)])
            matched = kept
        }
        if delimiter[matched] == byte {
            matched += 1
            if matched == delimiter.count {
                matched = 0
                try endPart()
                state = .afterBoundary
            }
        } else {
            try emit(CollectionOfOne(byte))
        }
    }

    /// Transport padding (spaces and tabs) after a delimiter, then its CRLF.
    private mutating func pad(_ byte: UInt8) throws {
        switch byte {
        case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"): break
        case UInt8(ascii: "\n"):
            guard parts < Self.maxParts else { throw Self.malformed("it has more than \(Self.maxParts) parts") }
            parts += 1
            headers = 0
            state = .header
        default: throw Self.malformed("a delimiter line holds other text")
        }
    }

    /// A header line's byte; an empty line ends the headers.
    private mutating func header(_ byte: UInt8) throws {
        guard byte == UInt8(ascii: "\n") else {
            guard line.count < Self.maxHeaderLine else { throw Self.malformed("a header line is longer than \(Self.maxHeaderLine) bytes") }
            line.append(byte)
            return
        }
        guard line.last == UInt8(ascii: "\r") else { throw Self.malformed("a header line does not end with CRLF") }
        line.removeLast()
        defer { line = [] }
        if line.isEmpty { state = .content; return }
        headers += 1
        guard headers <= Self.maxHeaders else { throw Self.malformed("a part has more than \(Self.maxHeaders) headers") }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > 0,
              line[..<colon].allSatisfy(Self.isTokenCharacter) else {
            throw Self.malformed("a header line is not 'Name: value'")
        }
        let field = String(decoding: line[..<colon], as: UTF8.self)
        guard field.lowercased() == "content-disposition" else { return }
        let value = String(decoding: line[(colon + 1)...], as: UTF8.self)
        name = Self.parameter("name", of: value)
        filename = Self.parameter("filename", of: value)
    }

    // MARK: Parts

    private mutating func emit(_ bytes: some Collection<UInt8>) throws {
        guard state == .content else { return }  // the preamble is dropped
        content.append(contentsOf: bytes)
        if content.count >= maxFileBytes {
            if filename != nil {
                throw APIError.invalid(name ?? "image", "Uploaded image must be a PNG and less than 4 MB.", code: "invalid_image")
            }
            throw APIError.invalid(name ?? "form", "The form field '\(name ?? "")' is longer than \(maxFileBytes) bytes.",
                                   code: "field_too_long")
        }
    }

    /// A delimiter ended the current part (or the preamble): the part becomes a field or a file.
    private mutating func endPart() throws {
        defer { name = nil; filename = nil; content = [] }
        guard state == .content, let name else { return }  // the preamble, or a part with no name
        if let filename {
            form.files[name] = FormFile(filename: filename, data: content)
        } else {
            form.fields[name] = String(decoding: content, as: UTF8.self)
        }
    }

    // MARK: Helpers

    private static func malformed(_ why: String) -> APIError {
        APIError(.badRequest, "The multipart/form-data body could not be parsed: \(why).", code: "invalid_multipart")
    }

    /// RFC 9110's token characters, which header names are made of.
    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    /// `name="value"` of a Content-Disposition header (quotes optional).
    static func parameter(_ key: String, of header: String) -> String? {
        for item in header.split(separator: ";") {
            let pair = item.trimmingCharacters(in: .whitespaces)
            guard pair.lowercased().hasPrefix(key + "=") else { continue }
            return String(pair.dropFirst(key.count + 1)).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        }
        return nil
    }

    /// KMP's failure function: `f[i]` is the length of the longest proper prefix of `p[0...i]` that is also its suffix.
    private static func failureFunction(_ p: [UInt8]) -> [Int] {
        var f = [Int](repeating: 0, count: p.count)
        var k = 0
        for i in 1..<p.count {
            while k > 0 && p[i] != p[k] { k = f[k - 1] }
            if p[i] == p[k] { k += 1 }
            f[i] = k
        }
        return f
    }
}
