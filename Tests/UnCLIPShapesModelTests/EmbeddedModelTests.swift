import Foundation
import XCTest
import UnCLIPEvaluation
import UnCLIPModels
import UnCLIPShapesModel

/// Regression tests of the shipped ShapesWorld model: it loads, and its images parse back to their captions.
final class EmbeddedModelTests: XCTestCase {
    func pipeline() throws -> UnCLIPPipeline {
        let url = try XCTUnwrap(EmbeddedModel.url, "the embedded model is missing from the package resources")
        let pipeline = try UnCLIPPipeline(directory: url)
        pipeline.keepLoaded = true
        return pipeline
    }

    func testEveryComponentLoads() throws {
        let dir = try pipeline().directory
        for name in ["text_encoder", "image_encoder", "prior", "text_proj", "decoder", "super_res_first", "super_res_last"] {
            XCTAssertTrue(dir.has(name), name)
        }
        _ = try dir.loadTextEncoder(); _ = try dir.loadImageEncoder(); _ = try dir.loadPrior()
        _ = try dir.loadTextProj(); _ = try dir.loadDecoder(); _ = try dir.loadSuperRes("super_res_first")
    }

    func testImagesMatchTheirCaptions() throws {
        let pipeline = try pipeline()
        // Simple prompts the model draws reliably; a broken stage (CLIP, prior, decoder, upsampling) fails them.
        let prompts = ["a red circle", "a blue square", "a green triangle", "a yellow cross", "a purple circle", "an orange square"]
        var correct = 0
        var failures: [String] = []
        for (i, prompt) in prompts.enumerated() {
            var noise = SeededNoise(seed: UInt64(100 + i))
            let image = UnCLIPPipeline.images(from: try pipeline.generate(prompts: [prompt], noise: &noise))[0]
            XCTAssertEqual(image.width, 128)
            let result = try CaptionCheck.evaluate(caption: prompt, image: image)
            if result.correct { correct += 1 } else { failures.append("\(prompt): found \(result.detected)") }
        }
        XCTAssertGreaterThanOrEqual(correct, 5, "only \(correct) of \(prompts.count) images match: \(failures)")
    }

    func testSameSeedSameImage() throws {
        let pipeline = try pipeline()
        var options = SamplingOptions()
        options.priorSteps = 5; options.decoderSteps = 5; options.superResSteps = 3
        var a = SeededNoise(seed: 9), b = SeededNoise(seed: 9)
        let x = try pipeline.generate(prompts: ["a red circle above a blue square"], options: options, noise: &a)
        let y = try pipeline.generate(prompts: ["a red circle above a blue square"], options: options, noise: &b)
        XCTAssertEqual(x.toArray(), y.toArray())
    }
}
