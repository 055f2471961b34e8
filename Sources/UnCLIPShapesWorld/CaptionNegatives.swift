import Foundation
import UnCLIPImage
import UnCLIPTensor

// ShapesWorld's caption rewrites for contrastive training (docs/training.md, "A CLIP that reads spatial relations"):
// hard negatives that differ from the true caption only in what a bag-of-words text encoder cannot see, and the
// mirror pairs that reverse a relation. They rewrite ShapesWorld's relation, shape and colour words; a CLIP trainer
// applies them only when its configuration names the ShapesWorld recipe.

/// Hard-negative captions for contrastive training: a caption that differs from the true one only in what a
/// bag-of-words text encoder cannot see.
public enum CaptionNegatives {
    static let opposites = [(" to the left of ", " to the right of "), (" above ", " below ")]

    /// The scene's mirror image and the caption that describes it: flipped along its relation's axis with the relation
    /// reversed ("A left of B" → flipped left–right, "A right of B"; "A above B" → flipped top–bottom, "A below B"),
    /// any other scene flipped left–right with its caption unchanged.
    ///
    /// A top–bottom flip turns a ShapesWorld triangle upside down, which no caption distinguishes; the image is still
    /// a triangle in the named relation.
    public static func mirrorPair(image: RGBImage, caption: String) -> (image: RGBImage, caption: String) {
        for ((a, b), flipsHorizontally) in zip(opposites, [true, false]) {  // left/right flips across x, above/below across y
            if caption.contains(a) { return (image.flipped(horizontally: flipsHorizontally), caption.replacingOccurrences(of: a, with: b)) }
            if caption.contains(b) { return (image.flipped(horizontally: flipsHorizontally), caption.replacingOccurrences(of: b, with: a)) }
        }
        return (image.flipped(horizontally: true), caption)
    }

    /// The caption with its relation reversed ("A left of B" → "A right of B"), or, for "a C₁ S₁ and a C₂ S₂" with two
    /// colours, the colours swapped ("a C₂ S₁ and a C₁ S₂"); nil when neither applies.
    public static func hardNegative(_ caption: String) -> String? {
        for (a, b) in opposites {
            if caption.contains(a) { return caption.replacingOccurrences(of: a, with: b) }
            if caption.contains(b) { return caption.replacingOccurrences(of: b, with: a) }
        }
        let parts = caption.components(separatedBy: " and ")
        guard parts.count == 2 else { return nil }
        let first = parts[0].split(separator: " ").map(String.init), second = parts[1].split(separator: " ").map(String.init)
        // "a red circle" / "a large red circle": the colour is the word before the shape.
        guard first.count >= 3, second.count >= 3 else { return nil }
        let c1 = first[first.count - 2], c2 = second[second.count - 2]
        guard c1 != c2 else { return nil }
        var f = first, s = second
        f[f.count - 2] = c2
        s[s.count - 2] = c1
        return articlesFixed(f + ["and"] + s).joined(separator: " ")
    }

    /// The words with every "a" / "an" made to agree with the word after it ("an orange" → "a red").
    static func articlesFixed(_ words: [String]) -> [String] {
        var words = words
        for i in words.indices.dropLast() where words[i] == "a" || words[i] == "an" {
            words[i] = ShapesCaption.article(before: words[i + 1])
        }
        return words
    }

    /// A uniform integer in 0 ..< n: the training streams' draw (`TrainingRandom.int` in UnCLIPTraining), so a
    /// run's negatives stay what they were when these rewrites lived in the CLIP trainer.
    static func uniform(_ n: Int, using rng: inout Philox) -> Int {
        Int(rng.next() % UInt64(n))
    }
}

extension CaptionNegatives {
    /// Up to two negatives of a ShapesWorld-style caption: one shape word (of one object, drawn from `rng`) replaced by
    /// another shape, and one colour word replaced by another colour, the article fixed ("an orange" → "a red").
    /// Captions without shape or colour words give none.
    public static func attributeNegatives(_ caption: String, using rng: inout Philox) -> [String] {
        var negatives: [String] = []
        for vocabulary in [ShapeKind.allCases.map(\.name), ShapeColor.allCases.map(\.name)] {
            var words = caption.split(separator: " ").map(String.init)
            let slots = words.indices.filter { vocabulary.contains(words[$0]) }
            guard !slots.isEmpty else { continue }
            let slot = slots[uniform(slots.count, using: &rng)]
            let others = vocabulary.filter { $0 != words[slot] }
            words[slot] = others[uniform(others.count, using: &rng)]
            negatives.append(articlesFixed(words).joined(separator: " "))
        }
        return negatives
    }
}

extension CaptionNegatives {
    /// The binding negatives of a two-object ShapesWorld-style caption ("a red circle above a blue square"): the two
    /// shapes swapped ("a red square above a blue circle"), each object's shape given to both ("a red circle above a
    /// blue circle", "a red square above a blue square") and the two colours swapped ("a blue circle above a red
    /// square"). A bag of attributes cannot tell any of them from the true caption. Captions without two different
    /// shape (colour) words give no shape (colour) negatives.
    public static func bindingNegatives(_ caption: String) -> [String] {
        let words = caption.split(separator: " ").map(String.init)
        func slots(_ vocabulary: [String]) -> (Int, Int)? {
            let found = words.indices.filter { vocabulary.contains(words[$0]) }
            return found.count == 2 && words[found[0]] != words[found[1]] ? (found[0], found[1]) : nil
        }
        func edited(_ edit: (inout [String]) -> Void) -> String {
            var w = words
            edit(&w)
            return articlesFixed(w).joined(separator: " ")
        }
        var negatives: [String] = []
        if let (a, b) = slots(ShapeKind.allCases.map(\.name)) {
            negatives += [edited { $0.swapAt(a, b) }, edited { $0[b] = words[a] }, edited { $0[a] = words[b] }]
        }
        if let (a, b) = slots(ShapeColor.allCases.map(\.name)) {
            negatives.append(edited { $0.swapAt(a, b) })
        }
        return negatives
    }
}
