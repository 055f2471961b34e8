import Foundation
import XCTest
@testable import UnCLIPModels

/// Loading diffusers-layout directories: variants, shards, and errors that name what is wrong.
final class LoadingTests: XCTestCase {
    static let parity = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/parity")

    /// A scratch copy of a fixture pipeline that a test may break.
    func scratchCopy(_ name: String) throws -> URL {
        let dst = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-loading-\(name)-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: Self.parity.appendingPathComponent(name), to: dst)
        addTeardownBlock { try? FileManager.default.removeItem(at: dst) }
        return dst
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body() } catch { return "\(error)" }
        XCTFail("expected an error")
        return ""
    }

    func testSamplingDefaultsComeFromTheDirectory() throws {
        let dir = try scratchCopy("tiny_karlo_structure")
        XCTAssertEqual(try SamplingOptions(defaultsOf: PipelineDirectory(dir)).decoderGuidance, 8)  // diffusers'
        let file = dir.appendingPathComponent(SamplingOptions.defaultsFile)
        try Data(#"{"decoder_guidance_scale": 3, "prior_num_inference_steps": 10}"#.utf8).write(to: file)
        let o = try SamplingOptions(defaultsOf: PipelineDirectory(dir))
        XCTAssertEqual(o.decoderGuidance, 3)
        XCTAssertEqual(o.priorSteps, 10)
        XCTAssertEqual(o.priorGuidance, 4)
        try Data(#"{"decoder_guidance": 3}"#.utf8).write(to: file)
        XCTAssertTrue(message { _ = try SamplingOptions(defaultsOf: PipelineDirectory(dir)) }.contains("decoder_guidance"))
        try Data(#"{"decoder_num_inference_steps": 1}"#.utf8).write(to: file)
        let m = message { _ = try SamplingOptions(defaultsOf: PipelineDirectory(dir)) }
        XCTAssertTrue(m.contains("decoder steps"), m)
        try Data("[1, 2".utf8).write(to: file)
        XCTAssertTrue(message { _ = try SamplingOptions(defaultsOf: PipelineDirectory(dir)) }.contains(SamplingOptions.defaultsFile))
    }

    func testFP16VariantGivesTheSameModelOutputs() throws {
        // The tiny_variation weights are fp16-representable, so the fp16 files must load to identical fp32 values.
        let dir = try PipelineDirectory(Self.parity.appendingPathComponent("tiny_variation"))
        let full = try dir.loadDecoder(), half = try dir.loadDecoder(variant: "fp16")
        for ((k1, a), (k2, b)) in zip(full.namedParameters(), half.namedParameters()) {
            XCTAssertEqual(k1, k2)
            XCTAssertEqual(a.toArray(), b.toArray(), k1)
        }
        XCTAssertThrowsError(try dir.loadDecoder(variant: "bf16")) { error in
            XCTAssertTrue("\(error)".contains("variant bf16"), "\(error)")
        }
    }

    func testShardedComponentsLoad() throws {
        // tiny_karlo_structure's decoder and tiny_real_vocab's text encoder are saved as shards with an index.
        let karlo = try PipelineDirectory(Self.parity.appendingPathComponent("tiny_karlo_structure"))
        XCTAssertTrue(try karlo.weights("decoder") is ShardedSafeTensors)
        XCTAssertEqual(try karlo.loadDecoder().namedParameters().count, 716)
        let vocab = try PipelineDirectory(Self.parity.appendingPathComponent("tiny_real_vocab"))
        XCTAssertTrue(try vocab.weights("text_encoder") is ShardedSafeTensors)
        _ = try vocab.loadTextEncoder()
    }

    func testMissingThingsAreNamed() throws {
        XCTAssertTrue(message { _ = try PipelineDirectory(URL(fileURLWithPath: "/nonexistent/karlo")) }.contains("/nonexistent/karlo"))
        let dir = try scratchCopy("tiny_diffusers")
        try FileManager.default.removeItem(at: dir.appendingPathComponent("prior/diffusion_pytorch_model.safetensors"))
        let m = message { _ = try PipelineDirectory(dir).loadPrior() }
        XCTAssertTrue(m.contains("prior") && m.contains("weights"), m)
        try FileManager.default.removeItem(at: dir.appendingPathComponent("decoder"))
        XCTAssertTrue(message { _ = try PipelineDirectory(dir).loadDecoder() }.contains("decoder"))
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model_index.json"))
        XCTAssertTrue(message { _ = try PipelineDirectory(dir) }.contains("model_index.json"))
    }

    func testPickleWeightsAreRefusedWithAHint() throws {
        let dir = try scratchCopy("tiny_diffusers")
        let prior = dir.appendingPathComponent("prior")
        try FileManager.default.moveItem(at: prior.appendingPathComponent("diffusion_pytorch_model.safetensors"),
                                         to: prior.appendingPathComponent("diffusion_pytorch_model.bin"))
        XCTAssertTrue(message { _ = try PipelineDirectory(dir).loadPrior() }.contains("safetensors"))
    }

    func testUnsupportedConfigurationIsNamed() throws {
        let dir = try scratchCopy("tiny_diffusers")
        let config = dir.appendingPathComponent("decoder/config.json")
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: config)) as! [String: Any]
        object["down_block_types"] = ["ResnetDownsampleBlock2D", "CrossAttnDownBlock2D"]
        try JSONSerialization.data(withJSONObject: object).write(to: config)
        let m = message { _ = try PipelineDirectory(dir).loadDecoder() }
        XCTAssertTrue(m.contains("down_block_types") && m.contains("CrossAttnDownBlock2D"), m)

        object["down_block_types"] = ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"]
        object["addition_embed_type"] = "text"
        try JSONSerialization.data(withJSONObject: object).write(to: config)
        XCTAssertTrue(message { _ = try PipelineDirectory(dir).loadDecoder() }.contains("addition_embed_type"))
    }

    func testWrongShapesAreNamed() throws {
        let dir = try scratchCopy("tiny_diffusers")
        let config = dir.appendingPathComponent("text_proj/config.json")
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: config)) as! [String: Any]
        object["time_embed_dim"] = 64
        try JSONSerialization.data(withJSONObject: object).write(to: config)
        let m = message { _ = try PipelineDirectory(dir).loadTextProj() }
        XCTAssertTrue(m.contains("embedding_proj.weight") && m.contains("[64, 32]"), m)
    }

    func testSeededNoiseIsReproducibleAndCancellationStops() throws {
        let pipeline = try UnCLIPPipeline(directory: Self.parity.appendingPathComponent("tiny_diffusers"))
        var options = SamplingOptions()
        options.priorSteps = 2; options.decoderSteps = 2; options.superResSteps = 2
        var a = SeededNoise(seed: 3), b = SeededNoise(seed: 3)
        let x = try pipeline.generate(prompts: ["horse"], options: options, noise: &a)
        let y = try pipeline.generate(prompts: ["horse"], options: options, noise: &b)
        XCTAssertEqual(x.toArray(), y.toArray())
        var c = SeededNoise(seed: 3)
        XCTAssertThrowsError(try pipeline.generate(prompts: ["horse"], options: options, noise: &c) { $0.stage != .decoder }) {
            XCTAssertTrue($0 is PipelineCancelled)
        }
        options.priorSteps = 1
        XCTAssertThrowsError(try pipeline.generate(prompts: ["horse"], options: options, noise: &c)) {
            XCTAssertTrue("\($0)".contains("prior steps"))
        }
    }
}
