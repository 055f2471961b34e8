import Foundation
import XCTest
import UnCLIPEvaluation
import UnCLIPModels
import UnCLIPShapesModel
import UnCLIPShapesWorld

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

/// `--task binding` and `--task guidance`: the paper's Figure 15 counts and Figures 9 / 10 sweep.
final class PaperLimitationTests: XCTestCase {
    /// Renders standing in for reconstructions: each kind of error, parsed back, is counted as what it is.
    func testReconstructionOutcomesNameEachKindOfSwap() throws {
        func object(_ shape: ShapeKind, _ color: ShapeColor, _ cx: Double) -> SceneObject {
            SceneObject(shape: shape, color: color, sizeClass: .large, s: 44, cx: cx, cy: 64)
        }
        let original = [object(.circle, .red, 34), object(.square, .blue, 94)]
        func outcome(_ drawn: [SceneObject]) -> ReconstructionOutcome {
            let image = ShapesWorld.render(Scene(objects: drawn, relation: nil, mentionsSize: false))
            return reconstructionOutcome(objects: original, detected: ShapesParser().parse(image))
        }
        XCTAssertEqual(outcome(original), .correct)
        XCTAssertEqual(outcome([object(.circle, .blue, 34), object(.square, .red, 94)]), .colorSwap)
        XCTAssertEqual(outcome([object(.square, .red, 34), object(.circle, .blue, 94)]), .shapeSwap)
        // Both exchanged: the objects in each other's places, no attribute bound wrongly.
        XCTAssertEqual(outcome([object(.square, .blue, 34), object(.circle, .red, 94)]), .otherAttribute)
        XCTAssertEqual(outcome([object(.circle, .green, 34), object(.square, .blue, 94)]), .otherAttribute)
        XCTAssertEqual(outcome([object(.circle, .red, 34), object(.square, .red, 94)]), .colorCopy)
        XCTAssertEqual(outcome([object(.square, .red, 34), object(.square, .blue, 94)]), .shapeCopy)
        XCTAssertEqual(outcome([object(.circle, .red, 34), object(.triangle, .blue, 94)]), .otherAttribute, "a third shape is no copy")
        XCTAssertEqual(outcome([object(.circle, .red, 34)]), .count)
        // Matching is by position, not by the parser's order.
        XCTAssertEqual(reconstructionOutcome(objects: original.reversed(), detected: ShapesParser().parse(
            ShapesWorld.render(Scene(objects: original, relation: nil, mentionsSize: false)))), .correct)
    }

    func testBindingReconstructionCountsEveryImage() throws {
        let pipeline = try UnCLIPPipeline(directory: try XCTUnwrap(EmbeddedModel.url))
        pipeline.keepLoaded = true
        var o = pipeline.defaultOptions
        (o.decoderSteps, o.superResSteps) = (5, 2)
        for captioned in [false, true] {
            let report = try evaluateBindingReconstruction(pipeline: pipeline, scenes: 2, imagesPerScene: 2, captioned: captioned, sampling: o)
            XCTAssertEqual(report.scenes, 2)
            XCTAssertEqual(report.images, 4)
            XCTAssertEqual(ReconstructionOutcome.allCases.map(report.count).reduce(0, +), 4)
            XCTAssertEqual(report.samples.count, 2)
            XCTAssertGreaterThan(bindingReconstructionGrid(report).width, 0)
        }
    }

    /// Every (decoder, scale) is evaluated with that decoder and scale, and the charts draw.
    func testTheGuidanceSweepRunsBothDecodersAtEachScale() throws {
        let pipeline = try UnCLIPPipeline(directory: try XCTUnwrap(EmbeddedModel.url))
        pipeline.keepLoaded = true
        try XCTSkipUnless(pipeline.hasBaselineDecoder, "the embedded model ships glide_decoder")
        var c = ShapesEvaluationConfiguration()
        c.promptCount = 2
        c.imagesPerPrompt = 1
        c.sampling = pipeline.defaultOptions
        (c.sampling.priorSteps, c.sampling.decoderSteps, c.sampling.superResSteps) = (3, 3, 2)
        // Too few images for k = 3 neighbours is an error naming the condition, not a trap.
        XCTAssertThrowsError(try guidanceSweep(pipeline: pipeline, base: c, scales: [1], decoders: [.glide])) {
            XCTAssertTrue("\($0)".contains("GLIDE-style, guidance 1") && "\($0)".contains("at least 4"), "\($0)")
        }
        c.imagesPerPrompt = 2
        let sweep = try guidanceSweep(pipeline: pipeline, base: c, scales: [1, 4], decoders: [.unclip, .glide])
        XCTAssertEqual(sweep.comparison.results.map(\.label),
                       ["unCLIP, guidance 1", "unCLIP, guidance 4", "GLIDE-style, guidance 1", "GLIDE-style, guidance 4"])
        for d in [DecoderKind.unclip, .glide] {
            let low = try XCTUnwrap(sweep.result(d, scale: 1)), high = try XCTUnwrap(sweep.result(d, scale: 4))
            XCTAssertEqual(low.report.images, 4)
            XCTAssertNotEqual(low.report.features, high.report.features, "\(d): the scale reaches the decoder")
        }
        XCTAssertNotEqual(sweep.result(.unclip, scale: 4)?.report.features, sweep.result(.glide, scale: 4)?.report.features)
        let charts = sweep.charts()
        XCTAssertGreaterThan(charts.width, 800)
        let grid = try guidanceGrid(pipeline: pipeline, caption: "a red circle", decoder: .glide, scale: 3, sampling: c.sampling, noiseSeed: 1, side: 2)
        XCTAssertGreaterThan(grid.width, 2 * 128)
    }
}
