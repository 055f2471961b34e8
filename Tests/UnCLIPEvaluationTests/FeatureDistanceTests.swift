import Foundation
import XCTest
@testable import UnCLIPEvaluation
import UnCLIPModels
import UnCLIPShapesModel
import UnCLIPShapesWorld

/// FD-CLIP, precision / recall and the ablation conditions of `--task priors` / `--task ablation`.
final class FeatureDistanceTests: XCTestCase {
    struct Fixture: Decodable {
        var real: [[Float]]
        var generated: [[Float]]
        var frechet_distance: Double
        var precision: Double
        var recall: Double
    }

    /// Made by Scripts/make_feature_distance_fixtures.py (NumPy / SciPy, pytorch-fid's formula).
    static func fixture() throws -> Fixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/feature_distances.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    func testFrechetDistanceOfASetWithItselfIsZero() throws {
        let f = try Self.fixture()
        XCTAssertEqual(frechetDistance(f.real, f.real), 0, accuracy: 1e-9)
        // Shifting every feature by v adds |v|².
        let shifted = f.real.map { $0.enumerated().map { $0.element + ($0.offset == 2 ? 3 : 0) } }
        XCTAssertEqual(frechetDistance(f.real, shifted), 9, accuracy: 1e-4)
    }

    func testFrechetDistancePrecisionAndRecallMatchTheReference() throws {
        let f = try Self.fixture()
        XCTAssertEqual(frechetDistance(f.real, f.generated), f.frechet_distance, accuracy: 1e-4 * f.frechet_distance)
        let pr = precisionRecall(real: f.real, generated: f.generated, k: 3)
        XCTAssertEqual(pr.precision, f.precision, accuracy: 1e-12)
        XCTAssertEqual(pr.recall, f.recall, accuracy: 1e-12)
        // A set is entirely inside its own manifold.
        XCTAssertEqual(precisionRecall(real: f.real, generated: f.real).precision, 1)
        let estimate = frechetDistanceEstimate(real: f.real, generated: f.generated)
        XCTAssertEqual(estimate.value, f.frechet_distance, accuracy: 1e-4 * f.frechet_distance)
        XCTAssertGreaterThan(estimate.standardError, 0)
    }

    func testStandardErrors() {
        let p = Estimate.proportion(30, of: 40)
        XCTAssertEqual(p.value, 0.75)
        XCTAssertEqual(p.standardError, (0.75 * 0.25 / 40).squareRoot(), accuracy: 1e-15)
        let m = meanOverPrompts([1, 0.5, 0.75, 1])
        XCTAssertEqual(m.value, 0.8125)
        XCTAssertEqual(m.standardError, (0.0572916666 / 4).squareRoot(), accuracy: 1e-8)
        XCTAssertTrue(Estimate(0.9, standardError: 0.01).differs(from: Estimate(0.8, standardError: 0.01)))
        XCTAssertFalse(Estimate(0.9, standardError: 0.05).differs(from: Estimate(0.8, standardError: 0.05)))
    }

    /// The ablation feeds the decoder what it claims: the learned null embedding, the caption's CLIP text embedding, or the prior's sample.
    func testTheAblationConditionsGiveTheDecoderWhatTheyClaim() throws {
        let pipeline = try UnCLIPPipeline(directory: try XCTUnwrap(EmbeddedModel.url))
        pipeline.keepLoaded = true
        var given: [Tensor] = []
        pipeline.trace = { name, t in if name == "image_embeddings" { given.append(t) } }
        var c = ShapesEvaluationConfiguration()
        c.promptCount = 1
        c.imagesPerPrompt = 2
        c.sampling = pipeline.defaultOptions
        c.sampling.priorSteps = 3; c.sampling.decoderSteps = 3; c.sampling.superResSteps = 2
        let caption = ShapesWorld(seed: c.promptSeed).scene(at: 0).caption
        let text = try pipeline.textEmbeddings(of: [caption])
        let e = text.shape[1]
        for source in [ImageEmbeddingSource.none, .textEmbedding, .prior] {
            given = []
            c.embeddings = source
            let report = try evaluateShapes(pipeline: pipeline, configuration: c)
            XCTAssertEqual(report.features.count, 2)
            let z = try XCTUnwrap(given.last, "\(source)")
            XCTAssertEqual(z.shape, [2, e], "\(source): one embedding per image")
            switch source {
            case .none:
                // The learned null embedding the decoder's dropout trains, twice (not zeros: it is trained).
                let null = try pipeline.nullImageEmbeddings(1).toArray()
                XCTAssertEqual(z.toArray(), null + null)
                XCTAssertFalse(null.allSatisfy { $0 == 0 })
            case .textEmbedding: XCTAssertEqual(z.toArray(), text.toArray() + text.toArray())
            default:
                // The prior's sample: an image embedding, nearer the caption than zero is, and not the text itself.
                XCTAssertNotEqual(z.toArray(), text.toArray() + text.toArray())
                XCTAssertGreaterThan(cosineSimilarity(z, row: 0, text, row: 0), 0.2)
            }
        }
    }
}
