import Foundation
import XCTest
import UnCLIPEvaluation
import UnCLIPModels
import UnCLIPShapesModel

/// The shipped model against issue 16's inpainting bar on a small sample (docs/manipulations.md has the 50-case run):
/// "a red circle to the left of a blue square" with the right half repainted toward "… of a green triangle".
final class InpaintingBarTests: XCTestCase {
    func testTheRightHalfIsRepaintedAndTheLeftKept() throws {
        let p = try UnCLIPPipeline(directory: try XCTUnwrap(EmbeddedModel.url))
        p.keepLoaded = true
        let report = try evaluateInpainting(pipeline: p, cases: 8, options: p.defaultOptions)
        for (k, result) in report.results.enumerated() where !result.check.correct { print("case \(k): \(result)") }
        XCTAssertEqual(report.cases, 8)
        // The bar: ≥ 80 % read as the prompt, the unmasked half within 2 levels of the input on average.
        XCTAssertGreaterThanOrEqual(report.accuracy, 0.8, "\(report)")
        XCTAssertLessThanOrEqual(report.meanUnmaskedDifference, 2, "\(report)")
    }
}
