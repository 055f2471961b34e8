import Foundation
import XCTest
import UnCLIPTensor
@testable import UnCLIPImage

/// Fixtures written by Scripts/make_image_fixtures.py (Pillow and torch), located next to this file so no resource
/// bundle is needed.
let imageFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

struct ImageExpectations: Decodable {
    struct Decoded: Decodable { let width: Int; let height: Int; let pixels: [UInt8] }
    struct Values: Decodable { let shape: [Int]; let values: [Float] }
    let decode: [String: Decoded]
    let pillow_resize: [String: [UInt8]]
    let torch_aa: [String: TorchEntry]

    enum TorchEntry: Decodable {
        case input(Values)
        case output([Float])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let v = try? c.decode(Values.self) { self = .input(v) } else { self = .output(try c.decode([Float].self)) }
        }
    }

    static func load() throws -> ImageExpectations {
        try JSONDecoder().decode(ImageExpectations.self, from: Data(contentsOf: imageFixtures.appendingPathComponent("expected.json")))
    }
}

final class RGBImageTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("image-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    // MARK: Decoding

    func testPNGColourTypesMatchPillowOverWhite() throws {
        let expected = try ImageExpectations.load()
        for name in ["rgb.png", "gray.png", "gray_alpha.png", "rgba.png", "palette.png", "rgb16.png", "bilevel.png"] {
            let image = try RGBImage(contentsOf: imageFixtures.appendingPathComponent(name))
            let want = expected.decode[name]!
            XCTAssertEqual(image.width, want.width, name)
            XCTAssertEqual(image.height, want.height, name)
            // Exact: including Pillow's integer alpha compositing for every alpha value 0…255 (rgba.png).
            XCTAssertEqual(image.pixels, want.pixels, name)
        }
    }

    func testJPEGMatchesPillowDecode() throws {
        let expected = try ImageExpectations.load()
        for name in ["rgb.jpg", "progressive.jpg", "gray.jpg"] {
            let image: RGBImage
            do { image = try RGBImage(contentsOf: imageFixtures.appendingPathComponent(name)) } catch {
                #if canImport(CJPEGDecode)
                throw error
                #else
                XCTAssertTrue("\(error)".contains("no JPEG decoder"), "\(error)")
                continue
                #endif
            }
            let want = expected.decode[name]!
            XCTAssertEqual([image.width, image.height], [want.width, want.height], name)
            // Same libjpeg-turbo algorithm (ISLOW IDCT, fancy upsampling) as Pillow: identical bytes.
            let worst = zip(image.pixels, want.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
            XCTAssertEqual(worst, 0, name)
        }
    }

    func testCMYKJPEGIsRejectedClearly() throws {
        let url = imageFixtures.appendingPathComponent("cmyk.jpg")
        XCTAssertThrowsError(try RGBImage(contentsOf: url)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains(url.path), message)
            #if canImport(CJPEGDecode)
            XCTAssertTrue(message.contains("CMYK"), message)
            #endif
        }
    }

    func testDetectionUsesMagicBytesNotExtension() throws {
        let png = imageFixtures.appendingPathComponent("rgb.png")
        let disguised = scratch.appendingPathComponent("photo.jpg")
        try FileManager.default.copyItem(at: png, to: disguised)
        XCTAssertEqual(try RGBImage(contentsOf: disguised), try RGBImage(contentsOf: png))
        XCTAssertEqual(RGBImage.FileFormat.detect(try Data(contentsOf: imageFixtures.appendingPathComponent("rgb.jpg"))), .jpeg)
        XCTAssertEqual(RGBImage.FileFormat.detect(try Data(contentsOf: png)), .png)
        XCTAssertNil(RGBImage.FileFormat.detect([0x89, 0x50]))
    }

    // MARK: Broken files

    private func assertUnreadable(_ bytes: [UInt8], name: String, mentioning words: [String],
                                  file: StaticString = #filePath, line: UInt = #line) throws {
        let url = scratch.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        XCTAssertThrowsError(try RGBImage(contentsOf: url), file: file, line: line) { error in
            XCTAssertTrue(error is ImageError, "\(type(of: error))", file: file, line: line)
            let message = "\(error)"
            XCTAssertTrue(message.contains(url.path), "no file name in: \(message)", file: file, line: line)
            for w in words { XCTAssertTrue(message.contains(w), "'\(w)' missing in: \(message)", file: file, line: line) }
        }
    }

    func testBrokenFilesThrowClearErrors() throws {
        try assertUnreadable([], name: "empty.png", mentioning: ["empty"])
        try assertUnreadable(Array("hello, world".utf8), name: "text.png", mentioning: ["not a PNG or JPEG", "68 65 6c"])
        var rng = SystemRandomNumberGenerator()
        var random = (0..<500).map { _ in UInt8.random(in: 0...255, using: &rng) }
        random[0] = 0  // no PNG or JPEG signature by chance
        try assertUnreadable(random, name: "random.bin", mentioning: ["not a PNG or JPEG"])
        let png = [UInt8](try Data(contentsOf: imageFixtures.appendingPathComponent("rgb.png")))
        for cut in [8, 20, 40, png.count / 2, png.count - 13] {
            try assertUnreadable(Array(png.prefix(cut)), name: "cut\(cut).png", mentioning: ["cannot decode PNG"])
        }
        var corrupt = png
        for i in stride(from: 60, to: corrupt.count - 20, by: 7) { corrupt[i] ^= 0x5A }
        try assertUnreadable(corrupt, name: "corrupt.png", mentioning: ["cannot decode PNG"])
        // A valid header declaring 60000 × 60000 pixels is refused before any pixel memory is allocated.
        var huge = Array(png.prefix(33))
        huge.replaceSubrange(16..<24, with: [0, 0, 0xEA, 0x60, 0, 0, 0xEA, 0x60])
        let crc = crc32(huge[12..<29])
        huge.replaceSubrange(29..<33, with: [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)])
        try assertUnreadable(huge + png.dropFirst(33), name: "huge.png", mentioning: ["60000x60000", "limit"])
        XCTAssertThrowsError(try RGBImage(contentsOf: scratch.appendingPathComponent("missing.png"))) { error in
            XCTAssertTrue("\(error)".contains("missing.png"), "\(error)")
        }
    }

    func testBrokenJPEGsThrowClearErrors() throws {
        #if canImport(CJPEGDecode)
        let jpeg = [UInt8](try Data(contentsOf: imageFixtures.appendingPathComponent("rgb.jpg")))
        for cut in [3, 30, jpeg.count / 2, jpeg.count - 2] {
            try assertUnreadable(Array(jpeg.prefix(cut)), name: "cut\(cut).jpg", mentioning: ["cannot decode JPEG"])
        }
        var corrupt = jpeg
        for i in stride(from: 2, to: 200, by: 3) { corrupt[i] = 0xFF }
        try assertUnreadable(corrupt, name: "corrupt.jpg", mentioning: ["cannot decode JPEG"])
        // A frame header (SOF0) declaring 60000 × 60000 pixels is refused before decoding.
        var huge = jpeg
        if let sof = (0..<(huge.count - 9)).first(where: { huge[$0] == 0xFF && huge[$0 + 1] == 0xC0 }) {
            huge.replaceSubrange((sof + 5)..<(sof + 9), with: [0xEA, 0x60, 0xEA, 0x60])
            try assertUnreadable(huge, name: "huge.jpg", mentioning: ["60000x60000", "limit"])
        } else {
            XCTFail("rgb.jpg has no SOF0 marker")
        }
        // Random tails after a JPEG signature must fail cleanly, never exit or crash.
        var rng = SystemRandomNumberGenerator()
        for trial in 0..<50 {
            let bytes = [0xFF, 0xD8, 0xFF] + (0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let url = scratch.appendingPathComponent("random\(trial).jpg")
            try Data(bytes).write(to: url)
            XCTAssertThrowsError(try RGBImage(contentsOf: url))
        }
        #endif
    }

    // MARK: Writing

    func testPNGRoundTrips() throws {
        for name in ["rgb.png", "gray.png", "rgba.png"] {
            let image = try RGBImage(contentsOf: imageFixtures.appendingPathComponent(name))
            let url = scratch.appendingPathComponent("out-" + name)
            try image.writePNG(to: url)
            XCTAssertEqual(try RGBImage(contentsOf: url), image, name)
        }
        let odd = RGBImage(width: 3, height: 2, pixels: (0..<18).map { UInt8($0 * 14) })
        let url = scratch.appendingPathComponent("odd.png")
        try odd.writePNG(to: url)
        XCTAssertEqual(try RGBImage(contentsOf: url), odd)
        try odd.writePNG(to: url)  // overwriting is atomic and allowed
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: scratch.path)),
                       ["out-rgb.png", "out-gray.png", "out-rgba.png", "odd.png"])
        XCTAssertThrowsError(try odd.writePNG(to: scratch.appendingPathComponent("no/such/folder/x.png"))) { error in
            XCTAssertTrue("\(error)".contains("no/such/folder/x.png"), "\(error)")
        }
    }

    // MARK: Tensors

    func testTensorConversions() throws {
        let image = RGBImage(width: 2, height: 1, pixels: [0, 128, 255, 10, 20, 30])
        let t = image.tensor()
        XCTAssertEqual(t.shape, [1, 3, 1, 2])
        let bytes: [Float] = [0, 10, 128, 20, 255, 30]
        XCTAssertEqual(t.toArray(), bytes.map { $0 / 127.5 - 1 })
        XCTAssertEqual(try RGBImage(tensor: t), image)
        let unit = image.tensor(range: .zeroToOne)
        XCTAssertEqual(unit.toArray(), [0, 10, 128, 20, 255, 30].map { Float($0) / 255 })
        XCTAssertEqual(try RGBImage(tensor: unit, range: .zeroToOne), image)

        // Rounding as diffusers + NumPy: clamp(x·0.5 + 0.5, 0, 1)·255, ties to even; out of range clamps; NaN → 0.
        let g0: Float = (0.5 / 255) * 2 - 1, g1: Float = (1.5 / 255) * 2 - 1, g2: Float = (2.5 / 255) * 2 - 1
        let reds: [Float] = [-2, 2, .nan, 0]
        let greens: [Float] = [g0, g1, g2, 1]
        let blues: [Float] = [-1, 0.999, 0.0039, -0.5]
        let back = try RGBImage(tensor: Tensor(shape: [3, 1, 4], reds + greens + blues))
        XCTAssertEqual((0..<4).map { back[x: $0, y: 0].0 }, [0, 255, 0, 128])
        let expectGreens: [UInt8] = greens.map { v in UInt8(((v * 0.5 + 0.5) * 255).rounded(.toNearestOrEven)) }
        XCTAssertEqual((0..<4).map { back[x: $0, y: 0].1 }, expectGreens)
        XCTAssertEqual(expectGreens[3], 255)
        XCTAssertEqual((0..<4).map { back[x: $0, y: 0].2 }, [0, 255, 128, 64])

        // Exact ties v·255 = k + 0.5 (found per k among neighbouring floats) round to the even neighbour, as NumPy does.
        var ties: [Float] = []
        for k in 0..<255 {
            let v = Float((Double(k) + 0.5) / 255)
            if let tie = [v, v.nextUp, v.nextDown].first(where: { $0 * 255 == Float(k) + 0.5 }) { ties.append(tie) }
        }
        XCTAssertEqual(ties.count, 255)
        let tieImage = try RGBImage(tensor: Tensor(shape: [3, 1, 255], ties + ties + ties), range: .zeroToOne)
        XCTAssertEqual((0..<255).map { tieImage[x: $0, y: 0].0 }, (0..<255).map { UInt8($0 % 2 == 0 ? $0 : $0 + 1) })

        let batch = try RGBImage.batch([image, image], range: .minusOneToOne)
        XCTAssertEqual(batch.shape, [2, 3, 1, 2])
        XCTAssertEqual(try RGBImage.images(from: batch), [image, image])
        XCTAssertThrowsError(try RGBImage(tensor: Tensor.zeros([2, 3, 4, 4])))
        XCTAssertThrowsError(try RGBImage.batch([image, RGBImage(width: 1, height: 1)]))
    }

    func testGrid() {
        let red = RGBImage(width: 2, height: 2, red: 255)
        let blue = RGBImage(width: 1, height: 3, blue: 255)
        let grid = RGBImage.grid([red, blue, red], columns: 2, padding: 1, background: 128)
        // Cells of 2×3, two columns, two rows, 1-pixel padding: 2·2 + 3 = 7 wide, 2·3 + 3 = 9 high.
        XCTAssertEqual([grid.width, grid.height], [7, 9])
        XCTAssertTrue(grid[x: 0, y: 0] == (128, 128, 128))
        XCTAssertTrue(grid[x: 1, y: 1] == (255, 0, 0))
        XCTAssertTrue(grid[x: 4, y: 3] == (0, 0, 255))
        XCTAssertTrue(grid[x: 5, y: 1] == (128, 128, 128))
        XCTAssertTrue(grid[x: 1, y: 5] == (255, 0, 0))
    }
}

/// The PNG chunk checksum (CRC-32, polynomial 0xEDB88320).
private func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return crc ^ 0xFFFF_FFFF
}
