import Foundation
import XCTest
@testable import UnCLIPModels
import UnCLIPImage

/// Stage-by-stage parity with diffusers on every case under Fixtures/parity (made by Scripts/make_parity_fixtures.py).
///
/// Each case holds a diffusers-layout pipeline, the recorded noise and every intermediate of the reference run.
/// fp32 intermediates must agree to 1e-4 (max abs); the final uint8 image to within one level.
final class ParityTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/parity")

    static func cases() throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: root, includingPropertiesForKeys: nil)
            .filter { FileManager.default.fileExists(atPath: $0.appendingPathComponent("case.json").path) }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    func testFixturesArePresent() throws {
        XCTAssertGreaterThanOrEqual(try Self.cases().count, 4, "parity fixture cases missing under \(Self.root.path)")
    }

    func testEveryCase() throws {
        for dir in try Self.cases() {
            do { try runCase(dir) } catch { XCTFail("\(dir.lastPathComponent): \(error)") }
        }
    }

    func runCase(_ dir: URL) throws {
        let name = dir.lastPathComponent
        let info = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("case.json"))) as! [String: Any]
        let inputs = info["inputs"] as! [String: Any]
        let pipelineDir = dir.appendingPathComponent(info["pipeline_dir"] as? String ?? ".").standardizedFileURL
        let expected = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("intermediates.safetensors"))
        var noise = try RecordedNoise(contentsOf: dir.appendingPathComponent("noise.safetensors"))

        worstIntermediate = 0
        let pipeline = try UnCLIPPipeline(directory: pipelineDir)
        var seen: [String: Tensor] = [:]
        pipeline.trace = { key, t in seen[key] = t.clone() }

        var options = SamplingOptions()
        options.imagesPerPrompt = inputs["num_images_per_prompt"] as? Int ?? 1
        options.decoderSteps = inputs["decoder_num_inference_steps"] as? Int ?? 25
        options.superResSteps = inputs["super_res_num_inference_steps"] as? Int ?? 7
        options.decoderGuidance = Float(inputs["decoder_guidance_scale"] as? Double ?? 8)
        let image: Tensor
        if (info["pipeline"] as? String) == "UnCLIPImageVariationPipeline" {
            let pixels: Tensor
            if (inputs["image"] as? String) == "pixel_values" {
                pixels = try expected.tensor("image_encoder.pixel_values")
            } else {
                let png = try RGBImage(contentsOf: dir.appendingPathComponent("input.png"))
                let processor = try CLIPImageProcessor(configURL: pipelineDir.appendingPathComponent("feature_extractor/preprocessor_config.json"))
                pixels = processor([png])
                try compare("\(name): image_encoder.pixel_values", pixels, try expected.tensor("image_encoder.pixel_values"), tolerance: 1e-6)
            }
            let embeds = try pipeline.imageEmbeddings(pixelValues: pixels)
            try compare("\(name): image_encoder.image_embeds", embeds, try expected.tensor("image_encoder.image_embeds"), tolerance: 1e-4)
            image = try pipeline.vary(imageEmbeddings: embeds, options: options, noise: &noise)
        } else {
            options.priorSteps = inputs["prior_num_inference_steps"] as? Int ?? 25
            options.priorGuidance = Float(inputs["prior_guidance_scale"] as? Double ?? 4)
            let prompts = (inputs["prompt"] as? [String]) ?? [(inputs["prompt"] as? String) ?? ""]
            image = try pipeline.generate(prompts: prompts, options: options, noise: &noise)
        }

        // Every recorded intermediate that the Swift pipeline also produces must match.
        var compared = 0
        for key in expected.names where !key.hasPrefix("image_encoder.") && key != "image_uint8" {
            guard let actual = seen[key] else { continue }
            try compare("\(name): \(key)", actual, try expected.tensor(key), tolerance: 1e-4)
            compared += 1
        }
        let missing = expected.names.filter { seen[$0] == nil && !$0.hasPrefix("image_encoder.") && $0 != "image_uint8" }
        XCTAssertTrue(missing.isEmpty, "\(name): intermediates not produced by the Swift pipeline: \(missing)")
        XCTAssertGreaterThan(compared, 10, "\(name): too few intermediates compared")

        // Final uint8 image: NumPy rounds half to even.
        let reference = try expected.tensor("image_uint8")
        XCTAssertEqual(image.shape, reference.shape, "\(name): final image shape")
        var worst: Float = 0
        for i in 0..<min(image.count, reference.count) {
            worst = max(worst, abs((image.data[i] * 255).rounded(.toNearestOrEven) - reference.data[i]))
        }
        XCTAssertLessThanOrEqual(worst, 1, "\(name): final uint8 image differs by \(worst) levels")
        print("parity \(name): \(compared) intermediates within tolerance (worst \(worstIntermediate)), final image \(image.shape) off by ≤ \(worst) levels")
    }

    private var worstIntermediate: Float = 0

    func compare(_ label: String, _ actual: Tensor, _ expected: Tensor, tolerance: Float) throws {
        guard actual.shape == expected.shape else {
            XCTFail("\(label): shape \(actual.shape), expected \(expected.shape)")
            return
        }
        var worst: Float = 0
        for i in 0..<actual.count { worst = max(worst, abs(actual.data[i] - expected.data[i])) }
        XCTAssertLessThanOrEqual(worst, tolerance, "\(label): max abs error \(worst)")
        worstIntermediate = max(worstIntermediate, worst)
    }
}
