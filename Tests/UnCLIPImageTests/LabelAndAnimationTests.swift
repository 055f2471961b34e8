import Foundation
import XCTest
@testable import UnCLIPImage

/// A deterministic test picture: every pixel a different mix of the three channels.
private func pattern(width: Int, height: Int, seed: Int) -> RGBImage {
    var state = UInt64(truncatingIfNeeded: seed) &* 0x9E37_79B9_7F4A_7C15 | 1
    var pixels = [UInt8](repeating: 0, count: width * height * 3)
    for i in pixels.indices {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17  // xorshift64
        // Smooth gradients with a little noise, so the PNG filters have something to predict.
        let p = i / 3, x = p % width, y = p / width
        pixels[i] = UInt8(truncatingIfNeeded: (x * 7 + y * 3) * (i % 3 + 1) + Int(state % 16))
    }
    return RGBImage(width: width, height: height, pixels: pixels)
}

/// Pixels of `a` and `b` (the same size) that differ, as (x, y).
private func changedPixels(_ a: RGBImage, _ b: RGBImage) -> [(Int, Int)] {
    var out: [(Int, Int)] = []
    for y in 0..<a.height {
        for x in 0..<a.width where a[x: x, y: y] != b[x: x, y: y] { out.append((x, y)) }
    }
    return out
}

final class BitmapFontTests: XCTestCase {
    let font = BitmapFont.standard

    func testCoversPrintableASCIIAndTheExtras() {
        XCTAssertEqual(font.cellWidth, 7)
        XCTAssertEqual(font.cellHeight, 13)
        var seen: [[UInt8]: Character] = [:]
        for scalar in 32...126 {
            let character = Character(UnicodeScalar(UInt8(scalar)))
            XCTAssertTrue(font.contains(character), "missing \(character)")
            let glyph = font.coverage(of: character)
            XCTAssertEqual(glyph.count, 7 * 13)
            if character == " " {
                XCTAssertTrue(glyph.allSatisfy { $0 == 0 }, "space has ink")
            } else {
                XCTAssertTrue(glyph.contains { $0 > 128 }, "\(character) has no solid ink")
                // No two glyphs alike: the table was not shuffled or truncated when generated.
                XCTAssertNil(seen[glyph], "\(character) looks like \(seen[glyph].map(String.init) ?? "")")
                seen[glyph] = character
            }
        }
        for extra: Character in ["θ", "η", "…"] { XCTAssertTrue(font.contains(extra), "missing \(extra)") }
        XCTAssertEqual(font.characters.count, 95 + 3)
        // The body of capitals sits above the baseline row; descenders go below it.
        let baselineRow = font.baseline * font.cellWidth
        XCTAssertTrue(font.coverage(of: "H")[baselineRow..<(baselineRow + 7)].allSatisfy { $0 == 0 })
        XCTAssertTrue(font.coverage(of: "g")[baselineRow..<(baselineRow + 7)].contains { $0 > 0 })
    }

    func testUnknownCharactersDrawAsQuestionMark() {
        XCTAssertFalse(font.contains("€"))
        XCTAssertEqual(font.coverage(of: "€"), font.coverage(of: "?"))
        var a = RGBImage(width: 30, height: 15, red: 255, green: 255, blue: 255), b = a
        a.draw(text: "a€é\u{301}", x: 1, y: 1)
        b.draw(text: "a??", x: 1, y: 1)
        XCTAssertEqual(a, b)
    }

    func testMeasures() {
        XCTAssertEqual(font.width(of: ""), 0)
        XCTAssertEqual(font.width(of: "abc"), 21)
        XCTAssertEqual(font.width(of: "abc", scale: 3), 63)
        XCTAssertEqual(font.width(of: "θ=1"), 21)
        XCTAssertEqual(font.width(of: "ab\nlonger\nc"), 6 * 7)
        XCTAssertEqual(font.height(of: "abc"), 13)
        XCTAssertEqual(font.height(of: "ab\nc", scale: 2), 52)
    }

    func testTruncatesWithEllipsis() {
        XCTAssertEqual(font.truncated("a red circle", toWidth: 12 * 7), "a red circle")
        XCTAssertEqual(font.truncated("a red circle", toWidth: 8 * 7 + 6), "a red c…")
        XCTAssertEqual(font.truncated("a red circle", toWidth: 7 * 7), "a red…")  // no space before the "…"
        XCTAssertEqual(font.truncated("a red circle", toWidth: 7), "…")
        XCTAssertEqual(font.truncated("a red circle", toWidth: 6), "")
        XCTAssertEqual(font.truncated("two\nlines", toWidth: 100), "two lines")
        XCTAssertEqual(font.truncated("abcdef", toWidth: 4 * 14, scale: 2), "abc…")
    }

