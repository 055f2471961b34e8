import Foundation
import XCTest
@testable import UnCLIPImage

/// Images read with their alpha channel (an edit's input and mask).
final class AlphaImageTests: XCTestCase {
    func temporaryFile(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("alpha-\(UUID().uuidString)-\(name)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func interleaved(_ image: RGBImage, _ alpha: [UInt8]) -> [UInt8] {
        var rgba: [UInt8] = []
        for i in 0..<alpha.count {
            rgba += [image.pixels[3 * i], image.pixels[3 * i + 1], image.pixels[3 * i + 2], alpha[i]]
        }
        return rgba
    }

    func testAnRGBAPNGRoundTripsWithItsAlpha() throws {
        // Every alpha value, with colours under fully transparent pixels that must survive (straight alpha).
        let width = 16, height = 16
        let rgb = RGBImage(width: width, height: height, pixels: (0..<(width * height * 3)).map { UInt8(($0 * 37) % 256) })
        let alpha = (0..<(width * height)).map { UInt8($0) }
        let original = AlphaImage(image: rgb, alpha: alpha)
        let url = temporaryFile("rgba.png")
        try original.writePNG(to: url)
        let back = try AlphaImage(contentsOf: url)
        XCTAssertEqual(back, original)
        // The same file read as RGB is its colour over white.
        XCTAssertEqual(try RGBImage(contentsOf: url).pixels, RGBImage.compositeOverWhite(rgba: interleaved(rgb, alpha)))
        // Without alpha it writes (and reads back) plain RGB.
        let opaque = AlphaImage(image: rgb, alpha: nil)
        let plain = temporaryFile("rgb.png")
        try opaque.writePNG(to: plain)
        XCTAssertEqual(try AlphaImage(contentsOf: plain), opaque)
        XCTAssertEqual(try AlphaImage(data: try opaque.pngData()).alpha, nil)
    }

    func testColourTypesKeepOrLackAlphaAsTheFileDoes() throws {
        for name in ["rgba.png", "gray_alpha.png", "rgb.png", "gray.png", "rgb16.png", "bilevel.png", "palette.png", "rgb.jpg"] {
            let url = imageFixtures.appendingPathComponent(name)
            let image = try AlphaImage(contentsOf: url)
            let flattened = try RGBImage(contentsOf: url)
            XCTAssertEqual(image.width, flattened.width, name)
            XCTAssertEqual(image.height, flattened.height, name)
            if let alpha = image.alpha {
                XCTAssertTrue(name.contains("alpha") || name.contains("rgba") || name == "palette.png", "\(name) has alpha")
                XCTAssertEqual(alpha.count, image.width * image.height)
                // Straight colour and alpha composite to exactly what RGBImage reads.
                XCTAssertEqual(RGBImage.compositeOverWhite(rgba: interleaved(image.image, alpha)), flattened.pixels, name)
            } else {
                XCTAssertFalse(name.contains("alpha") || name.contains("rgba"), "\(name) lost its alpha")
                XCTAssertEqual(image.image, flattened, name)
            }
        }
        XCTAssertNotNil(try AlphaImage(contentsOf: imageFixtures.appendingPathComponent("gray_alpha.png")).alpha)
        XCTAssertNotNil(try AlphaImage(contentsOf: imageFixtures.appendingPathComponent("rgba.png")).alpha)
    }

    func testBrokenAndHugeFilesAreRefused() throws {
        let png = [UInt8](try Data(contentsOf: imageFixtures.appendingPathComponent("rgba.png")))
        XCTAssertThrowsError(try AlphaImage(data: Data(png.prefix(40)), name: "cut.png")) {
            XCTAssertTrue("\($0)".contains("cut.png") && "\($0)".contains("cannot decode PNG"), "\($0)")
        }
        XCTAssertThrowsError(try AlphaImage(data: Data("hello".utf8), name: "text.png")) {
            XCTAssertTrue("\($0)".contains("not a PNG or JPEG"), "\($0)")
        }
        // A header declaring 60000 × 60000 pixels is refused before any pixel memory is allocated.
        var huge = Array(png.prefix(33))
        huge.replaceSubrange(16..<24, with: [0, 0, 0xEA, 0x60, 0, 0, 0xEA, 0x60])
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in huge[12..<29] {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        crc = ~crc
        huge.replaceSubrange(29..<33, with: [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)])
        XCTAssertThrowsError(try AlphaImage(data: Data(huge + png.dropFirst(33)), name: "huge.png")) {
            XCTAssertTrue("\($0)".contains("60000x60000") && "\($0)".contains("limit"), "\($0)")
        }
        XCTAssertThrowsError(try AlphaImage(contentsOf: URL(fileURLWithPath: "/nonexistent/mask.png"))) {
            XCTAssertTrue("\($0)".contains("/nonexistent/mask.png"), "\($0)")
        }
    }
}
