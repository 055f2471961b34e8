import UnCLIPImage

/// How well one image matches its caption.
///
/// - `colorsCorrect`: every named colour is present (with multiplicity) among the detected objects;
/// - `shapesCorrect`: likewise for shapes;
/// - `countCorrect`: exactly as many objects as named;
/// - `bindingCorrect`: each named object is matched by a distinct detected object of its colour *and* shape
///   (the attribute-binding test: "a red square and a blue circle" against a blue square and a red circle fails);
/// - `sizeCorrect` (only when a size is named) and `relationCorrect` (only with a relation): some binding
///   assignment also has the named size class, or puts the objects' centres in the named relation (no margin);
/// - `correct`: the whole caption holds: right count, and one assignment satisfies binding, size and relation.
public struct CaptionCheckResult: Sendable {
    public var expected: ParsedCaption
    public var detected: [DetectedObject]
    public var colorsCorrect: Bool
    public var shapesCorrect: Bool
    public var countCorrect: Bool
    public var bindingCorrect: Bool
    public var sizeCorrect: Bool?
    public var relationCorrect: Bool?
    public var correct: Bool
}

/// Checks generated images against ShapesWorld captions (spec §"Checking a generated image").
public enum CaptionCheck {
    /// Parses `caption` and `image` and compares them.
    public static func evaluate(caption: String, image: RGBImage, parser: ShapesParser = ShapesParser()) throws -> CaptionCheckResult {
        evaluate(expected: try CaptionParser.parse(caption), detected: parser.parse(image))
    }

    /// Compares a parsed caption with the objects found in an image.
    public static func evaluate(expected: ParsedCaption, detected: [DetectedObject]) -> CaptionCheckResult {
        let named = expected.objects
        let colorsCorrect = contains(detected.map(\.color.rawValue), named.map(\.color.rawValue))
        let shapesCorrect = contains(detected.map(\.shape.rawValue), named.map(\.shape.rawValue))

        // Every injective assignment of named objects to detected objects of the same colour and shape; ShapesWorld
        // captions name at most two objects, so this enumeration stays tiny.
        var assignments: [[Int]] = []
        func extend(_ partial: [Int]) {
            if partial.count == named.count { assignments.append(partial); return }
            let want = named[partial.count]
            for (j, d) in detected.enumerated() where !partial.contains(j) && d.color == want.color && d.shape == want.shape {
                extend(partial + [j])
            }
        }
        extend([])

        func sizesHold(_ a: [Int]) -> Bool {
            zip(named, a).allSatisfy { n, j in n.sizeClass == nil || detected[j].sizeClass == n.sizeClass }
        }
        func relationHolds(_ a: [Int]) -> Bool {
            guard let relation = expected.relation, a.count == 2 else { return true }
            let first = detected[a[0]], second = detected[a[1]]
            return relation.holds(a: (first.cx, first.cy), b: (second.cx, second.cy), margin: 0)
        }
        let namesSize = named.contains { $0.sizeClass != nil }
        let countCorrect = detected.count == named.count
        return CaptionCheckResult(
            expected: expected, detected: detected,
            colorsCorrect: colorsCorrect, shapesCorrect: shapesCorrect, countCorrect: countCorrect,
            bindingCorrect: !assignments.isEmpty,
            sizeCorrect: namesSize ? assignments.contains(where: sizesHold) : nil,
            relationCorrect: expected.relation != nil ? assignments.contains(where: relationHolds) : nil,
            correct: countCorrect && assignments.contains { sizesHold($0) && relationHolds($0) })
    }

    /// Whether multiset `needed` is contained in multiset `available`.
    private static func contains(_ available: [Int], _ needed: [Int]) -> Bool {
        var counts: [Int: Int] = [:]
        for v in available { counts[v, default: 0] += 1 }
        for v in needed {
            guard let c = counts[v], c > 0 else { return false }
            counts[v] = c - 1
        }
        return true
    }
}

/// Accuracies over many checked images; each rate is over the images where it applies.
public struct CaptionCheckSummary: Sendable, CustomStringConvertible {
    public private(set) var images = 0
    public private(set) var colorsCorrect = 0
    public private(set) var shapesCorrect = 0
    public private(set) var countsCorrect = 0
    public private(set) var bindingsCorrect = 0
    public private(set) var sizeChecked = 0, sizeCorrect = 0
    public private(set) var relationChecked = 0, relationCorrect = 0
    /// Relation captions whose objects were all bound (drawn with the right colour and shape), so that the relation
    /// could be judged on its own.
    public private(set) var relationBound = 0
    public private(set) var wholeCorrect = 0