    func testWrapsAtSpacesAndBreaksLongWords() {
        XCTAssertEqual(font.wrapped("a red circle above a blue square", toWidth: 12 * 7),
                       ["a red circle", "above a blue", "square"])
        XCTAssertEqual(font.wrapped("abcdefghij", toWidth: 4 * 7), ["abcd", "efgh", "ij"])
        XCTAssertEqual(font.wrapped("one\n\ntwo", toWidth: 100), ["one", "", "two"])
        XCTAssertEqual(font.wrapped("ab", toWidth: 3), ["a", "b"])  // at least one character a line
        for line in font.wrapped("the quick brown fox jumps over the lazy dog", toWidth: 50) {
            XCTAssertLessThanOrEqual(font.width(of: line), 50, line)
        }
    }

    func testDrawnTextChangesPixelsOnlyInsideItsBox() {
        let background = pattern(width: 80, height: 50, seed: 1)
        for (text, x, y, scale) in [("Hi θ!", 5, 7, 1), ("Wq_|", 3, 2, 2), ("ab\nη…", 40, 10, 1)] {
            var image = background
            image.draw(text: text, x: x, y: y, color: (255, 0, 0), scale: scale)
            let changed = changedPixels(background, image)
            XCTAssertGreaterThan(changed.count, 20, text)
            let w = font.width(of: text, scale: scale), h = font.height(of: text, scale: scale)
            for (px, py) in changed {
                XCTAssertTrue((x..<(x + w)).contains(px) && (y..<(y + h)).contains(py), "\(text): (\(px), \(py)) outside")
            }
        }
    }

    func testFullCoverageGivesTheColourAndScaleMakesBlocks() {
        var image = RGBImage(width: 20, height: 30, red: 255, green: 255, blue: 255)
        image.draw(text: "|", x: 0, y: 0, color: (10, 20, 30), scale: 2)
        let glyph = font.coverage(of: "|")
        for gy in 0..<13 {
            for gx in 0..<7 {
                let value = glyph[gy * 7 + gx]
                let a: Int = Int(value)
                let blended: Int = (255 * (255 - a) + 10 * a + 127) / 255
                let expected = UInt8(blended)
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    XCTAssertEqual(image[x: 2 * gx + dx, y: 2 * gy + dy].0, expected)
                }
                if value == 255 { XCTAssertTrue(image[x: 2 * gx, y: 2 * gy] == (10, 20, 30)) }
            }
        }
    }

    func testTextOffTheEdgesIsClipped() {
        let background = RGBImage(width: 12, height: 9, red: 200, green: 200, blue: 200)
        var image = background
        image.draw(text: "MMMM", x: -10, y: -4, scale: 1)
        image.draw(text: "MMMM", x: 8, y: 5, scale: 3)
        image.draw(text: "far away", x: 1000, y: -1000)
        XCTAssertFalse(changedPixels(background, image).isEmpty)
        XCTAssertEqual(image.pixels.count, 12 * 9 * 3)
    }
}

final class LabelledGridTests: XCTestCase {
    let font = BitmapFont.standard

    func testSizeArithmetic() {
        let images = [pattern(width: 20, height: 10, seed: 1), pattern(width: 20, height: 10, seed: 2),
                      pattern(width: 16, height: 12, seed: 3), pattern(width: 20, height: 10, seed: 4)]
        let labelH = RGBImage.labelGap + font.cellHeight  // 2 + 13
        // 3 columns, 2 rows; cells 20 × (12 + label).
        let labelled = RGBImage.labelledGrid(images, labels: ["a", "", "c", "d"], columns: 3, padding: 4)
        XCTAssertEqual(labelled.width, 3 * 20 + 4 * 4)
        XCTAssertEqual(labelled.height, 2 * (12 + labelH) + 3 * 4)
        // A title adds padding + one line on top.
        let titled = RGBImage.labelledGrid(images, labels: ["a", "", "c", "d"], columns: 3, padding: 4, title: "T")
        XCTAssertEqual(titled.width, labelled.width)
        XCTAssertEqual(titled.height, labelled.height + 4 + font.cellHeight)
        // Fewer images than columns: one row as wide as the images; no padding.
        let one = RGBImage.labelledGrid(Array(images.prefix(2)), labels: ["x", "y"], columns: 5, padding: 0)
        XCTAssertEqual(one.width, 40)
        XCTAssertEqual(one.height, 10 + labelH)
        // All labels empty: no label strip, the same picture as grid(_:columns:padding:background:) for
        // equal-size images.
        let same = Array(images.prefix(2)) + [images[3]]
        XCTAssertEqual(RGBImage.labelledGrid(same, labels: ["", "", ""], columns: 2, padding: 3),
                       RGBImage.grid(same, columns: 2, padding: 3))
    }

