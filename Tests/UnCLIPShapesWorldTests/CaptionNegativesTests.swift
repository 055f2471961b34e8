import Foundation
import XCTest
import UnCLIPImage
import UnCLIPTensor
@testable import UnCLIPShapesWorld

/// ShapesWorld's caption rewrites for contrastive training: mirror pairs and hard, attribute and binding negatives.
final class CaptionNegativesTests: XCTestCase {
    func testMirrorPairsFlipAlongTheRelationAndReverseIt() throws {
        let world = ShapesWorld(seed: 3)
        var seen = Set<String>()
        for index in 0..<200 {
            let scene = world.scene(at: index)
            let image = ShapesWorld.render(scene)
            let (mirror, caption) = CaptionNegatives.mirrorPair(image: image, caption: scene.caption)
            let horizontal: Bool
            switch scene.relation {
            case .leftOf?: XCTAssertEqual(caption, scene.caption.replacingOccurrences(of: "left", with: "right")); horizontal = true
            case .rightOf?: XCTAssertEqual(caption, scene.caption.replacingOccurrences(of: "right", with: "left")); horizontal = true
            case .above?: XCTAssertEqual(caption, scene.caption.replacingOccurrences(of: "above", with: "below")); horizontal = false
            case .below?: XCTAssertEqual(caption, scene.caption.replacingOccurrences(of: "below", with: "above")); horizontal = false
            case nil: XCTAssertEqual(caption, scene.caption); horizontal = true
            }
            seen.insert(scene.relation.map { "\($0)" } ?? "none")
            XCTAssertEqual(mirror, image.flipped(horizontally: horizontal))
            XCTAssertEqual(mirror.flipped(horizontally: horizontal), image)
        }
        XCTAssertEqual(seen.count, 5, "every relation and none occur in 200 scenes")
        // The flip itself: column x ↔ width−1−x, row y ↔ height−1−y.
        let strip = RGBImage(width: 3, height: 2, pixels: (0..<18).map(UInt8.init))
        XCTAssertEqual(strip.flipped(horizontally: true).pixels, [6, 7, 8, 3, 4, 5, 0, 1, 2, 15, 16, 17, 12, 13, 14, 9, 10, 11])
        XCTAssertEqual(strip.flipped(horizontally: false).pixels, Array((9..<18).map(UInt8.init)) + (0..<9).map(UInt8.init))
        XCTAssertEqual(strip.shifted(dx: 1, dy: 0).pixels, [0, 1, 2, 0, 1, 2, 3, 4, 5, 9, 10, 11, 9, 10, 11, 12, 13, 14])
        XCTAssertEqual(strip.shifted(dx: 0, dy: -1).pixels, Array((9..<18).map(UInt8.init)) + (9..<18).map(UInt8.init))
        XCTAssertEqual(CaptionNegatives.hardNegative("a red circle above a blue square"), "a red circle below a blue square")
        XCTAssertEqual(CaptionNegatives.hardNegative("a red circle and an orange square"), "an orange circle and a red square")
        XCTAssertNil(CaptionNegatives.hardNegative("a red circle"))
    }

    func testAttributeNegativesChangeOneShapeAndOneColour() throws {
        let shapes = Set(ShapeKind.allCases.map(\.name)), colors = Set(ShapeColor.allCases.map(\.name))
        let world = ShapesWorld(seed: 4)
        var rng = Philox(seed: 1)
        for index in 0..<100 {
            let caption = world.scene(at: index).caption
            let negatives = CaptionNegatives.attributeNegatives(caption, using: &rng)
            XCTAssertEqual(negatives.count, 2, caption)
            let words = caption.split(separator: " ")
            for (negative, vocabulary) in zip(negatives, [shapes, colors]) {
                let changed = zip(words, negative.split(separator: " ")).filter { $0.0 != $0.1 }
                // One word of the vocabulary replaced by another; at most the article before it follows.
                let attribute = changed.filter { vocabulary.contains(String($0.0)) }
                XCTAssertEqual(attribute.count, 1, "\(caption) → \(negative)")
                XCTAssertTrue(attribute.allSatisfy { vocabulary.contains(String($0.1)) })
                XCTAssertTrue(changed.allSatisfy { vocabulary.contains(String($0.0)) || $0.0 == "a" || $0.0 == "an" })
                XCTAssertEqual(negative.split(separator: " ").count, words.count)
            }
        }
        var again = Philox(seed: 7), once = Philox(seed: 7)
        XCTAssertEqual(CaptionNegatives.attributeNegatives("an orange circle", using: &again),
                       CaptionNegatives.attributeNegatives("an orange circle", using: &once), "a pure function of the generator")
        var g = Philox(seed: 2)
        for _ in 0..<20 {
            let colour = CaptionNegatives.attributeNegatives("an orange circle", using: &g)[1]
            XCTAssertTrue(colour.hasPrefix("a ") && !colour.hasPrefix("a orange"), colour)  // the article follows the colour
        }
        XCTAssertEqual(CaptionNegatives.attributeNegatives("a photo of a dog", using: &g), [])
    }

    func testBindingNegativesSwapAndCopyAttributesBetweenTheTwoObjects() {
        XCTAssertEqual(CaptionNegatives.bindingNegatives("a red circle above a blue square"),
                       ["a red square above a blue circle", "a red circle above a blue circle",
                        "a red square above a blue square", "a blue circle above a red square"])
        XCTAssertEqual(CaptionNegatives.bindingNegatives("an orange cross to the left of a large red cross"),
                       ["a red cross to the left of a large orange cross"], "equal shapes: only the colours swap")
        XCTAssertEqual(CaptionNegatives.bindingNegatives("a small green triangle and a small green circle"),
                       ["a small green circle and a small green triangle", "a small green triangle and a small green triangle",
                        "a small green circle and a small green circle"])
        XCTAssertEqual(CaptionNegatives.bindingNegatives("a red circle"), [])
        XCTAssertEqual(CaptionNegatives.bindingNegatives("a photo of a dog"), [])
    }
}
