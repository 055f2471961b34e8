import Foundation
import XCTest
import UnCLIPTensor
@testable import UnCLIPImage

final class ResizeTests: XCTestCase {
    func testPillowBicubicIsBitExact() throws {
        let expected = try ImageExpectations.load()
        let source = try RGBImage(contentsOf: imageFixtures.appendingPathComponent("resize_source.png"))
        XCTAssertEqual([source.width, source.height], [37, 23])
        XCTAssertEqual(expected.pillow_resize.count, 7)
        for (size, want) in expected.pillow_resize {
            let wh = size.split(separator: "x").map { Int($0)! }
            let out = source.resized(width: wh[0], height: wh[1])
            XCTAssertEqual([out.width, out.height], wh, size)
            let differing = zip(out.pixels, want).filter { $0 != $1 }.count
            XCTAssertEqual(differing, 0, "\(size): \(differing) bytes differ from Pillow")
        }
        XCTAssertEqual(source.resized(width: 37, height: 23), source)
    }

    func testShorterSideAndCentreCrop() {
        let image = RGBImage(width: 300, height: 200, pixels: (0..<(300 * 200 * 3)).map { UInt8($0 % 251) })
        let r = image.resized(shorterSide: 224)
        XCTAssertEqual([r.width, r.height], [336, 224])  // floor(224 · 300 / 200)
        let tall = RGBImage(width: 199, height: 301, pixels: [UInt8](repeating: 7, count: 199 * 301 * 3)).resized(shorterSide: 224)
        XCTAssertEqual([tall.width, tall.height], [224, 338])  // floor(224 · 301 / 199) = floor(338.8)
        let crop = r.centerCropped(width: 224, height: 224)
        XCTAssertEqual([crop.width, crop.height], [224, 224])
        XCTAssertTrue(crop[x: 0, y: 0] == r[x: 56, y: 0])
        // Larger than the image: zero padding around it, top-left offset floor((h − H) / 2).
        let small = RGBImage(width: 1, height: 1, red: 9, green: 9, blue: 9).centerCropped(width: 2, height: 3)
        XCTAssertEqual(small.pixels, [0, 0, 0, 0, 0, 0,  0, 0, 0, 9, 9, 9,  0, 0, 0, 0, 0, 0])
    }

    func testTorchAntialiasedBicubicMatchesTorch() throws {
        let expected = try ImageExpectations.load()
        guard case let .input(input)? = expected.torch_aa["input"] else { return XCTFail("no input in fixture") }
        let x = Tensor(shape: input.shape, input.values)
        var checked = 0
        for (size, entry) in expected.torch_aa where size.first!.isNumber {
            guard case let .output(want) = entry else { continue }
            let hw = size.split(separator: "x").map { Int($0)! }
            let y = x.resizedBicubicAntialiased(height: hw[0], width: hw[1])
            XCTAssertEqual(y.shape, [1, 3, hw[0], hw[1]], size)
            let worst = zip(y.toArray(), want).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(worst, 1e-5, size)
            checked += 1
        }
        XCTAssertEqual(checked, 6)
    }

    func testTorchAntialiasedBicubicWeightsQuotedInSpec() throws {
        // Spec §12.1 step 8: 64 → 256, output row 0 reads rows 0, 1 with weights 1.11194, −0.11194; output row 5 reads
        // rows 0, 1, 2 with weights 0.090204, 0.957323, −0.047527. A one-hot column 0 exposes the weights of input 0.
        let expected = try ImageExpectations.load()
        guard case let .output(want)? = expected.torch_aa["column0_64to256"] else { return XCTFail("no fixture") }
        let z = Tensor.zeros([1, 1, 64, 64])
        for r in 0..<64 { z[0, 0, r, 0] = 1 }
        let y = z.resizedBicubicAntialiased(height: 256, width: 256)
        let row = (0..<8).map { y[0, 0, 0, $0] }
        for (a, b) in zip(row, want) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        XCTAssertEqual(row[0], 1.11194, accuracy: 1e-5)
        XCTAssertEqual(row[5], 0.090204, accuracy: 1e-6)
    }

    func testAntialiasedResizeKeepsConstantsAndHandlesBatches() {
        let x = Tensor.full([2, 3, 7, 9], 0.25)
        for (h, w) in [(7, 9), (28, 36), (3, 2), (1, 1)] {
            let y = x.resizedBicubicAntialiased(height: h, width: w)
            XCTAssertEqual(y.shape, [2, 3, h, w])
            XCTAssertLessThanOrEqual(y.toArray().map { abs($0 - 0.25) }.max()!, 1e-6)
        }
    }
}
