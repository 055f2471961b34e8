import Foundation
import XCTest
import UnCLIPImage
@testable import UnCLIPShapesWorld

/// The scene's caption with the two objects' colours exchanged ("a red circle above a blue cross" →
/// "a blue circle above a red cross").
private func swappingColours(_ scene: Scene) -> String {
    var objects = scene.objects
    (objects[0].color, objects[1].color) = (objects[1].color, objects[0].color)
    return Scene(objects: objects, relation: scene.relation, mentionsSize: scene.mentionsSize).caption
}

/// Deterministic noise of amplitude ±`amplitude` and a 3 × 3 box blur: a stand-in for a generated image's flaws.
private func degraded(_ image: RGBImage, amplitude: Int, seed: UInt64) -> RGBImage {
    let w = image.width, h = image.height
    var blurred = image.pixels
    for y in 0..<h {
        for x in 0..<w {
            for c in 0..<3 {
                var sum = 0, n = 0
                for yy in max(0, y - 1)...min(h - 1, y + 1) { for xx in max(0, x - 1)...min(w - 1, x + 1) { sum += Int(image.pixels[(yy * w + xx) * 3 + c]); n += 1 } }
                blurred[(y * w + x) * 3 + c] = UInt8((sum + n / 2) / n)
            }
        }
    }
    var state = seed &+ 0x9E37_79B9_7F4A_7C15
    for i in blurred.indices {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let noise = Int((state >> 33) % UInt64(2 * amplitude + 1)) - amplitude
        blurred[i] = UInt8(min(255, max(0, Int(blurred[i]) + noise)))
    }
    return RGBImage(width: w, height: h, pixels: blurred)
}

final class CaptionParserTests: XCTestCase {
    func testParsesEveryGeneratedCaption() throws {
        let world = ShapesWorld(seed: 77)
        for index in 0..<1000 {
            let scene = world.scene(at: index)
            let parsed = try CaptionParser.parse(scene.caption)
            XCTAssertEqual(parsed.relation, scene.relation, scene.caption)
            XCTAssertEqual(parsed.objects, scene.objects.map {
                ExpectedObject(color: $0.color, shape: $0.shape, sizeClass: scene.mentionsSize ? $0.sizeClass : nil)
            }, scene.caption)
        }
        XCTAssertEqual(try CaptionParser.parse("A Large  orange cross."),
                       ParsedCaption(objects: [ExpectedObject(color: .orange, shape: .cross, sizeClass: .large)], relation: nil))
    }

    func testRejectsCaptionsOutsideTheGrammar() {
        let bad = [
            ("", "ends where"), ("a red", "ends where"), ("a pink circle", "\"pink\""), ("red circle", "\"red\""),
            ("a red circle near a blue square", "\"near\""), ("a red circle to the left a blue square", "\"to\""),
            ("a red circle and a blue square and a green cross", "\"and\""), ("a red hexagon", "\"hexagon\""),
        ]
        for (caption, fragment) in bad {
            XCTAssertThrowsError(try CaptionParser.parse(caption), caption) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(caption): \(error)")
            }
        }
    }
}

