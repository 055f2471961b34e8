import Foundation
import XCTest
import UnCLIPEvaluation
import UnCLIPImage
import UnCLIPModels
import UnCLIPShapesWorld
import UnCLIPShapesModel

/// Regression tests of the shipped ShapesWorld model: it loads, draws deterministically, and still draws the picture
/// it drew when it was trained (a broken stage — tokenizer, CLIP, prior, decoder, upsampling — changes it).
final class EmbeddedModelTests: XCTestCase {
    static let reference = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("reference.png")
    static let reference512 = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("reference-512.png")

    func pipeline() throws -> UnCLIPPipeline {
        let url = try XCTUnwrap(EmbeddedModel.url, "the embedded model is missing from the package resources")
        let pipeline = try UnCLIPPipeline(directory: url)
        pipeline.keepLoaded = true
        return pipeline
    }

    /// The reference settings: the model's default guidance, fewer steps to keep the test quick.
    static var options: SamplingOptions {
        var o = (try? SamplingOptions(defaultsOf: PipelineDirectory(EmbeddedModel.url!))) ?? SamplingOptions()
        o.priorSteps = 10; o.decoderSteps = 10; o.superResSteps = 7
        return o
    }

    func draw(_ pipeline: UnCLIPPipeline) throws -> RGBImage {
        var noise = SeededNoise(seed: 7)
        return UnCLIPPipeline.images(from: try pipeline.generate(prompts: ["a red circle above a blue square"], options: Self.options, noise: &noise))[0]
    }

    func testEveryComponentLoads() throws {
        let dir = try XCTUnwrap(try pipeline().directory)
        for name in ["text_encoder", "image_encoder", "prior", "text_proj", "decoder", "super_res_first", "super_res_last",
                     "super_res_2_first", "super_res_2_last", "super_res_2_scheduler"] {
            XCTAssertTrue(dir.has(name), name)
        }
        XCTAssertEqual(try dir.loadDecoder().config.outChannels, 6)
        // Loaded for inference: final weights, whose reordered and bf16 copies the engine keeps without re-checking.
        XCTAssertTrue(try dir.loadDecoder().parameters().allSatisfy { $0.storage.isReadOnly })
        _ = try dir.loadTextEncoder(); _ = try dir.loadImageEncoder(); _ = try dir.loadPrior()
        _ = try dir.loadTextProj(); _ = try dir.loadSuperRes("super_res_first")
    }