    public init() {}

    public mutating func add(_ result: CaptionCheckResult) {
        images += 1
        if result.colorsCorrect { colorsCorrect += 1 }
        if result.shapesCorrect { shapesCorrect += 1 }
        if result.countCorrect { countsCorrect += 1 }
        if result.bindingCorrect { bindingsCorrect += 1 }
        if let s = result.sizeCorrect { sizeChecked += 1; if s { sizeCorrect += 1 } }
        if let r = result.relationCorrect {
            relationChecked += 1
            if r { relationCorrect += 1 }
            if result.bindingCorrect { relationBound += 1 }
        }
        if result.correct { wholeCorrect += 1 }
    }

    private func rate(_ k: Int, _ n: Int) -> Double { n == 0 ? .nan : Double(k) / Double(n) }
    public var colorAccuracy: Double { rate(colorsCorrect, images) }
    public var shapeAccuracy: Double { rate(shapesCorrect, images) }
    public var countAccuracy: Double { rate(countsCorrect, images) }
    public var bindingAccuracy: Double { rate(bindingsCorrect, images) }
    /// Over captions that name a size.
    public var sizeAccuracy: Double { rate(sizeCorrect, sizeChecked) }
    /// Over captions that state a relation.
    public var relationAccuracy: Double { rate(relationCorrect, relationChecked) }
    /// Over captions that state a relation and whose objects were bound: the relation alone (a relation needs its
    /// two objects, so `relationAccuracy` also counts binding failures).
    public var relationAccuracyWhenBound: Double { rate(relationCorrect, relationBound) }
    public var wholeCaptionAccuracy: Double { rate(wholeCorrect, images) }

    public var description: String {
        func pct(_ v: Double) -> String { v.isNaN ? "n/a" : String((v * 1000).rounded() / 10) + "%" }
        return "\(images) images: colour \(pct(colorAccuracy)), shape \(pct(shapeAccuracy)), count \(pct(countAccuracy)), "
            + "binding \(pct(bindingAccuracy)), size \(pct(sizeAccuracy)) of \(sizeChecked), "
            + "relation \(pct(relationAccuracy)) of \(relationChecked) (\(pct(relationAccuracyWhenBound)) of \(relationBound) bound), "
            + "whole caption \(pct(wholeCaptionAccuracy))"
    }
}

/// How much several images of one prompt differ: the spread of their objects' positions and sizes.
public struct DiversityMeasure: Sendable, Equatable {
    /// Images parsed.
    public var images: Int
    /// Objects that entered the statistics (those whose colour and shape occur in at least two images).
    public var objects: Int
    /// Root-mean-square distance of object centres from their group's mean centre, canvas pixels.
    public var positionSpread: Double
    /// Root-mean-square deviation of object sizes from their group's mean size, canvas pixels.
    public var sizeSpread: Double
}

/// The diversity of a set of images generated for one prompt (the paper's diversity claim, made measurable).
public enum ShapesDiversity {
    /// Groups the detected objects of `images` by (colour, shape) — restricted to the objects `caption` names, if
    /// given — and pools the groups' variances of centre and size (groups seen fewer than twice are left out).
    public static func measure(_ images: [RGBImage], caption: String? = nil, parser: ShapesParser = ShapesParser()) throws -> DiversityMeasure {
        let named = try caption.map { try CaptionParser.parse($0).objects.map { $0.color.rawValue * 16 + $0.shape.rawValue } }
        var groups: [Int: [DetectedObject]] = [:]
        for image in images {
            for object in parser.parse(image) {
                let key = object.color.rawValue * 16 + object.shape.rawValue
                if let named, !named.contains(key) { continue }
                groups[key, default: []].append(object)
            }
        }
        var positionSquares = 0.0, sizeSquares = 0.0, used = 0
        for members in groups.values where members.count >= 2 {
            let k = Double(members.count)
            let mx = members.map(\.cx).reduce(0, +) / k, my = members.map(\.cy).reduce(0, +) / k
            let ms = members.map(\.size).reduce(0, +) / k
            for o in members {
                positionSquares += (o.cx - mx) * (o.cx - mx) + (o.cy - my) * (o.cy - my)
                sizeSquares += (o.size - ms) * (o.size - ms)
            }
            used += members.count
        }
        let denominator = Double(max(used, 1))
        return DiversityMeasure(images: images.count, objects: used,
                                positionSpread: (positionSquares / denominator).squareRoot(),
                                sizeSpread: (sizeSquares / denominator).squareRoot())
    }
}