final class ShapesParserTests: XCTestCase {
    func testRecoversGeometryOfSingleObjects() throws {
        for shape in ShapeKind.allCases {
            for (s, cx, cy) in [(24.3, 40.1, 77.9), (47.7, 63.55, 60.2)] {
                let object = SceneObject(shape: shape, color: .purple, sizeClass: s < 35 ? .small : .large, s: s, cx: cx, cy: cy)
                let image = ShapesWorld.render(Scene(objects: [object], relation: nil, mentionsSize: false))
                let found = ShapesParser().parse(image)
                XCTAssertEqual(found.count, 1, "\(shape)")
                guard let d = found.first else { continue }
                XCTAssertEqual(d.shape, shape)
                XCTAssertEqual(d.color, .purple)
                XCTAssertEqual(d.cx, cx, accuracy: 0.3, "\(shape)")
                XCTAssertEqual(d.cy, cy, accuracy: 0.3, "\(shape)")
                XCTAssertEqual(d.size, s, accuracy: 0.03 * s, "\(shape)")
                XCTAssertLessThan(d.fitError, 0.03, "\(shape): \(d)")
                XCTAssertEqual(d.blur, 0, "a crisp render fits the unblurred template best")

                // The same scene at 32 × 32: coarser, but the same objects.
                let low = ShapesParser().parse(try image.boxDownsampled(factor: 4))
                XCTAssertEqual(low.map(\.shape), [shape], "\(shape) at 32x32, s = \(s)")
                if let l = low.first {
                    XCTAssertEqual(l.cx, cx, accuracy: 1.5)
                    XCTAssertEqual(l.cy, cy, accuracy: 1.5)
                    XCTAssertEqual(l.size, s, accuracy: 0.1 * s)
                }
            }
        }
        XCTAssertEqual(ShapesParser().parse(RGBImage(width: 64, height: 64, red: 255, green: 255, blue: 255)), [])
    }

    /// The judge must accept the ground truth: whole-caption accuracy on renders.
    func testGroundTruthRendersAreJudgedCorrect() throws {
        let world = ShapesWorld(seed: 1234)
        var full = CaptionCheckSummary(), low = CaptionCheckSummary()
        var failures: [String] = []
        for index in 0..<2000 {
            let scene = world.scene(at: index)
            let image = ShapesWorld.render(scene)
            let result = try CaptionCheck.evaluate(caption: scene.caption, image: image)
            full.add(result)
            if !result.correct && failures.count < 10 { failures.append("\(index) \"\(scene.caption)\": found \(result.detected)") }
            if index < 1000 {
                let result = try CaptionCheck.evaluate(caption: scene.caption, image: try image.boxDownsampled(factor: 4))
                low.add(result)
                if !result.correct && failures.count < 10 { failures.append("32x32 \(index) \"\(scene.caption)\": found \(result.detected), truth \(scene.objects)") }
            }
        }
        print("ShapesParser on 2000 ground-truth renders at 128x128: \(full)")
        print("ShapesParser on 1000 ground-truth renders at 32x32: \(low)")
        for f in failures { print("  miss: \(f)") }
        XCTAssertEqual(full.images, 2000)
        XCTAssertGreaterThanOrEqual(full.wholeCaptionAccuracy, 0.99)
        XCTAssertGreaterThanOrEqual(full.colorAccuracy, 0.99)
        XCTAssertGreaterThanOrEqual(full.shapeAccuracy, 0.99)
        XCTAssertGreaterThanOrEqual(full.countAccuracy, 0.99)
        XCTAssertGreaterThanOrEqual(full.relationAccuracy, 0.99)
        XCTAssertGreaterThanOrEqual(full.sizeAccuracy, 0.99)
        XCTAssertGreaterThanOrEqual(low.wholeCaptionAccuracy, 0.95)
    }

    func testToleratesNoiseAndBlur() throws {
        let world = ShapesWorld(seed: 99)
        var summary = CaptionCheckSummary()
        for index in 0..<200 {
            let scene = world.scene(at: index)
            let image = degraded(ShapesWorld.render(scene), amplitude: 12, seed: UInt64(index))
            summary.add(try CaptionCheck.evaluate(caption: scene.caption, image: image))
        }
        print("ShapesParser on 200 blurred, noisy renders: \(summary)")
        XCTAssertGreaterThanOrEqual(summary.wholeCaptionAccuracy, 0.97)

        // At 32 × 32 a 3 × 3 blur spans 12 canvas px: the blurred templates keep the shapes recognisable.
        var low = CaptionCheckSummary()
        for index in 0..<300 {
            let scene = world.scene(at: index)
            let image = degraded(try ShapesWorld.render(scene, size: 32), amplitude: 10, seed: UInt64(index))
            low.add(try CaptionCheck.evaluate(caption: scene.caption, image: image))
        }
        print("ShapesParser on 300 blurred, noisy 32x32 renders: \(low)")
        XCTAssertGreaterThanOrEqual(low.wholeCaptionAccuracy, 0.95)
    }