    /// The shipped autoregressive prior (the paper's §2.1) draws the caption it is given, and diffusers' layout is kept:
    /// `prior` stays the diffusion prior.
    func testTheAutoregressivePriorDrawsTheCaption() throws {
        let pipeline = try pipeline()
        XCTAssertTrue(pipeline.hasAutoregressivePrior)
        let dir = try XCTUnwrap(pipeline.directory)
        XCTAssertEqual(dir.className(of: "prior"), "PriorTransformer")
        let ar = try dir.loadAutoregressivePrior()
        XCTAssertEqual(ar.config.embeddingDim, 128)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(ar.config.explainedVariance), 0.99)
        var o = Self.options
        o.prior = .autoregressive
        o.imagesPerPrompt = 4
        var noise = SeededNoise(seed: 3)
        let images = UnCLIPPipeline.images(from: try pipeline.generate(prompts: ["a red circle"], options: o, noise: &noise))
        let right = try images.filter { try CaptionCheck.evaluate(caption: "a red circle", image: $0, parser: ShapesParser()).correct }.count
        XCTAssertGreaterThanOrEqual(right, 3, "the autoregressive prior drew \(right) of 4 red circles")
    }

    func testDrawsTheReferenceImage() throws {
        let pipeline = try pipeline()
        let image = try draw(pipeline)
        XCTAssertEqual(image.width, 128)
        XCTAssertEqual(image.height, 128)
        if ProcessInfo.processInfo.environment["UNCLIP_WRITE_REFERENCE"] == "1" { try image.writePNG(to: Self.reference) }
        let reference = try RGBImage(contentsOf: Self.reference)
        let diffs = zip(image.pixels, reference.pixels).map { abs(Int($0) - Int($1)) }
        let mean = Double(diffs.reduce(0, +)) / Double(diffs.count)
        let far = diffs.filter { $0 > 2 }.count
        // Same seed and settings give the same bits on one machine; allow for a last-bit difference of the
        // floating-point kernels on another CPU, not for a different picture.
        XCTAssertLessThan(mean, 0.5, "mean difference from the reference image: \(mean) levels")
        XCTAssertLessThan(far, diffs.count / 100, "\(far) values differ by more than 2 levels")
        // A broken pipeline tends to collapse to a flat image: the reference has real structure.
        let levels = Set(stride(from: 0, to: image.pixels.count, by: 3).map { image.pixels[$0] })
        XCTAssertGreaterThan(levels.count, 50)
    }

    /// The 512 stage: `--size 512` runs the second upsampler on the 128 image, and draws what it drew when shipped.
    func testDrawsThe512ReferenceImage() throws {
        let pipeline = try pipeline()
        XCTAssertEqual(pipeline.imageSizes, [32, 128, 512])
        XCTAssertEqual(pipeline.defaultOptions.size, 128, "unclip_defaults.json: 128 unless asked")
        var o = Self.options
        o.size = 512
        var noise = SeededNoise(seed: 7)
        let image = UnCLIPPipeline.images(from: try pipeline.generate(prompts: ["a red circle above a blue square"], options: o, noise: &noise))[0]
        XCTAssertEqual(image.width, 512)
        if ProcessInfo.processInfo.environment["UNCLIP_WRITE_REFERENCE"] == "1" { try image.writePNG(to: Self.reference512) }
        let reference = try RGBImage(contentsOf: Self.reference512)
        let diffs = zip(image.pixels, reference.pixels).map { abs(Int($0) - Int($1)) }
        XCTAssertLessThan(Double(diffs.reduce(0, +)) / Double(diffs.count), 0.5)
        XCTAssertLessThan(diffs.filter { $0 > 2 }.count, diffs.count / 100)
        // The first 128 stages are the 128 reference's: its area reduction stays close to the 128 image.
        let small = try draw(pipeline), shrunk = try image.boxDownsampled(factor: 4)
        let change = Double(zip(small.pixels, shrunk.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +)) / Double(small.pixels.count)
        XCTAssertLessThan(change, 4, "mean change of the 128 image by the 512 stage: \(change) levels")
    }

    /// A handful of prompts drawn at 512 (the model's other settings, seed 0) parse back right, read at 512.
    func testA512HandfulParsesBack() throws {
        let pipeline = try pipeline()
        var options = pipeline.defaultOptions
        options.size = 512
        var wrong: [String] = []
        for prompt in ["a red circle above a blue square", "a green triangle", "a purple cross to the right of a yellow circle"] {
            var noise = SeededNoise(seed: 0)
            let image = UnCLIPPipeline.images(from: try pipeline.generate(prompts: [prompt], options: options, noise: &noise))[0]
            XCTAssertEqual(image.width, 512)
            let result = try CaptionCheck.evaluate(caption: prompt, image: image)
            if !result.correct { wrong.append("\(prompt): found \(result.detected)") }
        }
        XCTAssertLessThanOrEqual(wrong.count, 1, "\(wrong)")
    }

    func testSameSeedSameImage() throws {
        let pipeline = try pipeline()
        XCTAssertEqual(try draw(pipeline), try draw(pipeline))
    }

    /// What `unclip generate PROMPT` draws (the model's default settings, seed 0), parsed back against its caption.
    /// The prompts were fixed before the run that checked them: the README's and five more, one and two objects (with
    /// the decoder at 20 000 steps the README's was the one miss, its blue square drawn as a circle).
    func testAHandfulOfPromptsParseBackCorrectly() throws {
        let pipeline = try pipeline()
        let options = pipeline.defaultOptions
        let prompts = ["a red circle above a blue square", "a green triangle", "an orange square",
                       "a purple cross to the right of a yellow circle", "a large blue circle", "a red triangle and a green square"]
        var wrong: [String] = []
        for prompt in prompts {
            var noise = SeededNoise(seed: 0)
            let image = UnCLIPPipeline.images(from: try pipeline.generate(prompts: [prompt], options: options, noise: &noise))[0]
            let result = try CaptionCheck.evaluate(caption: prompt, image: image)
            XCTAssertEqual(result.expected.objects.count, prompt.contains(" a ") ? 2 : 1, prompt)
            if !result.correct { wrong.append("\(prompt): found \(result.detected)") }
        }
        // 95 % of one-object and 92 % of two-object images are right (docs/evaluation.md); the README's prompt is one
        // of the harder captions (7 of seeds 0–7): allow one miss among the six.
        XCTAssertLessThanOrEqual(wrong.count, 1, "\(wrong)")
    }

    /// bf16 (`Precision.bf16`) draws what fp32 draws: each stage's output of one seeded run at both precisions, the
    /// errors printed (docs/benchmarks-karlo.md quotes them) and bounded; the fp32 run is the reference image's.
    func testBF16StagesStayCloseToFP32() throws {
        try XCTSkipUnless(Precision.hardwareSupportsBF16, "this CPU has no avx512_bf16 / AMX")
        let pipeline = try pipeline()
        var o = Self.options
        o.imagesPerPrompt = 4
        func run(_ precision: Precision) throws -> [String: Tensor] {
            try pipeline.use(precision: precision)
            var outputs: [String: Tensor] = [:]
            pipeline.trace = { name, t in outputs[name] = t.clone() }
            defer { pipeline.trace = nil }
            var noise = SeededNoise(seed: 7)
            _ = try pipeline.generate(prompts: ["a red circle above a blue square"], options: o, noise: &noise)
            return outputs
        }
        let fp32 = try run(.fp32), bf16 = try run(.bf16)
        try pipeline.use(precision: .fp32)
        // The embedded text encoder's products are all below the size where the engine leaves sgemm for the oneDNN
        // matmul primitive (and bf16 with it): it is fp32 at either precision.
        for name in ["prompt_embeds", "text_encoder_hidden_states"] {
            XCTAssertEqual(try XCTUnwrap(bf16[name], name).toArray(), try XCTUnwrap(fp32[name], name).toArray(), name)
        }
        // Stage outputs and the bound on max |Δ| / max |fp32| (mean |Δ| / mean |fp32| must be a tenth of it).
        let stages: [(String, Double)] = [("image_embeddings", 0.05), ("image_small", 0.2), ("image", 0.2)]
        for (name, bound) in stages {
            let a = try XCTUnwrap(bf16[name], name).toArray(), b = try XCTUnwrap(fp32[name], name).toArray()
            XCTAssertEqual(a.count, b.count, name)
            var maxD = 0.0, sumD = 0.0, maxR = 0.0, sumR = 0.0
            for (x, y) in zip(a, b) {
                maxD = max(maxD, Double(abs(x - y))); sumD += Double(abs(x - y))
                maxR = max(maxR, Double(abs(y))); sumR += Double(abs(y))
            }
            let maxRel = maxD / maxR, meanRel = sumD / sumR
            print("bf16 against fp32, \(name): max rel \(String(format: "%.2e", maxRel)), mean rel \(String(format: "%.2e", meanRel))")
            XCTAssertLessThan(maxRel, bound, name)
            XCTAssertLessThan(meanRel, bound / 10, name)
            XCTAssertGreaterThan(maxRel, 0, "\(name): bf16 left no trace; did it run?")
        }
    }
}
