import Foundation
import XCTest
import UnCLIPEvaluation
import UnCLIPImage
import UnCLIPModels
import UnCLIPShapesModel
import UnCLIPTraining

/// The shipped model against the bars of the paper's manipulations (docs/manipulations.md has the full runs) and the
/// caption check of its text-to-image output, on small samples that keep the suite quick.
final class ManipulationBarTests: XCTestCase {
    func pipeline() throws -> UnCLIPPipeline {
        let p = try UnCLIPPipeline(directory: try XCTUnwrap(EmbeddedModel.url))
        p.keepLoaded = true
        return p
    }

    func testPromptsParseBack() throws {
        // One image per prompt at the model's default sampling settings: the parser must read the caption back.
        let p = try pipeline()
        let prompts = ["a red circle", "a blue square", "a large green triangle", "a purple cross", "a yellow circle above a blue square"]
        var noise = SeededNoise(seed: 11)
        let images = UnCLIPPipeline.images(from: try p.generate(prompts: prompts, options: try SamplingOptions(defaultsOf: p.directory),
                                                                noise: &noise))
        var correct = 0
        for (prompt, image) in zip(prompts, images) {
            let result = try CaptionCheck.evaluate(caption: prompt, image: image)
            if result.correct { correct += 1 } else { print("not read back: \(prompt) → \(result.detected)") }
        }
        XCTAssertGreaterThanOrEqual(correct, 4, "\(correct) of \(prompts.count) prompts read back")
    }

    func testInversionReconstructsRenders() throws {
        let world = ShapesWorld(seed: 9_000_001)
        let images = (0..<4).map { ShapesWorld.render(world.scene(at: $0)) }
        let report = try evaluateInversion(pipeline: try pipeline(), images: images)
        XCTAssertGreaterThanOrEqual(report.mean, 25, "\(report)")
    }

    func testInversionReconstructsGeneratedImages() throws {
        let p = try pipeline()
        var noise = SeededNoise(seed: 3)
        let images = UnCLIPPipeline.images(from: try p.generate(prompts: ["a red circle", "an orange square to the left of a green cross"],
                                                                options: try SamplingOptions(defaultsOf: p.directory), noise: &noise))
        let report = try evaluateInversion(pipeline: p, images: images)
        XCTAssertGreaterThanOrEqual(report.mean, 25, "\(report)")
    }

    func testRelationProbeRuns() throws {
        // The shipped CLIP reads no relations (docs/evaluation.md: 400 scenes, text 50.6 %, mirror-image cosine 0.82,
        // prior 58.2 %): the probe must see relation scenes and report every stage in range; it documents the
        // limitation rather than asserting it away.
        let report = try probeRelations(pipeline: try pipeline(), scenes: 40)
        XCTAssertGreaterThan(report.cases, 5)
        XCTAssertLessThanOrEqual(report.preferred, report.cases)
        XCTAssertLessThanOrEqual(report.meanTextCosine, 1.0001)
        XCTAssertGreaterThan(report.meanMirrorImageCosine, -1.0001)
        XCTAssertLessThanOrEqual(report.meanMirrorImageCosine, 1.0001)
        XCTAssertEqual(report.priorCases, report.cases, "the shipped model has a prior: every case probes it")
        XCTAssertLessThanOrEqual(report.priorPreferred, report.priorCases)
        // Attributes are what the shipped CLIP does read (400 scenes: shape 96.2 %, colour 100 %, swapped colours
        // 85.1 %): a CLIP that stopped telling colours apart would fail here.
        XCTAssertGreaterThan(report.attributeCases, report.cases)
        XCTAssertGreaterThanOrEqual(Double(report.colorPreferred), 0.9 * Double(report.attributeCases))
        XCTAssertGreaterThanOrEqual(Double(report.shapePreferred), 0.8 * Double(report.attributeCases))
        XCTAssertLessThanOrEqual(report.swapPreferred, report.swapCases)
    }

    func testDecoderAloneEvaluationUsesTheRendersEmbeddings() throws {
        // --ground-truth-embeddings: the prior skipped, the decoder given the CLIP embedding of the caption's own
        // render. One-object captions come back right (docs/evaluation.md: 98.7 % of 156 images).
        var c = ShapesEvaluationConfiguration()
        c.promptCount = 3
        c.imagesPerPrompt = 1
        c.groundTruthEmbeddings = true
        let p = try pipeline()
        c.sampling = try SamplingOptions(defaultsOf: p.directory)
        let report = try evaluateShapes(pipeline: p, configuration: c)
        XCTAssertEqual(report.images, 3)
        XCTAssertGreaterThan(report.oneObject.images + report.twoObjects.images, 0)
    }

    func testTextDiffTurnsMostCirclesBlue() throws {
        // A regression guard below the measured level (50 cases: 70 % blue, 56 % blue within 8 px;
        // docs/manipulations.md), not the bar, which asks for 80 % blue *and* in place.
        let report = try evaluateTextDiff(pipeline: try pipeline(), cases: 10)
        XCTAssertGreaterThanOrEqual(report.turnedBlue, 5, "\(report)")
        XCTAssertGreaterThanOrEqual(report.turnedBlueInPlace, 3, "\(report)")
    }
}
