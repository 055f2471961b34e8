import Foundation
import UnCLIPImage
import UnCLIPModels
import UnCLIPShapesWorld
import UnCLIPTensor
import XCTest
@testable import UnCLIPTraining

/// A dataset whose listed entries fail, to check that bad data is reported and skipped.
private struct FlakyDataset: CaptionedImageDataset {
    let base: ShapesWorldDataset
    let failing: Set<Int>
    var count: Int { base.count }
    func sample(_ index: Int) throws -> CaptionedImage {
        if failing.contains(index) { throw DatasetError.unreadableImage(file: "entry-\(index).png", reason: "corrupt test entry") }
        return try base.sample(index)
    }
}

final class TrainerTests: XCTestCase {
    private static let world = try! ShapesWorldDataset(seed: 7, count: 64)

    private func temporaryDirectory(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-train-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// A folder holding a trained tokenizer and a tiny CLIP (shared by the prior and decoder tests).
    private static let clipFolder: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-train-clip-\(UUID().uuidString)")
        var c = TrainAllConfiguration.smokeTest
        try! c.tokenizer.run(dataset: world, out: url)
        c.clip.training.steps = 3
        try! c.clip.run(dataset: world, out: url)
        return url
    }()

    private func copyOfCLIPFolder(_ name: String) throws -> URL {
        let url = try temporaryDirectory(name)
        for component in ["tokenizer", "text_encoder", "image_encoder", "feature_extractor", "model_index.json"] {
            try FileManager.default.copyItem(at: Self.clipFolder.appendingPathComponent(component), to: url.appendingPathComponent(component))
        }
        return url
    }

