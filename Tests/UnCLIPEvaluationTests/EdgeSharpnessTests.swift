import Foundation
import XCTest
import UnCLIPImage
import UnCLIPShapesWorld
@testable import UnCLIPEvaluation

/// The measures of `unclip evaluate --task upsampler`: edge width and background cleanliness, on exact renders and on
/// renders made worse in known ways.
final class EdgeSharpnessTests: XCTestCase {
    static let scenes = (0..<6).map { ShapesWorld(seed: 21).scene(at: $0) }

    func statistics(_ transform: (RGBImage) throws -> RGBImage) throws -> EdgeStatistics {
        var s = EdgeStatistics()
        for scene in Self.scenes { s.add(try transform(try ShapesWorld.render(scene, size: 512))) }
        return s
    }

    func testExactRendersHaveThinEdgesAndAWhiteBackground() throws {
        let exact = try statistics { $0 }
        XCTAssertGreaterThan(exact.count, 100)
        // Axis-aligned edges step in within a pixel (0.8 px from 10 % to 90 %); slanted and curved ones, read along a
        // row, take longer.
        XCTAssertGreaterThan(exact.medianWidth, 0.5)
        XCTAssertLessThan(exact.medianWidth, 2)
        XCTAssertEqual(exact.backgroundDeviation, 0)
        XCTAssertEqual(exact.backgroundOutliers, 0)
    }

    func testBlurWidensEdgesAndNoiseShowsOnTheBackground() throws {
        let exact = try statistics { $0 }
        // The 128 render enlarged 4× (what the upsampler is given): edges several pixels wide.
        let enlarged = try statistics { try $0.boxDownsampled(factor: 4).resized(width: 512, height: 512) }
        XCTAssertGreaterThan(enlarged.medianWidth, 2.5 * exact.medianWidth)
        let noisy = try statistics { image in
            var p = image.pixels
            for i in stride(from: 0, to: p.count, by: 7) where p[i] == 255 { p[i] = 235 }
            return RGBImage(width: image.width, height: image.height, pixels: p)
        }
        XCTAssertGreaterThan(noisy.backgroundDeviation, 1)
        XCTAssertGreaterThan(noisy.backgroundOutliers, 0.1)
    }

    func testAnEdgeOfKnownWidthIsMeasured() {
        // A ramp from 0 to 0.6 over 5 samples (0, .15, .3, .45, .6): 10 % at 0.4 of a step past its start, 90 % at 3.6.
        let line = [Double](repeating: 0, count: 20) + [0.15, 0.3, 0.45] + [Double](repeating: 0.6, count: 20)
        let widths = EdgeSharpness.risingEdges(line)
        XCTAssertEqual(widths.count, 1)
        XCTAssertEqual(widths[0], 3.2, accuracy: 1e-9)
    }
}
