import Foundation
import XCTest
import UnCLIPImage
@testable import UnCLIPShapesWorld

/// FNV-1a (64-bit) of a byte array: a stable pixel checksum to pin renders.
private func fnv1a(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}

private func temporaryDirectory(_ name: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("shapesworld-\(name)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

final class ShapesWorldTests: XCTestCase {
    func testScenesAreAPureFunctionOfSeedAndIndex() throws {
        let world = ShapesWorld(seed: 0)
        for index in [0, 1, 17, 123_456] {
            XCTAssertEqual(world.scene(at: index), ShapesWorld(seed: 0).scene(at: index))
            XCTAssertEqual(ShapesWorld.render(world.scene(at: index)), ShapesWorld.render(world.scene(at: index)))
        }
        let other = ShapesWorld(seed: 1)
        XCTAssertNotEqual((0..<20).map { world.scene(at: $0).caption }, (0..<20).map { other.scene(at: $0).caption })

        // Pinned: a change to the sampler, the PRNG or the renderer changes the data set and must be deliberate.
        XCTAssertEqual((0..<4).map { world.scene(at: $0).caption }, PinnedShapes.captions)
        let first = world.scene(at: 0)
        XCTAssertEqual(first.objects.map { [$0.s, $0.cx, $0.cy] }, PinnedShapes.scene0Geometry)
        let checksum = fnv1a((0..<4).flatMap { ShapesWorld.render(world.scene(at: $0)).pixels })
        XCTAssertEqual(checksum, PinnedShapes.pixelChecksum)
    }

    func testSceneConstraintsHoldOverManyScenes() throws {
        let world = ShapesWorld(seed: 2024)
        let colours = ShapeColor.allCases.map(\.name).joined(separator: "|")
        let shapes = ShapeKind.allCases.map(\.name).joined(separator: "|")
        let object = "an? (?:(?:small|large) )?(?:\(colours)) (?:\(shapes))"
        let grammar = try NSRegularExpression(
            pattern: "^\(object)(?: (?:and|to the left of|to the right of|above|below) \(object))?$")
        var single = 0, withSize = 0, pairs = 0, related = 0
        var seenColours = Set<ShapeColor>(), seenShapes = Set<ShapeKind>(), seenRelations = Set<SpatialRelation>()
        let n = 5000
        for index in 0..<n {
            let scene = world.scene(at: index)
            let caption = scene.caption
            XCTAssertEqual(grammar.numberOfMatches(in: caption, range: NSRange(caption.startIndex..., in: caption)), 1, caption)
            // The article agrees with the next word.
            let words = caption.split(separator: " ")
            for (i, w) in words.enumerated() where w == "a" || w == "an" {
                XCTAssertEqual(String(w), "aeiou".contains(words[i + 1].first!) ? "an" : "a", caption)
            }
            for o in scene.objects {
                XCTAssertTrue(o.sizeClass.range.contains(o.s), "\(caption): s = \(o.s)")
                for v in [o.s, o.cx, o.cy] { XCTAssertEqual((v * 10).rounded(), v * 10, accuracy: 1e-9) }
                XCTAssertGreaterThanOrEqual(min(o.cx, o.cy) - o.s / 2, 4 - 1e-9, caption)
                XCTAssertLessThanOrEqual(max(o.cx, o.cy) + o.s / 2, 124 + 1e-9, caption)
                seenColours.insert(o.color); seenShapes.insert(o.shape)
            }
            if scene.objects.count == 1 {
                single += 1
                if scene.mentionsSize {
                    withSize += 1
                    XCTAssertTrue(caption.contains(scene.objects[0].sizeClass.name), caption)
                }
                XCTAssertNil(scene.relation)
                continue
            }
            XCTAssertEqual(scene.objects.count, 2)
            pairs += 1
            let a = scene.objects[0], b = scene.objects[1]
            XCTAssertTrue(a.color != b.color || a.shape != b.shape, caption)
            let gapX = abs(a.cx - b.cx) - (a.s + b.s) / 2, gapY = abs(a.cy - b.cy) - (a.s + b.s) / 2
            XCTAssertGreaterThanOrEqual(max(gapX, gapY), 6 - 1e-9, caption)
            if let relation = scene.relation {
                related += 1
                seenRelations.insert(relation)
                XCTAssertTrue(caption.contains(" \(relation.phrase) "), caption)
                XCTAssertTrue(relation.holds(a: (a.cx, a.cy), b: (b.cx, b.cy), margin: 24), caption)
            } else {
                XCTAssertTrue(caption.contains(" and "), caption)
            }
        }
        // The spec's proportions: 40 % single objects, half of them with a size word, 75 % of pairs related.
        XCTAssertEqual(Double(single) / Double(n), 0.40, accuracy: 0.025)
        XCTAssertEqual(Double(withSize) / Double(single), 0.5, accuracy: 0.04)
        XCTAssertEqual(Double(related) / Double(pairs), 0.75, accuracy: 0.03)
        XCTAssertEqual(seenColours.count, 6)
        XCTAssertEqual(seenShapes.count, 4)
        XCTAssertEqual(seenRelations.count, 4)
    }

    func testCaptionsUseTheRightArticle() {
        let orange = SceneObject(shape: .circle, color: .orange, sizeClass: .small, s: 25, cx: 30, cy: 30)
        let red = SceneObject(shape: .cross, color: .red, sizeClass: .large, s: 45, cx: 90, cy: 30)
        XCTAssertEqual(Scene(objects: [orange], relation: nil, mentionsSize: false).caption, "an orange circle")
        XCTAssertEqual(Scene(objects: [orange], relation: nil, mentionsSize: true).caption, "a small orange circle")
        XCTAssertEqual(Scene(objects: [red, orange], relation: .rightOf, mentionsSize: false).caption,
                       "a red cross to the right of an orange circle")
        XCTAssertEqual(Scene(objects: [orange, red], relation: nil, mentionsSize: false).caption,
                       "an orange circle and a red cross")
    }

    func testRenderIsAntialiasedFillOverWhite() {
        // A large square at a half-pixel offset, a circle and a triangle: every pixel is white, the fill, or a
        // blend of the two by a multiple of 1/16; the covered area matches the geometry.
        let objects = [
            SceneObject(shape: .square, color: .blue, sizeClass: .large, s: 40.5, cx: 30.25, cy: 30.25),
            SceneObject(shape: .circle, color: .red, sizeClass: .large, s: 44, cx: 90, cy: 35),
            SceneObject(shape: .triangle, color: .green, sizeClass: .large, s: 50, cx: 40, cy: 95),
            SceneObject(shape: .cross, color: .purple, sizeClass: .large, s: 45, cx: 95, cy: 95),
        ]
        let image = ShapesWorld.render(Scene(objects: objects, relation: nil, mentionsSize: false))
        XCTAssertEqual([image.width, image.height], [128, 128])
        XCTAssertTrue(image[x: 0, y: 0] == (255, 255, 255))
        for o in objects {
            let fill = o.color.rgb
            XCTAssertTrue(image[x: Int(o.cx), y: Int(o.cy)] == (fill.r, fill.g, fill.b), "\(o.shape) centre")
            var covered = 0.0
            let h = Int(o.s / 2) + 2
            for y in (Int(o.cy) - h)...(Int(o.cy) + h) {
                for x in (Int(o.cx) - h)...(Int(o.cx) + h) {
                    let (r, g, b) = image[x: x, y: y]
                    // Coverage k/16 from the red channel, then all channels must agree with it.
                    let k = (0...16).first { (255 * (16 - $0) + Int(fill.r) * $0 + 8) / 16 == Int(r) }
                    guard let k else { XCTFail("\(o.shape): pixel (\(x), \(y)) = \(r) is not a blend of \(fill)"); continue }
                    XCTAssertEqual(Int(g), (255 * (16 - k) + Int(fill.g) * k + 8) / 16)
                    XCTAssertEqual(Int(b), (255 * (16 - k) + Int(fill.b) * k + 8) / 16)
                    covered += Double(k) / 16
                }
            }
            XCTAssertEqual(covered, o.shape.area(size: o.s), accuracy: 0.01 * o.shape.area(size: o.s), "\(o.shape) area")
        }
        // The triangle points up: its apex row is narrow, its base row wide.
        let green = ShapeColor.green.rgb
        func greenPixels(row: Int) -> Int { (0..<128).filter { image[x: $0, y: row] == (green.r, green.g, green.b) }.count }
        XCTAssertLessThan(greenPixels(row: 72), 5)
        XCTAssertGreaterThan(greenPixels(row: 118), 45)
    }

    func testBoxDownsampleAveragesBlocks() throws {
        // 8 × 4 image, factor 4 → 2 × 1: each output channel is the rounded mean of its 16 inputs.
        var pixels = [UInt8](repeating: 0, count: 8 * 4 * 3)
        for y in 0..<4 { for x in 0..<8 { for c in 0..<3 { pixels[(y * 8 + x) * 3 + c] = UInt8((x * 7 + y * 13 + c * 50) % 256) } } }
        let image = RGBImage(width: 8, height: 4, pixels: pixels)
        let small = try image.boxDownsampled(factor: 4)
        XCTAssertEqual([small.width, small.height], [2, 1])
        for ox in 0..<2 {
            for c in 0..<3 {
                var sum = 0
                for y in 0..<4 { for x in (ox * 4)..<(ox * 4 + 4) { sum += Int(pixels[(y * 8 + x) * 3 + c]) } }
                XCTAssertEqual(Int(small.pixels[ox * 3 + c]), (sum + 8) / 16)
            }
        }
        // A half-white, half-black block rounds half up: (8 · 255 + 8) / 16 = 128.
        var halves = [UInt8](repeating: 0, count: 4 * 4 * 3)
        for i in 0..<(8 * 3) { halves[i] = 255 }
        XCTAssertEqual(try RGBImage(width: 4, height: 4, pixels: halves).boxDownsampled(factor: 4).pixels, [128, 128, 128])
        XCTAssertThrowsError(try image.boxDownsampled(factor: 3))
        XCTAssertEqual(try image.boxDownsampled(factor: 1), image)

        let scene = ShapesWorld(seed: 5).scene(at: 3)
        let low = try ShapesWorld.render(scene, size: 32)
        XCTAssertEqual(low, try ShapesWorld.render(scene).boxDownsampled(factor: 4))
        XCTAssertEqual(try ShapesWorld.render(scene, size: 128), ShapesWorld.render(scene))
        XCTAssertThrowsError(try ShapesWorld.render(scene, size: 48))
    }

    func testRenderingIsFast() {
        let world = ShapesWorld(seed: 9)
        let start = Date()
        var checksum = 0
        for index in 0..<2000 { checksum &+= Int(ShapesWorld.render(world.scene(at: index)).pixels[8256]) }
        let seconds = Date().timeIntervalSince(start)
        print("ShapesWorld: sampled and rendered 2000 scenes in \(String(format: "%.2f", seconds)) s (checksum \(checksum))")
        XCTAssertLessThan(seconds, 20)
    }

    func testExportWritesImagesCaptionsAndSceneList() throws {
        let dir = try temporaryDirectory("export")
        defer { try? FileManager.default.removeItem(at: dir) }
        var reported: [Int] = []
        try exportShapesWorld(count: 70, seed: 3, to: dir) { done, total in
            XCTAssertEqual(total, 70)
            reported.append(done)
        }
        XCTAssertEqual(reported.sorted().last, 70)
        let world = ShapesWorld(seed: 3)
        let lines = try String(contentsOf: dir.appendingPathComponent("scenes.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        XCTAssertEqual(lines.count, 70)
        for index in [0, 42, 69] {
            let scene = world.scene(at: index)
            let stem = String(format: "%06d", index)
            XCTAssertEqual(try String(contentsOf: dir.appendingPathComponent(stem + ".txt"), encoding: .utf8), scene.caption + "\n")
            XCTAssertEqual(try RGBImage(contentsOf: dir.appendingPathComponent(stem + ".png")), ShapesWorld.render(scene))
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[index].utf8)) as? [String: Any])
            XCTAssertEqual(json["file"] as? String, stem + ".png")
            XCTAssertEqual(json["caption"] as? String, scene.caption)
            let objects = try XCTUnwrap(json["objects"] as? [[String: Any]])
            XCTAssertEqual(objects.count, scene.objects.count)
            for (o, j) in zip(scene.objects, objects) {
                XCTAssertEqual(j["shape"] as? String, o.shape.name)
                XCTAssertEqual(j["color"] as? String, o.color.name)
                XCTAssertEqual(j["size"] as? String, o.sizeClass.name)
                XCTAssertEqual(j["s"] as? Double, o.s)
                XCTAssertEqual(j["cx"] as? Double, o.cx)
                XCTAssertEqual(j["cy"] as? Double, o.cy)
            }
        }
        XCTAssertTrue(lines[0].hasPrefix("{\"file\": \"000000.png\", \"caption\": \""))
        XCTAssertThrowsError(try exportShapesWorld(count: 0, seed: 3, to: dir))
    }
}

/// Values pinned from the first run of the sampler and renderer (seed 0).
private enum PinnedShapes {
    static let captions = ["a blue cross", "a red cross to the left of a yellow cross", "a red triangle",
                           "a blue circle below a purple cross"]
    static let scene0Geometry: [[Double]] = [[51.7, 77.2, 32.4]]
    static let pixelChecksum: UInt64 = 11_300_568_467_761_330_416
}