    /// The judge must reject wrong captions: swapped colours (attribute binding), a reversed relation, a missing
    /// object, a wrong size.
    func testWrongCaptionsAreJudgedWrong() throws {
        let world = ShapesWorld(seed: 4321)
        var swapped = 0, swappedWrong = 0, reversed = 0, reversedWrong = 0, dropped = 0, droppedWrong = 0
        var resized = 0, resizedWrong = 0
        for index in 0..<600 {
            let scene = world.scene(at: index)
            let image = ShapesWorld.render(scene)
            let detected = ShapesParser().parse(image)
            func judge(_ caption: String) throws -> CaptionCheckResult {
                CaptionCheck.evaluate(expected: try CaptionParser.parse(caption), detected: detected)
            }
            if scene.objects.count == 2 {
                let a = scene.objects[0], b = scene.objects[1]
                // Exchanging colours changes the caption's meaning only when both colours and shapes differ.
                if a.color != b.color && a.shape != b.shape {
                    swapped += 1
                    let result = try judge(swappingColours(scene))
                    if !result.correct { swappedWrong += 1 }
                    XCTAssertTrue(result.colorsCorrect && result.shapesCorrect, "colours and shapes are all present")
                    XCTAssertFalse(result.bindingCorrect, swappingColours(scene))
                }
                if let relation = scene.relation {
                    reversed += 1
                    let opposite: SpatialRelation = [.leftOf: .rightOf, .rightOf: .leftOf, .above: .below, .below: .above][relation]!
                    let result = try judge(Scene(objects: scene.objects, relation: opposite, mentionsSize: false).caption)
                    if !result.correct { reversedWrong += 1 }
                    XCTAssertEqual(result.relationCorrect, false)
                }
                dropped += 1
                if !(try judge(Scene(objects: [a], relation: nil, mentionsSize: false).caption)).correct { droppedWrong += 1 }
            } else if scene.mentionsSize {
                resized += 1
                var o = scene.objects[0]
                o.sizeClass = o.sizeClass == .small ? .large : .small
                let result = try judge(Scene(objects: [o], relation: nil, mentionsSize: true).caption)
                if !result.correct { resizedWrong += 1 }
                XCTAssertEqual(result.sizeCorrect, false)
            }
        }
        print("wrong captions judged wrong: swapped colours \(swappedWrong)/\(swapped), reversed relation \(reversedWrong)/\(reversed), "
              + "missing object \(droppedWrong)/\(dropped), wrong size \(resizedWrong)/\(resized)")
        XCTAssertGreaterThan(swapped, 50)
        XCTAssertGreaterThan(reversed, 100)
        XCTAssertGreaterThan(resized, 50)
        XCTAssertEqual(swappedWrong, swapped)
        XCTAssertEqual(reversedWrong, reversed)
        XCTAssertEqual(droppedWrong, dropped)
        XCTAssertEqual(resizedWrong, resized)
    }