    /// Losses from a stage's JSONL log.
    private func losses(_ out: URL, stage: Stage) throws -> [Float] {
        let text = try String(contentsOf: out.appendingPathComponent("checkpoints/\(stage.key)/loss.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            return (object["loss"] as! NSNumber).floatValue
        }
    }

    /// The first loss against the mean of the last four: training on a tiny fixed set must bring it down clearly.
    private func assertLossFalls(_ values: [Float], by factor: Float, file: StaticString = #filePath, line: UInt = #line) {
        let tail = values.suffix(4).reduce(0, +) / 4
        XCTAssert(tail < values[0] * factor, "loss did not fall: first \(values[0]), last four \(values.suffix(4))", file: file, line: line)
    }

    /// Schedules that overfit 8 fixed samples quickly.
    private func overfit(_ schedule: inout TrainingSchedule, steps: Int, lr: Float) {
        schedule.steps = steps
        schedule.batchSize = 8
        schedule.learningRate = lr
        schedule.minLearningRate = lr
        schedule.warmupSteps = 0
        schedule.checkpointEvery = steps
    }

    private var eight: ShapesWorldDataset { try! ShapesWorldDataset(seed: 3, count: 8) }

    // MARK: Tokenizer

    func testBPEOutputLoadsInCLIPTokenizerAndRoundTrips() throws {
        let out = try temporaryDirectory("bpe")
        let vocabulary = try TrainAllConfiguration.smokeTest.tokenizer.run(dataset: Self.world, out: out)
        let tokenizer = try CLIPTokenizer(directory: out.appendingPathComponent("tokenizer"))
        XCTAssertEqual(tokenizer.modelMaxLength, 24)
        XCTAssertEqual(tokenizer.bosTokenID, vocabulary.tokens.count - 2)
        XCTAssertEqual(tokenizer.eosTokenID, vocabulary.tokens.count - 1)
        XCTAssertEqual(tokenizer.vocabulary["!"], 0, "CLIP's layout starts with the byte symbols in bytes_to_unicode order")
        XCTAssertEqual(tokenizer.vocabulary["!</w>"], 256)
        for i in 0..<Self.world.count {
            let caption = try Self.world.scene(i).caption
            let ids = tokenizer.encode(caption)
            XCTAssertEqual(ids.first, tokenizer.bosTokenID)
            XCTAssertEqual(ids.last, tokenizer.eosTokenID)
            XCTAssertLessThanOrEqual(ids.count, 24)
            XCTAssertEqual(tokenizer.decode(ids), caption)
        }
        // Frequent words become single tokens.
        XCTAssertEqual(tokenizer.tokenize("a"), [tokenizer.vocabulary["a</w>"]!])
        XCTAssertEqual(tokenizer.decode(tokenizer.tokenize("an unseen zebra")), "an unseen zebra")
        // The pad token is EOS, so padding leaves the pooled EOS position alone.
        XCTAssertEqual(tokenizer(["a"], padToLength: 24).ids[0].last, tokenizer.eosTokenID)
    }

    // MARK: Losses fall

    func testCLIPLossFalls() throws {
        // A plain contrastive CLIP (the relation recipe switched off as JSON would: ShapesWorld's caption recipe
        // named, its parts off).
        let out = try temporaryDirectory("clip")
        var c = TrainAllConfiguration.smokeTest
        try c.tokenizer.run(dataset: eight, out: out)
        let plain = try JSONDecoder().decode(CLIPTrainingConfiguration.self, from: Data("""
            {"initialization": "pytorch", "mirror_pairs": false, "hard_negatives": false, "attribute_negatives": false,
             "binding_negatives": false, "image_view_weight": 0}
            """.utf8))
        c.clip = c.clip.defaultingCaptionRecipe(to: .shapesWorld)
        c.clip.initialization = plain.initialization
        c.clip.mirrorPairs = plain.mirrorPairs
        c.clip.hardNegatives = plain.hardNegatives
        c.clip.attributeNegatives = plain.attributeNegatives
        c.clip.bindingNegatives = plain.bindingNegatives
        c.clip.imageViewWeight = plain.imageViewWeight
        XCTAssertEqual(c.clip.initialization, .pytorch)
        XCTAssertFalse(c.clip.mirrorPairs || c.clip.hardNegatives || c.clip.attributeNegatives || c.clip.bindingNegatives)
        overfit(&c.clip.training, steps: 30, lr: 2e-3)
        let outcome = try c.clip.run(dataset: eight, out: out)
        XCTAssertTrue(outcome.exported)
        assertLossFalls(try losses(out, stage: .clip), by: 0.7)
        let directory = try PipelineDirectory(out)
        let text = try directory.loadTextEncoder()
        XCTAssertEqual(text.config.eosTokenId, try directory.loadTokenizer().eosTokenID)
        XCTAssertEqual(try directory.loadImageEncoder().config.imageSize, 32)
        let processor = try CLIPImageProcessor(configURL: out.appendingPathComponent("feature_extractor/preprocessor_config.json"))
        XCTAssertEqual(processor.cropWidth, 32)
    }

    func testRelationRecipeTrains() throws {
        // docs/training.md's relation recipe: CLIP's initialisation and the image-view term are the defaults (an empty
        // JSON section gives them), the ShapesWorld caption recipe (mirror pairs, hard, attribute and binding
        // negatives) is named by `caption_recipe` or by training on ShapesWorld; all run, and the loss falls.
        let out = try temporaryDirectory("clip-relations")
        var c = TrainAllConfiguration.smokeTest
        try c.tokenizer.run(dataset: eight, out: out)
        let recipe = try JSONDecoder().decode(CLIPTrainingConfiguration.self, from: Data("{}".utf8))
        XCTAssertEqual(recipe.initialization, .clip)
        XCTAssertTrue(recipe.mirrorPairs && recipe.hardNegatives && recipe.attributeNegatives && recipe.bindingNegatives)
        XCTAssertNil(recipe.captionRecipe, "no caption rewrites unless asked")
        XCTAssertEqual(recipe.defaultingCaptionRecipe(to: .shapesWorld).captionRecipe, .shapesWorld)
        let named = try JSONDecoder().decode(CLIPTrainingConfiguration.self, from: Data(#"{"caption_recipe": "shapesworld"}"#.utf8))
        XCTAssertEqual(named.captionRecipe, .shapesWorld)
        let none = try JSONDecoder().decode(CLIPTrainingConfiguration.self, from: Data(#"{"caption_recipe": "none"}"#.utf8))
        XCTAssertEqual(none.defaultingCaptionRecipe(to: .shapesWorld).captionRecipe, CLIPCaptionRecipe.none, "a named recipe is kept")
        XCTAssertThrowsError(try JSONDecoder().decode(CLIPTrainingConfiguration.self, from: Data(#"{"caption_recipe": "photos"}"#.utf8)))
        XCTAssertEqual(recipe.imageViewWeight, 1)
        XCTAssertEqual(recipe.training.steps, 2400)
        XCTAssertEqual(c.clip.initialization, .clip)
        c.clip = c.clip.defaultingCaptionRecipe(to: .shapesWorld)
        XCTAssertTrue(c.clip.mirrorPairs && c.clip.hardNegatives && c.clip.attributeNegatives && c.clip.bindingNegatives)
        overfit(&c.clip.training, steps: 30, lr: 2e-3)
        XCTAssertTrue(try c.clip.run(dataset: eight, out: out).exported)
        assertLossFalls(try losses(out, stage: .clip), by: 0.8)
        XCTAssertThrowsError(try JSONDecoder().decode(CLIPTrainingConfiguration.self, from: Data(#"{"initialization": "xavier"}"#.utf8)))

        // Fine-tuning: `initialize_from` starts from the finished towers (its first loss is the trained one, not
        // chance), with the binding negatives on.
        let tuned = try temporaryDirectory("clip-fine-tune")
        try c.tokenizer.run(dataset: eight, out: tuned)
        let options = try JSONDecoder().decode(CLIPTrainingConfiguration.self, from: Data("""
            {"initialize_from": "\(out.path)", "binding_negatives": true, "logit_scale_init_value": 3.0}
            """.utf8))
        XCTAssertEqual(options.initializeFrom, out.path)
        XCTAssertEqual(options.logitScaleInitValue, 3.0)
        XCTAssertTrue(options.bindingNegatives)
        var fineTune = c.clip  // the same towers, now started from `out`'s
        fineTune.initializeFrom = options.initializeFrom
        fineTune.bindingNegatives = true
        fineTune.logitScaleInitValue = 3.0
        fineTune.training.steps = 3
        XCTAssertTrue(try fineTune.run(dataset: eight, out: tuned).exported)
        let scratch = try losses(out, stage: .clip), continued = try losses(tuned, stage: .clip)
        XCTAssertLessThan(continued[0], scratch[0] * 0.7, "the fine-tune must start from the trained weights")
        fineTune.initializeFrom = tuned.appendingPathComponent("missing").path
        XCTAssertThrowsError(try fineTune.run(dataset: eight, out: tuned)) { XCTAssertTrue("\($0)".contains("missing"), "\($0)") }
        var bad = CLIPTrainingConfiguration()
        bad.logitScaleInitValue = 5
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("logit_scale_init_value"), "\($0)") }
        bad = CLIPTrainingConfiguration()
        bad.viewShift = 16
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("view_shift"), "\($0)") }
    }

    func testPriorLossFalls() throws {
        let out = try copyOfCLIPFolder("prior")
        var c = TrainAllConfiguration.smokeTest.prior
        overfit(&c.training, steps: 30, lr: 2e-3)
        c.captionDropout = 0
        XCTAssertTrue(try c.run(dataset: eight, out: out).exported)
        assertLossFalls(try losses(out, stage: .prior), by: 0.6)
        let prior = try PipelineDirectory(out).loadPrior()
        XCTAssertEqual(prior.config.numEmbeddings, 24)
        XCTAssertTrue(prior.clip_std.toArray().allSatisfy { $0 > 0 }, "clip_std must come from the data")
        let scheduler = try PipelineDirectory(out).loadScheduler("prior_scheduler")
        XCTAssertEqual(scheduler.config.predictionType, .sample)
        XCTAssertEqual(scheduler.config.clipSampleRange, 5)
    }

    func testAutoregressivePriorLossFallsAndItSamplesInAPipeline() throws {
        let out = try copyOfCLIPFolder("ar_prior")
        var c = AutoregressivePriorTrainingConfiguration()
        c.heads = 2; c.headDim = 16; c.layers = 1; c.codeSamples = 16; c.buckets = 64
        overfit(&c.training, steps: 30, lr: 2e-3)
        c.captionDropout = 0
        XCTAssertTrue(try c.run(dataset: eight, out: out).exported)
        assertLossFalls(try losses(out, stage: .autoregressivePrior), by: 0.8)
        let directory = try PipelineDirectory(out)
        XCTAssertEqual(directory.className(of: "ar_prior"), "AutoregressivePriorTransformer")
        let model = try directory.loadAutoregressivePrior()
        XCTAssertEqual(model.config.numBuckets, 64)
        XCTAssertEqual(model.config.numEmbeddings, 24)
        XCTAssertLessThanOrEqual(model.config.numComponents, 16, "at most as many components as fitted samples")
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(model.config.explainedVariance), 0.99)
        // The code came from the data: unit axes, ranges that hold every training embedding.
        let q = model.quantizer
        for axis in q.components { XCTAssertEqual(axis.reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-4) }
        XCTAssertTrue(zip(q.low, q.high).allSatisfy { $0 < $1 })
        // The stage samples an embedding of CLIP's width from a caption, the same one for the same seed.
        let prior = try directory.loadPriorStage("ar_prior")
        let tokenizer = try directory.loadTokenizer(), encoder = try directory.loadTextEncoder()
        let batch = tokenizer(["a red circle"], padToLength: tokenizer.modelMaxLength)
        let encoded = withNoGrad { encoder(batch.ids) }
        let text = TextConditioning(promptEmbeds: encoded.textEmbeds, hiddenStates: encoded.lastHiddenState, mask: batch.mask)
        var options = SamplingOptions()
        options.priorGuidance = 1; options.decoderGuidance = 1
        var n1 = SeededNoise(seed: 4), n2 = SeededNoise(seed: 4)
        let a = try withNoGrad { try prior.sample(text, batch: 1, options: options, noise: &n1, observer: RunObserver()) }
        let b = try withNoGrad { try prior.sample(text, batch: 1, options: options, noise: &n2, observer: RunObserver()) }
        XCTAssertEqual(a.shape, [1, encoded.textEmbeds.shape[1]])
        XCTAssertEqual(a.toArray(), b.toArray())
        XCTAssertTrue(a.toArray().allSatisfy(\.isFinite))
        // Impossible settings are refused before any work, naming the setting.
        var bad = c
        bad.varianceKept = 0
        XCTAssertThrowsError(try bad.run(dataset: eight, out: out)) { XCTAssertTrue("\($0)".contains("variance_kept"), "\($0)") }
        XCTAssertThrowsError(try JSONDecoder().decode(AutoregressivePriorTrainingConfiguration.self, from: Data(#"{"bucket": 3}"#.utf8))) {
            XCTAssertTrue("\($0)".contains("bucket"), "\($0)")
        }
    }

    func testDecoderLossFalls() throws {
        let out = try copyOfCLIPFolder("decoder")
        var c = TrainAllConfiguration.smokeTest.decoder
        overfit(&c.training, steps: 20, lr: 2e-3)
        XCTAssertTrue(try c.run(dataset: eight, out: out).exported)
        assertLossFalls(try losses(out, stage: .decoder), by: 0.7)
        let directory = try PipelineDirectory(out)
        XCTAssertEqual(try directory.loadDecoder().config.outChannels, 6)  // ε and the learned variance
        _ = try directory.loadTextProj()
        XCTAssertEqual(try directory.loadScheduler("decoder_scheduler").config.varianceType, .learnedRange)
    }

    /// bf16 mixed-precision training of the decoder: the same run (seed, batches, timesteps) starts at the fp32
    /// run's loss up to bf16 rounding, its loss falls as fast, each log line records the precision, and the exported
    /// weights are fp32 master weights (they load and differ from the fp32 run's only by the rounding's effect).
    func testDecoderTrainsInBF16MixedPrecision() throws {
        try XCTSkipUnless(Precision.hardwareSupportsBF16, "this CPU has no avx512_bf16 / AMX")
        var c = TrainAllConfiguration.smokeTest.decoder
        overfit(&c.training, steps: 20, lr: 2e-3)
        let fp32 = try copyOfCLIPFolder("decoder-fp32"), bf16 = try copyOfCLIPFolder("decoder-bf16")
        XCTAssertTrue(try c.run(dataset: eight, out: fp32).exported)
        XCTAssertTrue(try withPrecision(.bf16, differentiating: true) { try c.run(dataset: eight, out: bf16) }.exported)
        let a = try LossLog.read(fp32.appendingPathComponent("checkpoints/decoder/loss.jsonl"))
        let b = try LossLog.read(bf16.appendingPathComponent("checkpoints/decoder/loss.jsonl"))
        XCTAssertEqual(a.map(\.precision), Array(repeating: "fp32", count: 20))
        XCTAssertEqual(b.map(\.precision), Array(repeating: "bf16", count: 20))
        XCTAssertEqual(b[0].loss, a[0].loss, accuracy: 0.02 * a[0].loss, "the first step's loss differs by more than bf16 rounding")
        XCTAssertNotEqual(b[0].loss, a[0].loss, "the bf16 run left no trace of rounding")
        assertLossFalls(b.map { Float($0.loss) }, by: 0.7)
        let tail = { (r: [LossRecord]) in r.suffix(4).map(\.loss).reduce(0, +) / 4 }
        XCTAssertEqual(tail(b), tail(a), accuracy: 0.25 * tail(a), "the loss curves part")
        XCTAssertEqual(try PipelineDirectory(bf16).loadDecoder().config.outChannels, 6)
    }

    /// The loss log's reader and its windows (mean and standard error of the raw loss), and a bad line named.
    func testLossLogWindows() throws {
        let url = try temporaryDirectory("losslog").appendingPathComponent("loss.jsonl")
        let lines = (1...6).map { #"{"step":\#($0),"loss":\#(Double($0)),"smoothed_loss":1,"lr":0.1}"# }
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        let records = try LossLog.read(url)
        XCTAssertEqual(records.map(\.step), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(records[0].precision, "fp32", "a log without the field is fp32")
        let windows = LossLog.windows(records, size: 3)
        XCTAssertEqual(windows.map(\.firstStep), [1, 4])
        XCTAssertEqual(windows.map(\.mean), [2, 5])
        // Steps 1, 2, 3: sample variance 1, standard error √(1/3).
        XCTAssertEqual(windows[0].standardError, (1.0 / 3).squareRoot(), accuracy: 1e-12)
        try (lines[0] + "\nnot json\n").write(to: url, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try LossLog.read(url)) { XCTAssertTrue("\($0)".contains("line 2"), "\($0)") }
    }

    /// The GLIDE-style baseline: the same trainer with `conditioning: caption` writes its own folders beside the
    /// unCLIP decoder, trains the null embedding it is always given, and the pipeline draws with it from the caption
    /// alone, whatever image embedding it is handed.
    func testTheGLIDEStyleDecoderTrainsBesideTheUnCLIPDecoderAndIgnoresImageEmbeddings() throws {
        let out = try copyOfCLIPFolder("glide")
        var c = TrainAllConfiguration.smokeTest.decoder
        overfit(&c.training, steps: 4, lr: 2e-3)
        XCTAssertTrue(try c.run(dataset: eight, out: out).exported)
        var glide = try JSONDecoder().decode(DecoderTrainingConfiguration.self, from: Data(#"{"conditioning": "caption"}"#.utf8))
        XCTAssertEqual(glide.captionDropout, 0.2, "GLIDE's caption dropout when none is given")
        XCTAssertEqual(try JSONDecoder().decode(DecoderTrainingConfiguration.self,
                                                from: Data(#"{"conditioning": "caption", "caption_dropout": 0.3}"#.utf8)).captionDropout, 0.3)
        XCTAssertThrowsError(try JSONDecoder().decode(DecoderTrainingConfiguration.self, from: Data(#"{"conditioning": "clip"}"#.utf8)))
        XCTAssertEqual(glide.stage, .baselineDecoder)
        func decoderWeights() throws -> [Data] {
            let folder = out.appendingPathComponent("decoder")
            return try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted().filter { $0.hasSuffix(".safetensors") }
                .map { try Data(contentsOf: folder.appendingPathComponent($0)) }
        }
        let unclipWeights = try decoderWeights()
        XCTAssertFalse(unclipWeights.isEmpty)
        (glide.blockOutChannels, glide.layersPerBlock, glide.attentionHeadDim, glide.crossAttentionDim, glide.normGroups, glide.extraContextTokens) =
            (c.blockOutChannels, c.layersPerBlock, c.attentionHeadDim, c.crossAttentionDim, c.normGroups, c.extraContextTokens)
        glide.training = c.training
        XCTAssertTrue(try glide.run(dataset: eight, out: out).exported)
        XCTAssertEqual(try losses(out, stage: .baselineDecoder).count, 4)
        XCTAssertEqual(try decoderWeights(), unclipWeights, "the unCLIP decoder is left as it was")
        let index = try String(contentsOf: out.appendingPathComponent("model_index.json"), encoding: .utf8)
        for name in ["glide_decoder", "glide_text_proj", "glide_decoder_scheduler", "\"decoder\"", "\"text_proj\""] {
            XCTAssertTrue(index.contains(name), name)
        }
        let directory = try PipelineDirectory(out)
        let baseline = try directory.loadDecoderStage(.glide)
        XCTAssertNotEqual(baseline.textProj.nullEmbeddings(1).toArray(), [Float](repeating: 0, count: baseline.textProj.config.clipEmbeddingsDim),
                          "the null embedding, the baseline's only image input, is trained")

        let pipeline = try UnCLIPPipeline(directory: out)
        pipeline.keepLoaded = true
        XCTAssertTrue(pipeline.hasBaselineDecoder)
        var o = SamplingOptions()
        (o.decoderSteps, o.decoderGuidance, o.priorGuidance, o.decoder) = (2, 3, 1, .glide)
        let text = try pipeline.encodePrompts(["a red circle"], imagesPerPrompt: 2, classifierFreeGuidance: true)
        let e = text.promptEmbeds.shape[1]
        func decode(_ z: Tensor, _ options: SamplingOptions) throws -> [Float] {
            var noise = SeededNoise(seed: 9)
            return try pipeline.runDecoder(imageEmbeddings: z, text: text, options: options, noise: &noise).toArray()
        }
        var rng = Philox(seed: 4)
        let a = Tensor.randn([2, e], using: &rng), b = Tensor.randn([2, e], using: &rng)
        XCTAssertEqual(try decode(a, o), try decode(b, o), "the baseline never sees the image embedding")
        var u = o
        u.decoder = .unclip
        XCTAssertNotEqual(try decode(a, u), try decode(b, u), "the unCLIP decoder does")
        XCTAssertNotEqual(try decode(a, u), try decode(a, o), "two decoders")
        // Text to image needs no prior with the baseline (this directory has none).
        var noise = SeededNoise(seed: 1)
        XCTAssertEqual(try pipeline.generate(prompts: ["a red circle"], options: o, noise: &noise).shape, [1, 32, 32, 3])
        // Runs that hand the decoder an image embedding refuse the baseline.
        XCTAssertThrowsError(try pipeline.generate(prompts: ["x"], imageEmbeddings: Tensor.zeros([1, e]), options: o, noise: &noise)) {
            XCTAssertTrue("\($0)".contains("GLIDE-style decoder takes none"), "\($0)")
        }
        XCTAssertThrowsError(try pipeline.vary(imageEmbeddings: Tensor.zeros([1, e]), options: o, noise: &noise))

        // A baseline that cannot feed the same upsamplers is refused when the directory is read, naming both files.
        let config = out.appendingPathComponent("glide_decoder/config.json")
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: config)) as! [String: Any]
        object["sample_size"] = 16
        try JSONSerialization.data(withJSONObject: object).write(to: config)
        XCTAssertThrowsError(try UnCLIPPipeline(directory: out)) {
            XCTAssertTrue("\($0)".contains("glide_decoder/config.json") && "\($0)".contains("upsamplers"), "\($0)")
        }
    }

    /// A trainer builds its model from a config value and writes that value: what config.json says must decode back to it.
    func testWrittenConfigsDecodeToTheConfigsTheModelsAreBuiltFrom() throws {
        func assertRoundTrip<C: Codable>(_ config: C, as component: String, file: StaticString = #filePath, line: UInt = #line) throws {
            let written = try ComponentWriter.configObject(config, component: component, precision: .fp16)
            let read = try JSONDecoder().decode(C.self, from: JSONSerialization.data(withJSONObject: written))
            let again = try ComponentWriter.configObject(read, component: component, precision: .fp16)
            XCTAssertEqual(NSDictionary(dictionary: again), NSDictionary(dictionary: written), component, file: file, line: line)
        }
        let c = TrainAllConfiguration.smokeTest
        try assertRoundTrip(c.clip.visionConfig(), as: "image_encoder")
        try assertRoundTrip(c.prior.priorConfig(embeddingDim: 32, textTokens: 24), as: "prior")
        try assertRoundTrip(c.decoder.decoderConfig(sampleSize: 32), as: "decoder")
        try assertRoundTrip(c.decoder.textProjConfig(embeddingDim: 32), as: "text_proj")
        try assertRoundTrip(c.superRes.unetConfig(), as: "super_res_first")
        try assertRoundTrip(c.decoder.schedulerConfig, as: "decoder_scheduler")
        var text = CLIPTextConfig()
        (text.bosTokenId, text.eosTokenId, text.padTokenId) = (5, 6, 6)
        try assertRoundTrip(text, as: "text_encoder")
        // An unknown time conditioning is refused when the file is read, naming the option and the choices.
        var object = try ComponentWriter.configObject(c.superRes.unetConfig(), component: "super_res_first", precision: .fp32)
        object["resnet_time_scale_shift"] = "film"
        XCTAssertThrowsError(try JSONDecoder().decode(UNet2DConfig.self, from: JSONSerialization.data(withJSONObject: object))) {
            XCTAssertTrue("\($0)".contains("resnet_time_scale_shift") && "\($0)".contains("scale_shift"), "\($0)")
        }
    }

    func testHybridLossVanishesForAPerfectModelAndTrainsTheVariance() throws {
        // With ε̂ = ε the model mean equals the true posterior mean, and v = −1 selects ln β̃_t: the KL is zero.
        let scheduler = try UnCLIPScheduler(config: DecoderTrainingConfiguration().schedulerConfig)
        let timesteps = [1, 10, 500, 999]
        let c = HybridLossCoefficients(scheduler: scheduler, timesteps: timesteps)
        var rng = Philox(seed: 5)
        let x0 = Tensor.randn([4, 3, 4, 4], using: &rng).clamped(min: -1, max: 1), noise = Tensor.randn([4, 3, 4, 4], using: &rng)
        let xt = x0 * c.sqrtAlphaBar + noise * c.sqrtOneMinusAlphaBar
        XCTAssertEqual(hybridLoss(prediction: noise, predictionType: .epsilon, v: Tensor.full([4, 3, 4, 4], -1), noise: noise, x0: x0, xt: xt, c).item, 0, accuracy: 1e-5)
        // The same for an x₀ model that predicts x₀ exactly.
        XCTAssertEqual(hybridLoss(prediction: x0, predictionType: .sample, v: Tensor.full([4, 3, 4, 4], -1), noise: noise, x0: x0, xt: xt, c).item, 0, accuracy: 1e-5)
        // A wrong x₀ costs its squared error (plus the KL of the shifted mean).
        let off = hybridLoss(prediction: x0 + 0.1, predictionType: .sample, v: Tensor.full([4, 3, 4, 4], -1), noise: noise, x0: x0, xt: xt, c).item
        XCTAssertGreaterThan(off, 0.01 - 1e-5)
        // Any other v costs something, and the gradient reaches v (not through the stop-gradient mean).
        let v = Tensor.zeros([4, 3, 4, 4]); v.requiresGrad = true
        let loss = withGrad { hybridLoss(prediction: noise, predictionType: .epsilon, v: v, noise: noise, x0: x0, xt: xt, c) }
        XCTAssertGreaterThan(loss.item, 1e-4)
        loss.backward()
        XCTAssertGreaterThan(v.grad!.abs().max().item, 0)
    }

    func testSuperResLossFalls() throws {
        let out = try temporaryDirectory("superres")
        var c = TrainAllConfiguration.smokeTest.superRes
        overfit(&c.training, steps: 20, lr: 2e-3)
        XCTAssertTrue(try c.run(dataset: eight, out: out).exported)
        assertLossFalls(try losses(out, stage: .superResolution(0)), by: 0.7)
        let directory = try PipelineDirectory(out)
        let first = try directory.loadSuperRes("super_res_first"), last = try directory.loadSuperRes("super_res_last")
        XCTAssertEqual(first.config.sampleSize, 128)
        XCTAssertEqual(first.stateDict()["conv_out.weight"]!.toArray(), last.stateDict()["conv_out.weight"]!.toArray())
    }

    // MARK: Checkpoints

    /// Every tensor of a safetensors file, as bit patterns.
    private func bits(_ url: URL) throws -> [String: [UInt32]] {
        let file = try SafeTensorsFile(contentsOf: url)
        var out: [String: [UInt32]] = [:]
        for name in file.names { out[name] = try file.tensor(name).toArray().map(\.bitPattern) }
        return out
    }

    func testInterruptAndResumeIsBitIdenticalToAnUninterruptedRun() throws {
        var c = TrainAllConfiguration.smokeTest.superRes
        c.training.steps = 6
        c.training.checkpointEvery = 4  // the interruption at step 3 must write its own checkpoint
        c.training.warmupSteps = 2

        let straight = try temporaryDirectory("straight")
        XCTAssertTrue(try c.run(dataset: Self.world, out: straight).exported)

        let resumed = try temporaryDirectory("resumed")
        TrainingInterrupt.reset()
        defer { TrainingInterrupt.reset() }
        var checkpoints: [Int] = []
        let first = try c.run(dataset: Self.world, out: resumed) { event in
            if case .step(let p) = event, p.step == 3 { TrainingInterrupt.request() }  // as Ctrl-C would
            if case .checkpoint(_, let step, _) = event { checkpoints.append(step) }
        }
        XCTAssertTrue(first.interrupted)
        XCTAssertEqual(first.completedSteps, 3)
        XCTAssertEqual(checkpoints, [3])
        XCTAssertFalse(FileManager.default.fileExists(atPath: resumed.appendingPathComponent("super_res_first").path))
        XCTAssertEqual(try Checkpoint.state(of: resumed.appendingPathComponent("checkpoints/super_res/checkpoint.safetensors")).step, 3)

        TrainingInterrupt.reset()
        let second = try c.run(dataset: Self.world, out: resumed, resume: true)
        XCTAssertEqual(second.completedSteps, 6)
        XCTAssertTrue(second.exported)

        let weights = "super_res_first/diffusion_pytorch_model.safetensors"
        XCTAssertEqual(try bits(straight.appendingPathComponent(weights)), try bits(resumed.appendingPathComponent(weights)))
        let checkpoint = "checkpoints/super_res/checkpoint.safetensors"
        XCTAssertEqual(try bits(straight.appendingPathComponent(checkpoint)), try bits(resumed.appendingPathComponent(checkpoint)),
                       "live weights, EMA and AdamW state must all match")
        // The log has one line per step, without duplicates from the interrupted session.
        XCTAssertEqual(try losses(resumed, stage: .superResolution(0)).count, 6)
        XCTAssertEqual(try losses(straight, stage: .superResolution(0)), try losses(resumed, stage: .superResolution(0)))
    }

    func testSIGINTSetsTheStopFlag() throws {
        TrainingInterrupt.install()
        defer { TrainingInterrupt.reset(); TrainingInterrupt.install() }
        XCTAssertFalse(TrainingInterrupt.isRequested)
        raise(SIGINT)  // the handler only sets the flag; the process survives
        XCTAssertTrue(TrainingInterrupt.isRequested)
    }

    func testBadSamplesAreReportedAndSkipped() throws {
        let out = try temporaryDirectory("flaky")
        var c = TrainAllConfiguration.smokeTest.superRes
        c.training.steps = 2
        let dataset = FlakyDataset(base: try ShapesWorldDataset(seed: 1, count: 6), failing: [0, 1, 2])
        var skipped: [String] = []
        let outcome = try c.run(dataset: dataset, out: out) { event in
            if case .skippedSample(_, let index, let message) = event {
                XCTAssertTrue((0..<3).contains(index))
                skipped.append(message)
            }
        }
        XCTAssertTrue(outcome.exported)
        XCTAssertFalse(skipped.isEmpty)
        XCTAssertTrue(skipped.allSatisfy { $0.contains("corrupt test entry") && $0.contains("entry-") }, "\(skipped)")
    }

    func testHalfPrecisionExportLoads() throws {
        let out = try temporaryDirectory("fp16")
        var c = TrainAllConfiguration.smokeTest.superRes
        c.training.steps = 1
        c.precision = .fp16
        XCTAssertTrue(try c.run(dataset: Self.world, out: out).exported)
        let file = try SafeTensorsFile(contentsOf: out.appendingPathComponent("super_res_first/diffusion_pytorch_model.safetensors"))
        XCTAssertEqual(file.info("conv_out.weight")?.dtype, .f16)
        let unet = try PipelineDirectory(out).loadSuperRes("super_res_first")
        let full = try SafeTensorsFile(contentsOf: out.appendingPathComponent("checkpoints/super_res/checkpoint.safetensors"))
        let ema = try full.tensor("ema.conv_out.weight").toArray(), loaded = unet.stateDict()["conv_out.weight"]!.toArray()
        XCTAssertEqual(loaded, ema.map { Float(Float16($0)) }, "the exported weights are the EMA weights, rounded to fp16")
    }

    func testResumeFindsACheckpointUnderTheStagesEarlierName() throws {
        var c = TrainAllConfiguration.smokeTest.superRes
        c.training.steps = 4
        c.training.checkpointEvery = 2
        let out = try temporaryDirectory("earlier-name")
        TrainingInterrupt.reset()
        defer { TrainingInterrupt.reset() }
        let first = try c.run(dataset: Self.world, out: out) { event in
            if case .step(let p) = event, p.step == 2 { TrainingInterrupt.request() }
        }
        XCTAssertEqual(first.completedSteps, 2)
        // As an earlier version left it: checkpoints/superres.
        let checkpoints = out.appendingPathComponent("checkpoints")
        try FileManager.default.moveItem(at: checkpoints.appendingPathComponent("super_res"),
                                         to: checkpoints.appendingPathComponent("superres"))
        TrainingInterrupt.reset()
        var messages: [String] = []
        let second = try c.run(dataset: Self.world, out: out, resume: true) { event in
            if case .message(_, let text) = event { messages.append(text) }
        }
        XCTAssertEqual(second.completedSteps, 4)
        XCTAssertTrue(messages.contains { $0.contains("checkpoints/superres") && $0.contains("at step 2") }, "\(messages)")
    }

    func testPartialConfigurationJSONKeepsStageDefaults() throws {
        let json = #"{"decoder": {"training": {"steps": 7}, "caption_dropout": 0.25}, "superres": {"crop_size": 32}}"#
        let c = try JSONDecoder().decode(TrainAllConfiguration.self, from: Data(json.utf8))
        XCTAssertEqual(c.decoder.training.steps, 7)
        XCTAssertEqual(c.decoder.training.batchSize, DecoderTrainingConfiguration().training.batchSize)
        XCTAssertEqual(c.decoder.captionDropout, 0.25)
        XCTAssertEqual(c.decoder.imageEmbeddingDropout, 0.1)
        XCTAssertEqual(c.superRes.cropSize, 32, "the section's earlier name, superres, is still read")
        let current = try JSONDecoder().decode(TrainAllConfiguration.self, from: Data(#"{"super_res": {"crop_size": 48}}"#.utf8))
        XCTAssertEqual(current.superRes.cropSize, 48)
        XCTAssertThrowsError(try JSONDecoder().decode(TrainAllConfiguration.self,
                                                      from: Data(#"{"super_res": {}, "superres": {}}"#.utf8)), "both names at once")
        XCTAssertEqual(c.clip.training, CLIPTrainingConfiguration().training)
        let bad = #"{"prior": {"training": {"stepz": 7}}}"#
        XCTAssertThrowsError(try JSONDecoder().decode(TrainAllConfiguration.self, from: Data(bad.utf8)))
        // A misspelt option at any level is an error that names it, never a silently kept default.
        for (json, name) in [(#"{"decoder": {"caption_dropuot": 0.2}}"#, "caption_dropuot"), (#"{"super_res": {"prediction": "sample"}}"#, "prediction"),
                             (#"{"clip": {"widht": 64}}"#, "widht"), (#"{"priors": {}}"#, "priors"), (#"{"tokenizer": {"merges": 3}}"#, "merges")] {
            XCTAssertThrowsError(try JSONDecoder().decode(TrainAllConfiguration.self, from: Data(json.utf8))) {
                XCTAssertTrue("\($0)".contains(name), "\($0)")
            }
        }
        let x0 = try JSONDecoder().decode(TrainAllConfiguration.self, from: Data(#"{"decoder": {"prediction_type": "epsilon"}}"#.utf8))
        XCTAssertEqual(x0.decoder.schedulerConfig.predictionType, .epsilon)
        XCTAssertEqual(TrainAllConfiguration().superRes.schedulerConfig.predictionType, .sample)
        // The sampling section: the file's own keys, checked like the file itself.
        XCTAssertEqual(c.sampling, SamplingDefaults(prior_guidance_scale: 2, decoder_guidance_scale: 3, image_size: 128))
        let sampling = try JSONDecoder().decode(TrainAllConfiguration.self, from: Data(#"{"sampling": {"prior_guidance_scale": 1.5}}"#.utf8))
        XCTAssertEqual(sampling.sampling, SamplingDefaults(prior_guidance_scale: 1.5))
        for (json, name) in [(#"{"sampling": {"prior_guidance": 2}}"#, "prior_guidance"),
                             (#"{"sampling": {"decoder_num_inference_steps": 1}}"#, "decoder steps")] {
            XCTAssertThrowsError(try JSONDecoder().decode(TrainAllConfiguration.self, from: Data(json.utf8))) {
                XCTAssertTrue("\($0)".contains(name), "\($0)")
            }
        }
        // Round trip.
        let again = try JSONDecoder().decode(TrainAllConfiguration.self, from: JSONEncoder().encode(c))
        XCTAssertEqual(again.decoder.training, c.decoder.training)
        XCTAssertEqual(again.sampling, c.sampling)
    }

    // MARK: End to end

    func testTrainAllMakesAPipelineThatGenerates() throws {
        let out = try temporaryDirectory("all")
        var events = 0
        let outcomes = try trainAll(dataset: Self.world, out: out, configuration: .smokeTest) { _ in events += 1 }
        XCTAssertEqual(outcomes.map(\.stage), [.clip, .prior, .decoder, .superResolution(0), .superResolution(1)])
        XCTAssertTrue(outcomes.allSatisfy(\.exported))
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("model_index.json"))) as! [String: Any]
        XCTAssertEqual(index["_class_name"] as? String, "UnCLIPPipeline")
        XCTAssertEqual(index["text_proj"] as? [String], ["unclip", "UnCLIPTextProjModel"])
        XCTAssertEqual(index["super_res_2_first"] as? [String], ["diffusers", "UNet2DModel"])
        // The run's sampling defaults are the pipeline's (prior guidance 2, decoder guidance 3).
        let defaults = try SamplingOptions(defaultsOf: PipelineDirectory(out))
        XCTAssertEqual(defaults.priorGuidance, 2)
        XCTAssertEqual(defaults.decoderGuidance, 3)
        XCTAssertEqual(defaults.decoderSteps, SamplingOptions().decoderSteps)

        let pipeline = try UnCLIPPipeline(directory: out)
        var options = SamplingOptions()
        options.priorSteps = 2; options.decoderSteps = 2; options.superResSteps = 2
        var noise = SeededNoise(seed: 1)
        let image = try pipeline.generate(prompts: ["a red circle"], options: options, noise: &noise)  // guidance on
        XCTAssertEqual(image.shape, [1, 128, 128, 3], "the defaults' image_size")
        XCTAssertTrue(image.toArray().allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 1 })
        // The second upsampler (the smoke test's 128 → 256) on request.
        XCTAssertEqual(pipeline.imageSizes, [32, 128, 256])
        options.size = 256
        XCTAssertEqual(try pipeline.generate(prompts: ["a red circle"], options: options, noise: &noise).shape, [1, 256, 256, 3])
        // The image-variation path uses image_encoder + feature_extractor.
        let processor = try CLIPImageProcessor(configURL: out.appendingPathComponent("feature_extractor/preprocessor_config.json"))
        let embeds = try pipeline.imageEmbeddings(pixelValues: processor([try Self.world.sample(0).image]))
        XCTAssertEqual(embeds.shape, [1, 32])

        // Resuming a finished run trains nothing and leaves a loadable pipeline.
        let again = try trainAll(dataset: Self.world, out: out, configuration: .smokeTest, resume: true)
        XCTAssertTrue(again.allSatisfy { $0.exported && $0.completedSteps == 2 })
        _ = try UnCLIPPipeline(directory: out)
        // An empty sampling section leaves diffusers' defaults: the file is removed.
        var plain = TrainAllConfiguration.smokeTest
        plain.sampling = SamplingDefaults()
        try trainAll(dataset: Self.world, out: out, configuration: plain, resume: true)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent(SamplingOptions.defaultsFile).path))
        XCTAssertEqual(try SamplingOptions(defaultsOf: PipelineDirectory(out)).priorGuidance, 4)
    }

    // MARK: Throughput (opt-in)

    /// Steps per second of every stage at its default configuration (a few steps each, data loading included).
    /// Opt-in, as it takes a few minutes: `UNCLIP_TRAIN_BENCH=1 swift test --filter TrainerTests.testDefaultThroughput`.
    func testDefaultThroughput() throws {
        guard ProcessInfo.processInfo.environment["UNCLIP_TRAIN_BENCH"] != nil else { throw XCTSkip("set UNCLIP_TRAIN_BENCH=1") }
        let out = try temporaryDirectory("bench")
        let data = try ShapesWorldDataset(seed: 0, count: 4096)
        var c = TrainAllConfiguration()
        try c.tokenizer.run(dataset: data, out: out)
        let steps = Int(ProcessInfo.processInfo.environment["UNCLIP_TRAIN_BENCH_STEPS"] ?? "") ?? 5
        for stage in [\TrainAllConfiguration.clip.training, \.prior.training, \.decoder.training, \.superRes.training] {
            c[keyPath: stage].steps = steps
            c[keyPath: stage].warmupSteps = 0
        }
        c.prior.statisticsSamples = 256
        let t0 = Date()
        for i in 0..<64 { _ = try data.sample(i) }
        print(String(format: "THROUGHPUT data: %.1f ms per 128x128 sample", Date().timeIntervalSince(t0) * 1000 / 64))
        if ProcessInfo.processInfo.environment["UNCLIP_TRAIN_BENCH_DATA_ONLY"] != nil { return }
        func measure(_ name: String, _ run: ((TrainingEvent) -> Void) throws -> TrainingOutcome) rethrows {
            var times: [Date] = []
            _ = try run { event in if case .step = event { times.append(Date()) } }
            // From the end of the first step (warm-up of caches and oneDNN primitives) to the end of the last.
            let rate = Double(times.count - 1) / times.last!.timeIntervalSince(times[0])
            print(String(format: "THROUGHPUT %@: %.3f steps/s (%.2f s/step)", name, rate, 1 / rate))
        }
        if let only = ProcessInfo.processInfo.environment["UNCLIP_TRAIN_BENCH_ONLY"], only == Stage.superResolution(0).key {
            return try measure("super_res") { try c.superRes.run(dataset: data, out: out, progress: $0) }
        }
        try measure("clip") { try c.clip.run(dataset: data, out: out, progress: $0) }
        try measure("prior") { try c.prior.run(dataset: data, out: out, progress: $0) }
        try measure("decoder") { try c.decoder.run(dataset: data, out: out, progress: $0) }
        try measure("super_res") { try c.superRes.run(dataset: data, out: out, progress: $0) }
    }
}
