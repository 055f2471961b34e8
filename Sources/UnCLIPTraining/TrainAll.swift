import Foundation
import UnCLIPModels

/// Settings of a full from-scratch run: the data and every stage's configuration.
public struct TrainAllConfiguration: Codable, Sendable {
    /// The ShapesWorld scenes trained on when no dataset is given: seed and number of scenes.
    public var shapesWorldSeed: UInt64 = 0
    public var shapesWorldCount = 100_000
    public var tokenizer = TokenizerTrainingConfiguration()
    public var clip = CLIPTrainingConfiguration()
    public var prior = PriorTrainingConfiguration()
    public var decoder = DecoderTrainingConfiguration()
    public var superRes = SuperResTrainingConfiguration()
    /// The second upsampler (128 → 512 by default), trained after the first; nil (`"super_res_2": null`) leaves the
    /// pipeline at the first upsampler's size.
    public var superRes2: SuperResTrainingConfiguration? = .secondStage
    /// The sampling settings written to the pipeline's `unclip_defaults.json`, which `unclip generate` and
    /// `unclip evaluate` use unless told otherwise. Prior guidance 2 and decoder guidance 3, because diffusers' 4 and 8
    /// were tuned for Karlo and, on the small ShapesWorld models these trainers make, oversaturate and bind
    /// two-object captions worse (the comparison is in docs/evaluation.md, "Prior guidance"); and images of 128 × 128
    /// unless 512 is asked for (`image_size`: the second upsampler quadruples the time of an image). `{}` writes no
    /// file (diffusers' defaults, the whole cascade).
    public var sampling = SamplingDefaults(prior_guidance_scale: 2, decoder_guidance_scale: 3, image_size: 128)

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case shapesWorldSeed = "shapes_world_seed", shapesWorldCount = "shapes_world_count"
        case tokenizer, clip, prior, decoder, superRes = "super_res", superRes2 = "super_res_2", sampling
    }

    public init(from decoder: Decoder) throws {
        let earlier = Stage.superResolution(0).earlierKeys
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self, section: "training", alsoKnown: earlier)
        let d = TrainAllConfiguration()
        shapesWorldSeed = try c.decodeIfPresent(UInt64.self, forKey: .shapesWorldSeed) ?? d.shapesWorldSeed
        shapesWorldCount = try c.decodeIfPresent(Int.self, forKey: .shapesWorldCount) ?? d.shapesWorldCount
        tokenizer = try c.decodeIfPresent(TokenizerTrainingConfiguration.self, forKey: .tokenizer) ?? d.tokenizer
        clip = try c.decodeIfPresent(CLIPTrainingConfiguration.self, forKey: .clip) ?? d.clip
        prior = try c.decodeIfPresent(PriorTrainingConfiguration.self, forKey: .prior) ?? d.prior
        self.decoder = try c.decodeIfPresent(DecoderTrainingConfiguration.self, forKey: .decoder) ?? d.decoder
        // The super-resolution section may come under an earlier name (`Stage.earlierKeys`), never under both.
        let old = try decoder.container(keyedBy: AnyKey.self)
        let oldKey = earlier.map(AnyKey.init(stringValue:)).first(where: old.contains)
        if let oldKey, c.contains(.superRes) {
            throw DecodingError.dataCorruptedError(forKey: oldKey, in: old, debugDescription:
                "give the super-resolution settings once, as \"super_res\" (\"\(oldKey.stringValue)\" is its earlier name)")
        }
        superRes = try c.decodeIfPresent(SuperResTrainingConfiguration.self, forKey: .superRes)
            ?? oldKey.map { try old.decode(SuperResTrainingConfiguration.self, forKey: $0) } ?? d.superRes
        if c.contains(.superRes2) {
            superRes2 = try c.decodeNil(forKey: .superRes2) ? nil : try c.decode(SecondUpsamplerSection.self, forKey: .superRes2).configuration
        } else {
            superRes2 = d.superRes2
        }
        sampling = try c.decodeIfPresent(SamplingDefaults.self, forKey: .sampling) ?? d.sampling
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(shapesWorldSeed, forKey: .shapesWorldSeed)
        try c.encode(shapesWorldCount, forKey: .shapesWorldCount)
        try c.encode(tokenizer, forKey: .tokenizer)
        try c.encode(clip, forKey: .clip)
        try c.encode(prior, forKey: .prior)
        try c.encode(decoder, forKey: .decoder)
        try c.encode(superRes, forKey: .superRes)
        if let superRes2 { try c.encode(superRes2, forKey: .superRes2) } else { try c.encodeNil(forKey: .superRes2) }
        try c.encode(sampling, forKey: .sampling)
    }

    /// A train-all file's "super_res_2" section: stage 2's settings over `SuperResTrainingConfiguration.secondStage`.
    private struct SecondUpsamplerSection: Decodable {
        let configuration: SuperResTrainingConfiguration
        init(from decoder: Decoder) throws { configuration = try SuperResTrainingConfiguration(from: decoder, defaultStage: 2) }
    }

    /// Tiny models and a few steps per stage: a pipeline that runs end to end in well under a minute (for smoke
    /// tests of the whole path, not for pictures).
    public static var smokeTest: TrainAllConfiguration {
        var c = TrainAllConfiguration()
        c.shapesWorldCount = 64
        c.tokenizer.maxCaptions = 64
        c.clip.embeddingDim = 32; c.clip.textLayers = 1; c.clip.textHeads = 2; c.clip.textIntermediateSize = 64
        c.clip.visionWidth = 32; c.clip.visionLayers = 1; c.clip.visionHeads = 2; c.clip.visionIntermediateSize = 64
        c.clip.patchSize = 8
        c.prior.heads = 2; c.prior.headDim = 16; c.prior.layers = 1; c.prior.statisticsSamples = 16
        c.decoder.blockOutChannels = [32, 32]; c.decoder.attentionHeadDim = 16; c.decoder.crossAttentionDim = 32
        c.superRes.blockOutChannels = [32, 32]; c.superRes.cropSize = 32
        var second = SuperResTrainingConfiguration.secondStage
        second.highResolution = 256; second.cropSize = 32; second.blockOutChannels = [16, 16]
        c.superRes2 = second
        for stage in [\TrainAllConfiguration.clip.training, \.prior.training, \.decoder.training, \.superRes.training] {
            c[keyPath: stage].steps = 2
            c[keyPath: stage].batchSize = 4
            c[keyPath: stage].warmupSteps = 1
            c[keyPath: stage].checkpointEvery = 2
        }
        c.superRes2?.training.steps = 2
        c.superRes2?.training.batchSize = 4
        c.superRes2?.training.warmupSteps = 1
        c.superRes2?.training.checkpointEvery = 2
        return c
    }
}

