import Foundation
import XCTest
import UnCLIPEvaluation
import UnCLIPModels
import UnCLIPShapesModel

/// The evaluation runs themselves (the parser and checker they use are tested in UnCLIPShapesWorldTests).
final class EvaluationTests: XCTestCase {
    func testCosineSimilarityIsTheNormalisedDotProduct() {
        let a = Tensor(shape: [2, 3], [1, 0, 0, 3, 4, 0])
        let b = Tensor(shape: [3, 3], [0, 1, 0, -2, 0, 0, 6, 8, 0])
        XCTAssertEqual(cosineSimilarity(a, row: 0, b, row: 0), 0)
        XCTAssertEqual(cosineSimilarity(a, row: 0, b, row: 1), -1)
        XCTAssertEqual(cosineSimilarity(a, row: 1, b, row: 2), 1, accuracy: 1e-15)  // scale does not matter
        XCTAssertEqual(cosineSimilarity(a, row: 1, b, row: 0), 0.8, accuracy: 1e-15)
        XCTAssertEqual(cosineSimilarity(Tensor.zeros([1, 3]), row: 0, b, row: 0), 0)  // no division by zero
    }

    func testTheShapesEvaluationCountsEveryImageAndScoresTheEmbeddedModel() throws {
        let pipeline = try UnCLIPPipeline(directory: try XCTUnwrap(EmbeddedModel.url))
        pipeline.keepLoaded = true
        var c = ShapesEvaluationConfiguration()
        c.promptCount = 3
        c.imagesPerPrompt = 2
        c.sampling = pipeline.defaultOptions
        c.sampling.priorSteps = 10; c.sampling.decoderSteps = 10
        let logged = LockedLines()
        c.log = { logged.append($0) }
        let report = try evaluateShapes(pipeline: pipeline, configuration: c)
        XCTAssertEqual(report.prompts, 3)
        XCTAssertEqual(report.images, 6)
        XCTAssertEqual(report.oneObject.images + report.twoObjects.images, 6)
        XCTAssertEqual(logged.lines.count, 6, "one verdict line per image")
        // A trained model draws most captions right even at 10 steps; CLIP scores are cosines × 100.
        XCTAssertGreaterThanOrEqual(report.oneObject.wholeCorrect + report.twoObjects.wholeCorrect, 4)
        XCTAssertGreaterThan(report.clipScore, 0)
        XCTAssertLessThanOrEqual(report.clipScore, 100)
        XCTAssertGreaterThan(report.secondsPerImage, 0)
    }
}

final class LockedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    func append(_ line: String) { lock.lock(); stored.append(line); lock.unlock() }
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return stored }
}