    func testPicturesLabelsAndTitleLandInTheirPlaces() {
        let images = [pattern(width: 30, height: 20, seed: 5), pattern(width: 30, height: 20, seed: 6),
                      pattern(width: 24, height: 20, seed: 7)]
        let padding = 4, titleH = padding + font.cellHeight, cellH = 20 + RGBImage.labelGap + font.cellHeight
        let out = RGBImage.labelledGrid(images, labels: ["red", "", "a very long label indeed"], columns: 2,
                                        padding: padding, title: "θ sweep", background: 255)
        XCTAssertEqual(out.width, 2 * 30 + 3 * padding)
        XCTAssertEqual(out.height, titleH + 2 * cellH + 3 * padding)
        // Each picture, pixel for pixel, with the narrower one centred across its cell.
        for (k, image) in images.enumerated() {
            let left = padding + (k % 2) * (30 + padding) + (30 - image.width) / 2
            let top = titleH + padding + (k / 2) * (cellH + padding)
            for y in 0..<image.height {
                for x in 0..<image.width { XCTAssertTrue(out[x: left + x, y: top + y] == image[x: x, y: y]) }
            }
        }
        // Label strips: the label "red" centred (ink within its box), the empty label blank.
        func inkColumns(left: Int, top: Int, width: Int, height: Int) -> [Int] {
            var columns: [Int] = []
            for x in left..<(left + width) {
                for y in top..<(top + height) where out[x: x, y: y] != (255, 255, 255) { columns.append(x); break }
            }
            return columns
        }
        let stripTop = titleH + padding + 20
        let red = inkColumns(left: padding, top: stripTop, width: 30, height: cellH - 20)
        let redLeft = padding + (30 - 21) / 2
        XCTAssertFalse(red.isEmpty)
        XCTAssertTrue(red.allSatisfy { (redLeft..<(redLeft + 21)).contains($0) }, "\(red)")
        XCTAssertTrue(inkColumns(left: 2 * padding + 30, top: stripTop, width: 30, height: cellH - 20).isEmpty)
        // The long label was cut to the cell width (four characters of 7 pixels fit 30), so it stays in its cell.
        let long = inkColumns(left: 0, top: stripTop + cellH + padding, width: out.width, height: cellH - 20)
        XCTAssertFalse(long.isEmpty)
        XCTAssertTrue(long.allSatisfy { (padding..<(padding + 30)).contains($0) }, "\(long)")
        // The title is inside the top strip, centred.
        let title = inkColumns(left: 0, top: 0, width: out.width, height: titleH)
        let titleW = font.width(of: "θ sweep")
        let titleLeft = (out.width - titleW) / 2
        XCTAssertFalse(title.isEmpty)
        XCTAssertTrue(title.allSatisfy { (titleLeft..<(titleLeft + titleW)).contains($0) }, "\(title)")
    }

    func testDarkBackgroundGetsWhiteText() {
        let images = [RGBImage(width: 30, height: 10, red: 0, green: 0, blue: 0)]
        let out = RGBImage.labelledGrid(images, labels: ["HH"], columns: 1, padding: 2, background: 0)
        XCTAssertTrue(out.pixels.contains(255))
    }

    func testCaptionAddsAWrappedStripAndKeepsThePicture() {
        let image = pattern(width: 60, height: 30, seed: 9)
        XCTAssertEqual(image.withCaption(""), image)
        // 56 usable pixels: 8 characters a line → "a red", "circle", "above a", "blue", "square".
        let captioned = image.withCaption("a red circle above a blue square")
        XCTAssertEqual(captioned.width, 60)
        XCTAssertEqual(captioned.height, 30 + 5 * font.cellHeight + 2 * RGBImage.captionMargin)
        XCTAssertEqual(Array(captioned.pixels.prefix(image.pixels.count)), image.pixels)
        XCTAssertTrue(captioned.pixels[image.pixels.count...].contains { $0 < 128 })
        XCTAssertEqual(image.withCaption("ok").height, 30 + font.cellHeight + 4)
    }