/// Trains every stage in order on ShapesWorld (`configuration.shapesWorldSeed`, `.shapesWorldCount`) and leaves a
/// complete diffusers-layout pipeline directory in `out`; see `trainAll(dataset:out:configuration:resume:progress:)`.
/// CLIP gets ShapesWorld's caption recipe unless the configuration names one.
@discardableResult
public func trainAll(out: URL, configuration: TrainAllConfiguration = TrainAllConfiguration(), resume: Bool = false,
                     progress: (TrainingEvent) -> Void = { _ in }) throws -> [TrainingOutcome] {
    var configuration = configuration
    configuration.clip = configuration.clip.defaultingCaptionRecipe(to: .shapesWorld)
    let dataset = try ShapesWorldDataset(seed: configuration.shapesWorldSeed, count: configuration.shapesWorldCount)
    return try trainAll(dataset: dataset, out: out, configuration: configuration, resume: resume, progress: progress)
}

/// Trains every stage in order: tokenizer, CLIP, prior, decoder, the first upsampler and (unless
/// `configuration.superRes2` is nil) the second, each on the frozen results of the ones before (the upsamplers on
/// the data set's images at their own sizes: ShapesWorld draws them at 512), and leaves a complete diffusers-layout pipeline directory (with `model_index.json`) in `out`.
///
/// With `resume`, a stage whose checkpoint shows it finished is not trained again (its components are rewritten
/// from the checkpoint's EMA weights), an unfinished one continues from its checkpoint, and an existing tokenizer
/// is kept. Ctrl-C (after `TrainingInterrupt.install()`) checkpoints the running stage and returns early; the
/// outcomes say where it stopped.
@discardableResult
public func trainAll(dataset: some CaptionedImageDataset, out: URL, configuration: TrainAllConfiguration = TrainAllConfiguration(),
                     resume: Bool = false, progress: (TrainingEvent) -> Void = { _ in }) throws -> [TrainingOutcome] {
    do { try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true) } catch {
        throw TrainingError.io(path: out.path, reason: "cannot create the output folder (\(error.localizedDescription))")
    }
    if !(resume && FileManager.default.fileExists(atPath: out.appendingPathComponent("tokenizer/vocab.json").path)) {
        try configuration.tokenizer.run(dataset: dataset, out: out, progress: progress)
    }
    var outcomes: [TrainingOutcome] = []
    for stage in Stage.trained where stage != .tokenizer && (stage != .superResolution(1) || configuration.superRes2 != nil) {
        progress(.message(stage: stage, text: "training \(stage)"))
        let outcome: TrainingOutcome
        switch stage {
        case .clip: outcome = try configuration.clip.run(dataset: dataset, out: out, resume: resume, progress: progress)
        case .prior: outcome = try configuration.prior.run(dataset: dataset, out: out, resume: resume, progress: progress)
        case .decoder: outcome = try configuration.decoder.run(dataset: dataset, out: out, resume: resume, progress: progress)
        case .superResolution(0): outcome = try configuration.superRes.run(dataset: dataset, out: out, resume: resume, progress: progress)
        case .superResolution(1):
            outcome = try configuration.superRes2!.run(dataset: dataset, out: out, resume: resume, progress: progress)
        case .tokenizer, .superResolution, .inversion, .autoregressivePrior, .baselineDecoder: preconditionFailure("\(stage) is not one of the trained stages")
        }
        outcomes.append(outcome)
        if !outcome.exported { return outcomes }
    }
    try ComponentWriter.writeModelIndex(in: out)
    try writeSamplingDefaults(configuration.sampling, in: out)
    return outcomes
}

/// Writes `unclip_defaults.json` atomically (or removes a stale one when `defaults` is empty).
func writeSamplingDefaults(_ defaults: SamplingDefaults, in out: URL) throws {
    let url = out.appendingPathComponent(SamplingOptions.defaultsFile)
    do {
        if defaults.isEmpty {
            if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
            return
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try (try encoder.encode(defaults) + Data("\n".utf8)).write(to: url, options: .atomic)
    } catch {
        throw TrainingError.io(path: url.path, reason: "cannot write the sampling defaults (\(error.localizedDescription))")
    }
}