    func testCheckScoresEachAspect() {
        func object(_ color: ShapeColor, _ shape: ShapeKind, _ cx: Double, _ cy: Double, size: Double = 26) -> DetectedObject {
            DetectedObject(color: color, shape: shape, cx: cx, cy: cy, centroidX: cx, centroidY: cy, size: size, area: 0,
                           minX: 0, minY: 0, maxX: 0, maxY: 0, fitError: 0)
        }
        let caption = ParsedCaption(objects: [ExpectedObject(color: .red, shape: .circle), ExpectedObject(color: .blue, shape: .cross)],
                                    relation: .above)
        let right = CaptionCheck.evaluate(expected: caption, detected: [object(.blue, .cross, 60, 90), object(.red, .circle, 64, 30)])
        XCTAssertTrue(right.correct)
        XCTAssertEqual(right.relationCorrect, true)

        // Red circle below: every object is right, the relation is not.
        let below = CaptionCheck.evaluate(expected: caption, detected: [object(.blue, .cross, 60, 30), object(.red, .circle, 64, 90)])
        XCTAssertTrue(below.bindingCorrect && below.countCorrect)
        XCTAssertEqual(below.relationCorrect, false)
        XCTAssertFalse(below.correct)

        // Diagonal placement: further across than along, so not "above" even though it is higher.
        let diagonal = CaptionCheck.evaluate(expected: caption, detected: [object(.red, .circle, 20, 40), object(.blue, .cross, 90, 60)])
        XCTAssertEqual(diagonal.relationCorrect, false)

        // An extra object breaks the count but not colours, shapes or binding.
        let extra = CaptionCheck.evaluate(expected: caption, detected: [object(.red, .circle, 64, 30), object(.blue, .cross, 60, 90),
                                                                          object(.green, .square, 100, 100)])
        XCTAssertTrue(extra.colorsCorrect && extra.shapesCorrect && extra.bindingCorrect)
        XCTAssertFalse(extra.countCorrect)
        XCTAssertFalse(extra.correct)

        // A red cross and a blue circle: colours and shapes present, binding wrong.
        let unbound = CaptionCheck.evaluate(expected: caption, detected: [object(.red, .cross, 64, 30), object(.blue, .circle, 60, 90)])
        XCTAssertTrue(unbound.colorsCorrect && unbound.shapesCorrect && unbound.countCorrect)
        XCTAssertFalse(unbound.bindingCorrect)
        XCTAssertFalse(unbound.correct)
        XCTAssertEqual(unbound.relationCorrect, false)

        var summary = CaptionCheckSummary()
        for r in [right, below, extra, unbound] { summary.add(r) }
        XCTAssertEqual(summary.wholeCaptionAccuracy, 0.25)
        XCTAssertEqual(summary.countAccuracy, 0.75)
        XCTAssertEqual(summary.bindingAccuracy, 0.75)
        XCTAssertEqual(summary.relationAccuracy, 0.5)  // right and extra
        XCTAssertEqual(summary.relationBound, 3)  // all but the unbound one
        XCTAssertEqual(summary.relationAccuracyWhenBound, 2.0 / 3.0, accuracy: 1e-12)
        XCTAssertTrue(summary.sizeAccuracy.isNaN)
    }

    func testDiversityMeasuresSpread() throws {
        let base = SceneObject(shape: .square, color: .green, sizeClass: .small, s: 26, cx: 40, cy: 64)
        let same = ShapesWorld.render(Scene(objects: [base], relation: nil, mentionsSize: false))
        let identical = try ShapesDiversity.measure([same, same, same])
        XCTAssertEqual(identical.objects, 3)
        XCTAssertEqual(identical.positionSpread, 0, accuracy: 1e-9)
        XCTAssertEqual(identical.sizeSpread, 0, accuracy: 1e-9)

        // Centres at x = 40 and 80 (spread 20 px around 60); sizes 26 and 46 (spread 10 px).
        var moved = base
        moved.cx = 80; moved.s = 46; moved.sizeClass = .large
        let other = ShapesWorld.render(Scene(objects: [moved], relation: nil, mentionsSize: false))
        let spread = try ShapesDiversity.measure([same, other], caption: "a green square")
        XCTAssertEqual(spread.objects, 2)
        XCTAssertEqual(spread.positionSpread, 20, accuracy: 0.3)
        XCTAssertEqual(spread.sizeSpread, 10, accuracy: 0.5)
        // Objects the caption does not name are left out.
        XCTAssertEqual(try ShapesDiversity.measure([same, other], caption: "a red circle").objects, 0)
    }
}
