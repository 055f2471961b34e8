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
        // The shipped CLIP reads no relations (docs/evaluation.md): the probe must see relation scenes and report
        // a rate and a cosine in range; it documents the limitation rather than asserting it away.
        let report = try probeRelations(pipeline: try pipeline(), scenes: 40)
        XCTAssertGreaterThan(report.cases, 5)
        XCTAssertLessThanOrEqual(report.preferred, report.cases)
        XCTAssertLessThanOrEqual(report.meanTextCosine, 1.0001)
    }

    func testTextDiffTurnsMostCirclesBlue() throws {
        // A regression guard below the measured level (50 cases: 70 % blue, 56 % blue within 8 px;
        // docs/manipulations.md), not the bar, which asks for 80 % blue *and* in place.
        let report = try evaluateTextDiff(pipeline: try pipeline(), cases: 10)
        XCTAssertGreaterThanOrEqual(report.turnedBlue, 5, "\(report)")
        XCTAssertGreaterThanOrEqual(report.turnedBlueInPlace, 3, "\(report)")
    }
}