    func testLabelledSheetForTheEye() throws {
        // Written for a person to look at (UNCLIP_KEEP_TEST_IMAGES=1 keeps it in the temporary directory).
        let images = (0..<6).map { pattern(width: 64, height: 48, seed: $0) }
        let labels = ["η = 0", "η = 0.5", "θ = 1.25", "", "seed 1234567890", "{[(ok)]} #@$%&*"]
        let sheet = RGBImage.labelledGrid(images, labels: labels, columns: 3, title: "labelledGrid: 6 images, 3 columns")
            .withCaption("a red circle above a blue square, The quick brown fox jumps over the lazy dog 0123456789")
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-labelled-grid.png")
        try sheet.writePNG(to: url)
        XCTAssertEqual(try RGBImage(contentsOf: url), sheet)
        if ProcessInfo.processInfo.environment["UNCLIP_KEEP_TEST_IMAGES"] == nil { try? FileManager.default.removeItem(at: url) }
    }
}

final class AnimatedPNGTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("apng-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    private struct Chunk { let type: String; let data: [UInt8] }

    private static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// CRC-32 (ISO 3309, as PNG uses), written out here so the test does not trust the writer's zlib.
    private static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    private static func u32(_ b: [UInt8], _ at: Int) -> Int {
        Int(b[at]) << 24 | Int(b[at + 1]) << 16 | Int(b[at + 2]) << 8 | Int(b[at + 3])
    }

    private static func bigEndian(_ v: Int) -> [UInt8] {
        [UInt8(truncatingIfNeeded: v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
    }

    /// The file's chunks, each CRC checked.
    private func chunks(_ bytes: [UInt8]) throws -> [Chunk] {
        XCTAssertEqual(Array(bytes.prefix(8)), Self.signature)
        var out: [Chunk] = [], at = 8
        while at < bytes.count {
            let length = Self.u32(bytes, at)
            let typeAndData = Array(bytes[(at + 4)..<(at + 8 + length)])
            let type = String(decoding: typeAndData.prefix(4), as: UTF8.self)
            XCTAssertEqual(UInt32(Self.u32(bytes, at + 8 + length)), Self.crc32(typeAndData), "CRC of \(type)")
            out.append(Chunk(type: type, data: Array(typeAndData.dropFirst(4))))
            at += 12 + length
        }
        XCTAssertEqual(at, bytes.count)
        return out
    }

    /// A plain PNG made of `header` and one IDAT holding `zlibData`: how each APNG frame is checked with the
    /// project's own PNG reader.
    private func standalonePNG(header: [UInt8], zlibData: [UInt8]) -> Data {
        var png = Self.signature
        for (type, data) in [("IHDR", header), ("IDAT", zlibData), ("IEND", [])] {
            let typeAndData = Array(type.utf8) + data
            png += Self.bigEndian(data.count) + typeAndData + Self.bigEndian(Int(Self.crc32(typeAndData)))
        }
        return Data(png)
    }

    func testFirstFrameIsThePNGAndEveryFrameDecodes() throws {
        // Smooth frames and noisy ones, with a width that is not a multiple of anything convenient.
        let frames = (0..<4).map { pattern(width: 23, height: 17, seed: 10 + $0) }
            + [RGBImage(width: 23, height: 17, red: 9, green: 200, blue: 77)]
        let url = scratch.appendingPathComponent("anim.png")
        try RGBImage.writeAnimatedPNG(frames, to: url, frameDelay: 0.1, loops: 3)

        // A plain PNG reader shows frame 0.
        XCTAssertEqual(try RGBImage(contentsOf: url), frames[0])

        let bytes = [UInt8](try Data(contentsOf: url))
        let list = try chunks(bytes)
        XCTAssertEqual(list.first?.type, "IHDR")
        XCTAssertEqual(list.last?.type, "IEND")
        let header = list[0].data
        XCTAssertEqual(Self.u32(header, 0), 23)
        XCTAssertEqual(Self.u32(header, 4), 17)
        XCTAssertEqual(Array(header[8...]), [8, 2, 0, 0, 0])

        // acTL before any image data, with the frame and loop counts.
        let acTL = try XCTUnwrap(list.firstIndex { $0.type == "acTL" })
        let firstIDAT = try XCTUnwrap(list.firstIndex { $0.type == "IDAT" })
        XCTAssertLessThan(acTL, firstIDAT)
        XCTAssertEqual(Self.u32(list[acTL].data, 0), frames.count)
        XCTAssertEqual(Self.u32(list[acTL].data, 4), 3)

        // fcTL / fdAT sequence numbers run 0, 1, 2, … in file order; an fcTL precedes each frame's data.
        var sequence: [Int] = []
        var frameData: [[UInt8]] = []
        var sawControl = false
        for chunk in list {
            switch chunk.type {
            case "fcTL":
                XCTAssertEqual(chunk.data.count, 26)
                sequence.append(Self.u32(chunk.data, 0))
                XCTAssertEqual(Self.u32(chunk.data, 4), 23)
                XCTAssertEqual(Self.u32(chunk.data, 8), 17)
                XCTAssertEqual(Self.u32(chunk.data, 12), 0)
                XCTAssertEqual(Self.u32(chunk.data, 16), 0)
                XCTAssertEqual(Array(chunk.data[20..<24]), [0, 1, 0, 10])  // 1/10 s
                XCTAssertEqual(Array(chunk.data[24..<26]), [0, 0])
                sawControl = true
            case "IDAT":
                XCTAssertTrue(sawControl && frameData.isEmpty, "IDAT holds frame 0, after its fcTL")
                frameData.append(chunk.data)
                sawControl = false
            case "fdAT":
                XCTAssertTrue(sawControl, "fdAT without an fcTL before it")
                sequence.append(Self.u32(chunk.data, 0))
                frameData.append(Array(chunk.data.dropFirst(4)))
                sawControl = false
            default: break
            }
        }
        XCTAssertEqual(sequence, Array(0..<(2 * frames.count - 1)))
        XCTAssertEqual(frameData.count, frames.count)
        XCTAssertEqual(list.filter { $0.type == "IDAT" }.count, 1)

        // Every frame's data is a valid PNG image stream holding that frame exactly.
        for (k, zlibData) in frameData.enumerated() {
            XCTAssertEqual(try RGBImage(data: standalonePNG(header: header, zlibData: zlibData), name: "frame \(k)"),
                           frames[k], "frame \(k)")
        }
    }

    func testSingleFrameAndInMemoryData() throws {
        let frame = pattern(width: 5, height: 3, seed: 2)
        let data = try RGBImage.animatedPNGData([frame], frameDelay: 1)
        XCTAssertEqual(try RGBImage(data: data), frame)
        let list = try chunks([UInt8](data))
        XCTAssertEqual(list.map(\.type), ["IHDR", "acTL", "fcTL", "IDAT", "IEND"])
        XCTAssertEqual(Self.u32(list[1].data, 4), 0)  // loops forever by default
    }

    func testDelayFractions() {
        XCTAssertTrue(RGBImage.delayFraction(seconds: 0) == (0, 1))
        XCTAssertTrue(RGBImage.delayFraction(seconds: 0.1) == (1, 10))
        XCTAssertTrue(RGBImage.delayFraction(seconds: 1.0 / 30) == (1, 30))
        XCTAssertTrue(RGBImage.delayFraction(seconds: 0.04) == (1, 25))
        XCTAssertTrue(RGBImage.delayFraction(seconds: 2.5) == (5, 2))
        XCTAssertTrue(RGBImage.delayFraction(seconds: 65535) == (65535, 1))
        let (n, d) = RGBImage.delayFraction(seconds: 0.123456)
        XCTAssertEqual(Double(n) / Double(d), 0.123456, accuracy: 1e-8)
    }

    func testRejectsBadInputWithoutWritingAFile() {
        let url = scratch.appendingPathComponent("bad.png")
        let a = pattern(width: 8, height: 8, seed: 1), b = pattern(width: 8, height: 9, seed: 2)
        func reason(_ body: () throws -> Void) -> String? {
            do { try body() } catch let ImageError.encodeFailed(file, reason) {
                XCTAssertEqual(file, url.path)
                return reason
            } catch { XCTFail("unexpected \(error)") }
            return nil
        }
        let mismatch = reason { try RGBImage.writeAnimatedPNG([a, a, b], to: url, frameDelay: 0.1) }
        XCTAssertEqual(mismatch, "frame 2 is 8x9 but frame 0 is 8x8; all frames must be the same size")
        XCTAssertNotNil(reason { try RGBImage.writeAnimatedPNG([], to: url, frameDelay: 0.1) })
        XCTAssertNotNil(reason { try RGBImage.writeAnimatedPNG([a], to: url, frameDelay: -1) })
        XCTAssertNotNil(reason { try RGBImage.writeAnimatedPNG([a], to: url, frameDelay: .nan) })
        XCTAssertNotNil(reason { try RGBImage.writeAnimatedPNG([a], to: url, frameDelay: 0.1, loops: -1) })
        XCTAssertNotNil(reason { try RGBImage.writeAnimatedPNG([RGBImage(width: 0, height: 0, pixels: [])], to: url, frameDelay: 0.1) })
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path), [])
        // A directory that does not exist is an error naming the file.
        let missing = scratch.appendingPathComponent("no/such/dir/anim.png")
        XCTAssertThrowsError(try RGBImage.writeAnimatedPNG([a], to: missing, frameDelay: 0.1)) { error in
            guard case ImageError.cannotCreate(let file, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(file, missing.path)
        }
    }

    func testFiltersRoundTripOnEdgeCases() throws {
        // One-pixel-wide and one-row frames, extremes of every channel.
        for (w, h) in [(1, 1), (1, 9), (9, 1), (3, 3)] {
            var frames = [RGBImage(width: w, height: h, red: 255, green: 0, blue: 255)]
            frames.append(pattern(width: w, height: h, seed: w * 10 + h))
            let data = try RGBImage.animatedPNGData(frames, frameDelay: 0.05)
            XCTAssertEqual(try RGBImage(data: data), frames[0], "\(w)x\(h)")
        }
    }
}

/// The project's own line charts (the paper's Figure 10 is drawn with them).
final class LineChartTests: XCTestCase {
    func testTicksAreRoundAndCoverTheRange() {
        XCTAssertEqual(LineChart.ticks(from: 0, to: 10, count: 5), [0, 2, 4, 6, 8, 10])
        XCTAssertEqual(LineChart.ticks(from: 0.13, to: 0.87, count: 4), [0, 0.2, 0.4, 0.6, 0.8, 1.0])
        XCTAssertEqual(LineChart.ticks(from: 41, to: 97, count: 5), [40, 60, 80, 100])
        XCTAssertEqual(LineChart.ticks(from: 2.31, to: 2.47, count: 4), [2.3, 2.35, 2.4, 2.45, 2.5])
        XCTAssertEqual(LineChart.ticks(from: 3, to: 3), [3])
        XCTAssertEqual(LineChart.ticks(from: .nan, to: 1), [])
    }

    func testSeriesAreDrawnWhereTheirValuesAreWithALegend() {
        let red: (red: UInt8, green: UInt8, blue: UInt8) = (214, 39, 40), blue: (red: UInt8, green: UInt8, blue: UInt8) = (31, 119, 180)
        let chart = LineChart(title: "t", xLabel: "x", yLabel: "y", series: [
            .init(name: "rising", color: red, points: [.init(x: 0, y: 0), .init(x: 10, y: 10, error: 1)]),
            .init(name: "flat", color: blue, points: [.init(x: 0, y: 5), .init(x: 10, y: 5)]),
        ], xTicks: [0, 5, 10], yRange: 0...10, width: 300, height: 200)
        let image = chart.render()
        XCTAssertEqual([image.width, image.height], [300, 200])
        func count(_ c: (red: UInt8, green: UInt8, blue: UInt8)) -> Int {
            (0..<(image.width * image.height)).filter { image.pixels[3 * $0] == c.red && image.pixels[3 * $0 + 1] == c.green && image.pixels[3 * $0 + 2] == c.blue }.count
        }
        XCTAssertGreaterThan(count(red), 100)
        XCTAssertGreaterThan(count(blue), 100)
        // The flat series is one horizontal row of its colour across the plot (plus markers and the legend swatch):
        // find its row at the plot's middle column and check it spans most of the width.
        let middle = image.width / 2
        let rows = (0..<image.height).filter { y in image[x: middle, y: y] == (blue.red, blue.green, blue.blue) }
        XCTAssertFalse(rows.isEmpty)
        let row = rows[rows.count / 2]
        let span = (0..<image.width).filter { image[x: $0, y: row] == (blue.red, blue.green, blue.blue) }.count
        XCTAssertGreaterThan(span, image.width / 2)
        // Higher values are drawn higher: the rising series' last marker is above its first.
        let redRows = (0..<image.height).filter { y in (0..<20).contains { image[x: image.width - 20 + $0, y: y] == (red.red, red.green, red.blue) } }
        let redRowsLeft = (0..<image.height).filter { y in (0..<80).contains { image[x: $0, y: y] == (red.red, red.green, red.blue) } }
        XCTAssertLessThan(redRows.min() ?? .max, redRowsLeft.max() ?? 0)
    }
}
