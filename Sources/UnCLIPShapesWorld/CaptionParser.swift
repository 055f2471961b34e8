/// An object a caption names.
public struct ExpectedObject: Equatable, Sendable {
    public var color: ShapeColor
    public var shape: ShapeKind
    /// The size class, when the caption names one.
    public var sizeClass: SizeClass?

    public init(color: ShapeColor, shape: ShapeKind, sizeClass: SizeClass? = nil) {
        self.color = color; self.shape = shape; self.sizeClass = sizeClass
    }
}

/// What a ShapesWorld caption asks for.
public struct ParsedCaption: Equatable, Sendable {
    /// The named objects; with a relation, `objects[0]` is A and `objects[1]` is B.
    public var objects: [ExpectedObject]
    /// The stated relation, if the objects are joined by one rather than by "and".
    public var relation: SpatialRelation?

    public init(objects: [ExpectedObject], relation: SpatialRelation?) {
        self.objects = objects; self.relation = relation
    }
}

/// A caption outside the ShapesWorld grammar.
public enum CaptionParseError: Error, CustomStringConvertible, Equatable {
    /// A word that cannot appear where it does.
    case unexpectedWord(caption: String, word: String, position: Int, expected: String)
    /// The caption stops where more words are needed.
    case unexpectedEnd(caption: String, expected: String)

    public var description: String {
        switch self {
        case let .unexpectedWord(caption, word, position, expected):
            return "caption \"\(caption)\": word \(position + 1) is \"\(word)\", expected \(expected)"
        case let .unexpectedEnd(caption, expected): return "caption \"\(caption)\" ends where \(expected) is expected"
        }
    }
}

/// Parses the ShapesWorld caption grammar back into objects and a relation.
///
/// caption := object [ ("and" | relation) object ];  object := ("a" | "an") [size] colour shape;
/// relation := "to the left of" | "to the right of" | "above" | "below".
/// Case, repeated white space and a trailing full stop are tolerated; "a" and "an" are accepted interchangeably.
public enum CaptionParser {
    public static func parse(_ caption: String) throws -> ParsedCaption {
        var text = caption.lowercased()
        while text.last == "." || text.last?.isWhitespace == true { text.removeLast() }
        let words = text.split(whereSeparator: { $0.isWhitespace }).map(String.init)
        var position = 0

        func fail(_ expected: String) -> CaptionParseError {
            position < words.count
                ? .unexpectedWord(caption: caption, word: words[position], position: position, expected: expected)
                : .unexpectedEnd(caption: caption, expected: expected)
        }
        func take<T>(_ expected: String, _ read: (String) -> T?) throws -> T {
            guard position < words.count, let value = read(words[position]) else { throw fail(expected) }
            position += 1
            return value
        }
        func object() throws -> ExpectedObject {
            _ = try take("\"a\" or \"an\"") { $0 == "a" || $0 == "an" ? $0 : nil }
            var sizeClass: SizeClass?
            if position < words.count, let size = SizeClass(word: words[position]) { sizeClass = size; position += 1 }
            let color = try take("a colour (\(ShapeColor.allCases.map(\.name).joined(separator: ", ")))") { ShapeColor(word: $0) }
            let shape = try take("a shape (\(ShapeKind.allCases.map(\.name).joined(separator: ", ")))") { ShapeKind(word: $0) }
            return ExpectedObject(color: color, shape: shape, sizeClass: sizeClass)
        }

        let first = try object()
        if position == words.count { return ParsedCaption(objects: [first], relation: nil) }
        var relation: SpatialRelation?
        if words[position] == "and" {
            position += 1
        } else if let match = SpatialRelation.allCases.first(where: { r in
            let phrase = r.phrase.split(separator: " ").map(String.init)
            return words.count >= position + phrase.count && Array(words[position..<(position + phrase.count)]) == phrase
        }) {
            relation = match
            position += match.phrase.split(separator: " ").count
        } else {
            throw fail("\"and\" or a relation (to the left of, to the right of, above, below)")
        }
        let second = try object()
        guard position == words.count else { throw fail("the end of the caption") }
        return ParsedCaption(objects: [first, second], relation: relation)
    }
}
