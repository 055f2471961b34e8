import Foundation
import UnCLIPNN
import UnCLIPImage

/// Sampling settings of the text-to-image and variation pipelines; every default is diffusers'.
public struct SamplingOptions: Equatable, Sendable {
    /// Images drawn per prompt (or per input image).
    public var imagesPerPrompt = 1
    public var priorSteps = 25
    public var decoderSteps = 25
    public var superResSteps = 7
    /// Steps of the upsampler stages after the first (the embedded model's 128 → 512); nil: `superResSteps`.
    public var laterSuperResSteps: Int? = nil
    /// Classifier-free guidance scale of the prior (applied to its x̂₀ prediction).
    public var priorGuidance: Float = 4.0
    /// Classifier-free guidance scale of the decoder (applied to ε).
    public var decoderGuidance: Float = 8.0
    /// Which prior draws the CLIP image embedding: the diffusion prior (`prior`) or the autoregressive one (`ar_prior`).
    public var prior: PriorKind = .diffusion
    /// Embeddings the prior draws per image, keeping the one with the highest cosine z_i · z_t: the paper's trick for
    /// its diffusion prior is 2 (§2.1). 1 draws once.
    public var priorCandidates = 1
    /// Which decoder draws: unCLIP's (`decoder`, conditioned on the CLIP image embedding and the caption) or the
    /// GLIDE-style baseline (`glide_decoder`, the caption alone; no prior runs).
    public var decoder: DecoderKind = .unclip
    /// The side of the images drawn: the decoder's or one upsampler's output size, where the cascade stops; nil: the
    /// model's default (its `unclip_defaults.json`'s `image_size`), else its last stage. A size above the cascade's
    /// largest gives the largest (`UnCLIPPipeline.upsamplerStages(for:)`).
    public var size: Int? = nil

    public init() {}

    /// The most candidates per image the prior may be asked to draw.
    public static let maxPriorCandidates = 16

    /// The most images one call draws: each costs the decoder's and the upsamplers' activations at once, so a
    /// larger batch is split by the caller instead of failing on one huge allocation.
    public static let maxImagesPerPrompt = 64
    /// The most denoising steps of a stage: num_train_timesteps caps it further (1000 for every unCLIP model).
    public static let maxSteps = ConfigurationLimits.trainTimesteps

    /// Guidance is on when either scale exceeds 1; it is then used by both stages (as diffusers does).
    public var classifierFreeGuidance: Bool { priorGuidance > 1 || decoderGuidance > 1 }

    func validate() throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw PipelineArgumentError(message) } }
        try check(imagesPerPrompt >= 1, "images per prompt must be at least 1 (got \(imagesPerPrompt))")
        try check(priorSteps >= 2, "prior steps must be at least 2 (got \(priorSteps)); the scheduler divides by steps − 1")
        try check(decoderSteps >= 2, "decoder steps must be at least 2 (got \(decoderSteps))")
        try check(superResSteps >= 2 && (laterSuperResSteps ?? 2) >= 2, "super-resolution steps must be at least 2 (got \(laterSuperResSteps.map { "\(superResSteps) and \($0)" } ?? "\(superResSteps)"))")
        try check((laterSuperResSteps ?? 0) <= Self.maxSteps, "steps must be at most \(Self.maxSteps)")
        try check(priorGuidance.isFinite && decoderGuidance.isFinite && priorGuidance >= 0 && decoderGuidance >= 0,
                  "guidance scales must be finite numbers ≥ 0 (got prior \(priorGuidance), decoder \(decoderGuidance))")
        try check(imagesPerPrompt <= Self.maxImagesPerPrompt, "images per prompt must be at most \(Self.maxImagesPerPrompt) (got \(imagesPerPrompt))")
        try check(max(priorSteps, decoderSteps, superResSteps) <= Self.maxSteps, "steps must be at most \(Self.maxSteps)")
        try check((1...Self.maxPriorCandidates).contains(priorCandidates),
                  "prior candidates must be in 1 … \(Self.maxPriorCandidates) (got \(priorCandidates))")
        if let size { try check(size >= 1 && size <= Self.maxSize, "the image size must be in 1 … \(Self.maxSize) (got \(size))") }
    }

    /// The largest image side a run may ask for.
    public static let maxSize = 4096
}

/// The decoders of the paper's comparison (§5.2): unCLIP's, and the GLIDE-style baseline conditioned on the caption
/// alone.
public enum DecoderKind: String, Sendable, CaseIterable {
    case unclip
    case glide
}

/// The two priors of the paper (§2.1).
public enum PriorKind: String, Sendable, CaseIterable {
    /// The diffusion prior (`prior`, diffusers' `PriorTransformer`).
    case diffusion
    /// The autoregressive prior over quantised PCA coordinates (`ar_prior`, `AutoregressivePriorTransformer`).
    case autoregressive = "ar"

    /// Its component folder in a pipeline directory.
    public var component: String { self == .diffusion ? "prior" : "ar_prior" }
}

/// A model's own sampling settings: the contents of `unclip_defaults.json` in its pipeline directory. The keys are
/// `UnCLIPPipeline.__call__`'s argument names; a setting left out keeps diffusers' default, and diffusers itself
/// ignores the file. A model trained here ships one when its best settings differ from Karlo's (the ShapesWorld
/// models' prior and decoder guidance, docs/evaluation.md); `unclip train all` writes it from its `sampling` section.
/// `image_size` and `super_res_2_num_inference_steps` are this project's own keys (diffusers' pipeline has no such
/// arguments): the side drawn by default when the cascade goes further (the embedded model: 128, its 512 stage on
/// request), and the second upsampler's steps.
public struct SamplingDefaults: Codable, Equatable, Sendable {
    public var prior_num_inference_steps, decoder_num_inference_steps, super_res_num_inference_steps: Int?
    public var prior_guidance_scale, decoder_guidance_scale: Float?
    public var image_size, super_res_2_num_inference_steps: Int?

    public init(prior_num_inference_steps: Int? = nil, decoder_num_inference_steps: Int? = nil,
                super_res_num_inference_steps: Int? = nil, prior_guidance_scale: Float? = nil,
                decoder_guidance_scale: Float? = nil, image_size: Int? = nil, super_res_2_num_inference_steps: Int? = nil) {
        self.prior_num_inference_steps = prior_num_inference_steps
        self.decoder_num_inference_steps = decoder_num_inference_steps
        self.super_res_num_inference_steps = super_res_num_inference_steps
        self.super_res_2_num_inference_steps = super_res_2_num_inference_steps
        self.prior_guidance_scale = prior_guidance_scale
        self.decoder_guidance_scale = decoder_guidance_scale
        self.image_size = image_size
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case prior_num_inference_steps, decoder_num_inference_steps, super_res_num_inference_steps
        case prior_guidance_scale, decoder_guidance_scale, image_size, super_res_2_num_inference_steps
    }

    /// `options` with every setting this file gives replaced.
    public func applied(to options: SamplingOptions) -> SamplingOptions {
        var o = options
        o.priorSteps = prior_num_inference_steps ?? o.priorSteps
        o.decoderSteps = decoder_num_inference_steps ?? o.decoderSteps
        o.superResSteps = super_res_num_inference_steps ?? o.superResSteps
        o.priorGuidance = prior_guidance_scale ?? o.priorGuidance
        o.decoderGuidance = decoder_guidance_scale ?? o.decoderGuidance
        o.size = image_size ?? o.size
        o.laterSuperResSteps = super_res_2_num_inference_steps ?? o.laterSuperResSteps
        return o
    }

    public var isEmpty: Bool { self == SamplingDefaults() }
}

extension SamplingDefaults {
    /// Strict: an unknown key is an error naming it (a misspelt setting would otherwise be silently ignored), and the
    /// settings must make valid `SamplingOptions`.
    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self, section: "sampling")
        prior_num_inference_steps = try c.decodeIfPresent(Int.self, forKey: .prior_num_inference_steps)
        decoder_num_inference_steps = try c.decodeIfPresent(Int.self, forKey: .decoder_num_inference_steps)
        super_res_num_inference_steps = try c.decodeIfPresent(Int.self, forKey: .super_res_num_inference_steps)
        prior_guidance_scale = try c.decodeIfPresent(Float.self, forKey: .prior_guidance_scale)
        decoder_guidance_scale = try c.decodeIfPresent(Float.self, forKey: .decoder_guidance_scale)
        image_size = try c.decodeIfPresent(Int.self, forKey: .image_size)
        super_res_2_num_inference_steps = try c.decodeIfPresent(Int.self, forKey: .super_res_2_num_inference_steps)
        do { try applied(to: SamplingOptions()).validate() } catch {
            throw DecodingError.dataCorrupted(DecodingError.Context(codingPath: decoder.codingPath,
                                                                    debugDescription: "\(error)"))
        }
    }
}

extension SamplingOptions {
    /// The file in a pipeline directory that overrides diffusers' sampling defaults for that model.
    public static let defaultsFile = "unclip_defaults.json"

    /// diffusers' defaults, overridden by the directory's `unclip_defaults.json` (`SamplingDefaults`) when it has one.
    public init(defaultsOf directory: PipelineDirectory) throws {
        self.init()
        let url = directory.url.appendingPathComponent(Self.defaultsFile)
        guard FileManager.default.fileExists(atPath: url.path) else { return }
        do {
            self = try JSONDecoder().decode(SamplingDefaults.self, from: try Data(contentsOf: url)).applied(to: self)
        } catch let DecodingError.dataCorrupted(context) {
            throw PipelineArgumentError("\(url.path): \(context.debugDescription)")
        } catch {
            throw PipelineArgumentError("\(url.path): unreadable sampling defaults (\(error))")
        }
    }
}

/// An impossible pipeline argument, explained.
public struct PipelineArgumentError: Error, CustomStringConvertible {
    public var description: String
    public init(_ message: String) { description = message }
}

/// A stage produced NaN or ±∞ (weights that overflow, an extreme guidance scale): an error naming the stage rather
/// than an all-black image.
public struct NonFiniteOutput: Error, CustomStringConvertible {
    public var stage: String
    public var description: String { "the \(stage) produced NaN or infinite values; check the model's weights and the guidance scales" }

    /// `t`, or this error when it holds a NaN or ±∞.
    static func check(_ t: Tensor, _ stage: String) throws -> Tensor {
        if t.firstNonFiniteIndex() != nil { throw NonFiniteOutput(stage: stage) }
        return t
    }
}

/// Thrown when a progress handler asks to stop.
public struct PipelineCancelled: Error, CustomStringConvertible {
    public var description: String { "generation cancelled" }
}

/// Progress of a pipeline run: stage, step (1-based) and step count. Return false from the handler to cancel.
public struct PipelineProgress: Sendable {
    public var stage: Stage
    public var step: Int
    public var stepCount: Int
}

/// The CLIP text conditioning of a batch: what the prior and decoder receive.
public struct TextConditioning {
    /// [B′, E] CLIP text embeddings, [B′, 77, E] hidden states and [B′][77] mask, with B′ = 2B under guidance
    /// ([unconditional; conditional]) and B otherwise.
    public var promptEmbeds: Tensor
    public var hiddenStates: Tensor
    public var mask: [[Int]]

    public init(promptEmbeds: Tensor, hiddenStates: Tensor, mask: [[Int]]) {
        self.promptEmbeds = promptEmbeds
        self.hiddenStates = hiddenStates
        self.mask = mask
    }
}

/// The loaded (or loadable) components of an unCLIP pipeline, for building one in code.
public struct UnCLIPComponents {
    public var tokenizer: CLIPTokenizer
    public var textEncoder: Component<CLIPTextModelWithProjection>
    /// nil for an image-variation pipeline.
    public var prior: Component<any UnCLIPPrior>?
    /// The autoregressive prior beside it (`ar_prior`), when the model has one.
    public var autoregressivePrior: Component<any UnCLIPPrior>?
    public var decoder: Component<UnCLIPDecoder>
    /// The GLIDE-style baseline decoder beside it (`glide_decoder`), when the model has one.
    public var baselineDecoder: Component<UnCLIPDecoder>?
    /// The decoder's UNet configuration (its sample size and channels are needed before it loads).
    public var decoderConfig: UNet2DConditionConfig
    /// The cascade, smallest first; empty: the decoder's images are the output.
    public var upsamplers: [Upsampler]
    /// nil when the pipeline has no CLIP image encoder (no variations of images, no manipulations).
    public var imageEncoder: Component<CLIPVisionModelWithProjection>?
    public var imageProcessor: CLIPImageProcessor
    /// The model's sampling defaults (`unclip_defaults.json` over diffusers').
    public var defaults: SamplingOptions

    /// Components given in code, all in memory.
    public init(tokenizer: CLIPTokenizer, textEncoder: CLIPTextModelWithProjection, prior: (any UnCLIPPrior)?,
                autoregressivePrior: (any UnCLIPPrior)? = nil,
                decoder: UnCLIPDecoder, baselineDecoder: UnCLIPDecoder? = nil, upsamplers: [Upsampler], imageEncoder: CLIPVisionModelWithProjection? = nil,
                imageProcessor: CLIPImageProcessor = CLIPImageProcessor(), defaults: SamplingOptions = SamplingOptions()) {
        self.tokenizer = tokenizer
        self.textEncoder = Component(textEncoder, name: "text_encoder")
        self.prior = prior.map { Component($0, name: "prior") }
        self.autoregressivePrior = autoregressivePrior.map { Component($0, name: "ar_prior") }
        self.decoder = Component(decoder, name: "decoder")
        self.baselineDecoder = baselineDecoder.map { Component($0, name: "glide_decoder") }
        decoderConfig = decoder.unet.config
        self.upsamplers = upsamplers
        self.imageEncoder = imageEncoder.map { Component($0, name: "image_encoder") }
        self.imageProcessor = imageProcessor
        self.defaults = defaults
    }

    /// The components of a diffusers-layout directory, each loaded when its stage first runs; types are picked by
    /// `model_index.json`'s class names, configurations read now (so a broken one fails before any weights load).
    public init(directory: PipelineDirectory, variant: String? = nil) throws {
        tokenizer = try directory.loadTokenizer()
        textEncoder = Component(name: "text_encoder") { try directory.loadTextEncoder(variant: variant) }
        prior = directory.has("prior") ? Component(name: "prior") { try directory.loadPriorStage(variant: variant) } : nil
        autoregressivePrior = directory.has("ar_prior")
            ? Component(name: "ar_prior") { try directory.loadPriorStage("ar_prior", variant: variant) } : nil
        decoder = Component(name: "decoder") { try directory.loadDecoderStage(variant: variant) }
        baselineDecoder = directory.has("glide_decoder")
            ? Component(name: "glide_decoder") { try directory.loadDecoderStage(.glide, variant: variant) } : nil
        do {
            decoderConfig = try loadConfig(UNet2DConditionConfig.self, from: try directory.file("decoder", "config.json"))
        } catch let error as PipelineLoadError { throw error } catch {
            throw PipelineLoadError.component(name: "decoder", path: directory.url.appendingPathComponent("decoder").path, underlying: error)
        }
        try directory.checkCompatibility(tokenizer: tokenizer, decoder: decoderConfig)
        upsamplers = try directory.upsamplers(variant: variant)
        imageEncoder = directory.has("image_encoder")
            ? Component(name: "image_encoder") { try directory.loadImageEncoder(variant: variant) } : nil
        imageProcessor = try directory.loadImageProcessor()
        defaults = try SamplingOptions(defaultsOf: directory)
    }
}

/// The unCLIP text-to-image and image-variation pipelines: text encoder → prior → decoder → upsampler cascade.
///
/// Components are loaded when their stage runs and released afterwards (unless `keepLoaded`), so Karlo's 3.4 B
/// parameters never sit in memory at once. Inference records no autodiff graph, and takes its scratch memory from the
/// pipeline's own pool, emptied between stages when components are not kept. A pipeline is used by one caller at a
/// time; `UnCLIPModel` shares one between concurrent callers.
public final class UnCLIPPipeline {
    /// The directory it was loaded from; nil for a pipeline built in code.
    public let directory: PipelineDirectory?
    /// Keep every component in memory between calls (faster repeated runs, more memory).
    public var keepLoaded = false {
        didSet { if !keepLoaded { releaseComponents() } }
    }
    /// Called with (name, tensor) for every intermediate (names as in the parity fixtures); nil in normal use.
    public var trace: ((String, Tensor) -> Void)?
    /// Called after each use of a component with its name, the seconds spent loading it (0 when it was kept loaded)
    /// and the seconds its stage then ran; nil in normal use (`unclip generate --timings`).
    public var timing: ((_ component: String, _ loadSeconds: Double, _ runSeconds: Double) -> Void)?
    /// The arithmetic of the stages' convolutions and large matrix products: fp32 (the reference, the default) or
    /// bf16 operands with fp32 accumulation (`Precision`). Norms, softmax, attention, embeddings and the samplers stay
    /// fp32 in both. Set with `use(precision:)`.
    public private(set) var precision: Precision = .fp32

    /// Runs the stages at `precision` from the next call on; bf16 needs a CPU with bf16 instructions
    /// (`Precision.hardwareSupportsBF16`), since oneDNN's emulation elsewhere is slower than fp32 or missing.
    public func use(precision: Precision) throws {
        if precision == .bf16 && !Precision.hardwareSupportsBF16 {
            throw PipelineArgumentError("bf16 needs a CPU with bf16 dot-product instructions (AVX-512 BF16 or AMX) and this one has neither; use fp32")
        }
        self.precision = precision
    }

    public let tokenizer: CLIPTokenizer
    let components: UnCLIPComponents
    /// Scratch memory of this pipeline's runs.
    let memory = BufferPool()

    public init(components: UnCLIPComponents, directory: PipelineDirectory? = nil) {
        self.components = components
        self.directory = directory
        tokenizer = components.tokenizer
    }

    /// The pipeline of a diffusers-layout directory; `variant` prefers that weight-file variant (e.g. "fp16"); nil
    /// picks fp32 files, falling back to fp16 ones.
    public convenience init(directory url: URL, variant: String? = nil) throws {
        let directory = try PipelineDirectory(url)
        self.init(components: try UnCLIPComponents(directory: directory, variant: variant), directory: directory)
    }

    /// Where the pipeline came from, for messages.
    public var name: String { directory?.url.path ?? "the pipeline" }
    /// Whether it has a prior (text-to-image) or not (image variations only).
    public var hasPrior: Bool { components.prior != nil }
    /// Whether it has the paper's autoregressive prior (`ar_prior`) beside the diffusion prior.
    public var hasAutoregressivePrior: Bool { components.autoregressivePrior != nil }
    /// Whether the model has the GLIDE-style baseline decoder (`glide_decoder`).
    public var hasBaselineDecoder: Bool { components.baselineDecoder != nil }
    /// Whether it has a CLIP image encoder (variations of images, manipulations).
    public var hasImageEncoder: Bool { components.imageEncoder != nil }
    /// The number of upsampler stages after the decoder.
    public var upsamplerCount: Int { components.upsamplers.count }
    /// The model's sampling defaults: diffusers' with its `unclip_defaults.json` applied.
    public var defaultOptions: SamplingOptions { components.defaults }
    /// The decoder UNet's configuration.
    public var decoderConfig: UNet2DConditionConfig { components.decoderConfig }

    /// Returns the scratch memory cached for reuse to the system (the next run allocates afresh).
    public func releaseScratchMemory() { memory.trim(to: 0) }

    /// Runs `body` as inference: no graph, this pipeline's scratch memory and precision.
    func inference<R>(_ body: () throws -> R) rethrows -> R {
        try memory.withPool { try withNoGrad { try withPrecision(precision, body) } }
    }

    /// Uses a component for the duration of `body`, releasing it and the stage's scratch memory afterwards unless
    /// components are kept.
    func with<V, R>(_ component: Component<V>, _ body: (V) throws -> R) throws -> R {
        defer {
            if !keepLoaded {
                component.release()
                memory.trim(to: 0)
            }
        }
        guard let timing else { return try component.use(keep: keepLoaded, body) }
        let clock = ContinuousClock(), start = clock.now
        var loaded = start
        let result = try component.use(keep: keepLoaded) { value in
            loaded = clock.now
            return try body(value)
        }
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
        timing(component.name, seconds(loaded - start), seconds(clock.now - loaded))
        return result
    }

    func releaseComponents() {
        let c = components
        c.textEncoder.release(); c.prior?.release(); c.autoregressivePrior?.release(); c.decoder.release(); c.baselineDecoder?.release(); c.imageEncoder?.release()
        for u in c.upsamplers { u.first.release(); u.last?.release() }
        memory.trim(to: 0)
    }

    func observer(_ progress: ((PipelineProgress) -> Bool)?) -> RunObserver { RunObserver(trace: trace, progress: progress) }

    func emit(_ name: String, _ t: @autoclosure () -> Tensor) { if let trace { trace(name, t()) } }

    // MARK: Text

    /// Encodes prompts for the prior and decoder, repeating each row `imagesPerPrompt` times and, with guidance,
    /// prepending the empty prompt's encoding.
    public func encodePrompts(_ prompts: [String], imagesPerPrompt n: Int, classifierFreeGuidance cfg: Bool) throws -> TextConditioning {
        try inference {
            try with(components.textEncoder) { encoder in
                let length = tokenizer.modelMaxLength
                func encode(_ texts: [String], _ tag: String) -> (Tensor, Tensor, [[Int]]) {
                    let batch = tokenizer(texts, padToLength: length)
                    let out = encoder(batch.ids)
                    emit("text_encoder.\(tag).text_embeds", out.textEmbeds)
                    emit("text_encoder.\(tag).last_hidden_state", out.lastHiddenState)
                    let rows = (0..<texts.count).flatMap { Array(repeating: $0, count: n) }  // repeat_interleave
                    return (repeatRows(out.textEmbeds, rows), repeatRows(out.lastHiddenState, rows), rows.map { batch.mask[$0] })
                }
                var (embeds, hidden, mask) = encode(prompts, "cond")
                if cfg {
                    let (ue, uh, um) = encode(Array(repeating: "", count: prompts.count), "uncond")
                    embeds = Tensor.concat([ue, embeds], axis: 0)
                    hidden = Tensor.concat([uh, hidden], axis: 0)
                    mask = um + mask
                }
                emit("prompt_embeds", embeds)
                emit("text_encoder_hidden_states", hidden)
                emit("text_mask", Tensor(shape: [mask.count, mask[0].count], mask.flatMap { $0.map(Float.init) }))
                return TextConditioning(promptEmbeds: embeds, hiddenStates: hidden, mask: mask)
            }
        }
    }

    // MARK: Stages

    /// The prior `options.prior`: text conditioning → CLIP image embeddings [B, E] (raw CLIP space).
    ///
    /// With `options.priorCandidates` > 1 it draws that many embeddings per image, one after the other from the
    /// stage's noise stream (the first is the embedding a single draw gives), and keeps for each image the one with
    /// the highest cosine to the caption's CLIP text embedding (paper §2.1).
    public func runPrior(_ text: TextConditioning, batch b: Int, options: SamplingOptions, noise: inout some NoiseSource,
                         progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        guard hasPrior else {
            throw PipelineArgumentError("\(name) has no prior: it is an image-variation pipeline; use `vary`")
        }
        guard let prior = options.prior == .diffusion ? components.prior : components.autoregressivePrior else {
            throw PipelineArgumentError("\(name) has no autoregressive prior (no ar_prior folder): train one with `unclip train ar-prior --out DIR`, or use the diffusion prior")
        }
        let candidates = options.priorCandidates
        return try inference {
            try with(prior) { prior in
                // One progress bar over all candidates.
                func observer(candidate j: Int) -> RunObserver {
                    RunObserver(trace: trace, progress: progress.map { report in
                        { p in report(PipelineProgress(stage: p.stage, step: j * p.stepCount + p.step, stepCount: candidates * p.stepCount)) }
                    })
                }
                var best = try prior.sample(text, batch: b, options: options, noise: &noise, observer: observer(candidate: 0))
                guard candidates > 1 else { return best }
                // z_t: the conditional rows of the text embeddings (the last b under guidance).
                let zt = text.promptEmbeds.sliced(axis: 0, (text.promptEmbeds.shape[0] - b)..<text.promptEmbeds.shape[0])
                var scores = (0..<b).map { cosineSimilarity(best, row: $0, zt, row: $0) }
                for j in 1..<candidates {
                    let candidate = try prior.sample(text, batch: b, options: options, noise: &noise, observer: observer(candidate: j))
                    let rows = (0..<b).map { r -> Int in
                        let s = cosineSimilarity(candidate, row: r, zt, row: r)
                        if s > scores[r] { scores[r] = s; return b + r }
                        return r
                    }
                    best = Tensor.concat([best, candidate], axis: 0).gatherRows(rows)
                }
                emit("image_embeddings.best_of_\(candidates)", best)
                return best
            }
        }
    }

    /// The decoder `options.decoder`: image embeddings [B, E] and text conditioning → the low-resolution image
    /// [B, 3, h, w] in [−1, 1]. The GLIDE-style baseline is given its learned null embedding in the image embedding's
    /// place, as it was trained, whatever `imageEmbeddings` holds (only its shape is used).
    public func runDecoder(imageEmbeddings: Tensor, text: TextConditioning, options: SamplingOptions,
                           noise: inout some NoiseSource, progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        let component = try decoderComponent(options.decoder)
        return try inference {
            try with(component) { decoder in
                let embeddings = options.decoder == .glide ? decoder.textProj.nullEmbeddings(imageEmbeddings.shape[0]) : imageEmbeddings
                let c = decoder.conditioning(imageEmbeddings: embeddings, text: text, guided: options.classifierFreeGuidance)
                emit("text_proj.encoder_hidden_states", c.context)
                emit("text_proj.additive_time", c.additiveTime)
                emit("decoder.attention_mask", Tensor(shape: [c.mask.count, c.mask[0].count], c.mask.flatMap { $0.map(Float.init) }))
                return try decoder.sample(c, batch: imageEmbeddings.shape[0], steps: options.decoderSteps,
                                          guidance: options.decoderGuidance, noise: &noise, observer: observer(progress))
            }
        }
    }

    /// The unCLIP decoder's learned null image embedding [n, E]: what its embedding dropout trains in the
    /// embedding's place, and the unconditional half of guidance gets — "no image embedding" for this decoder.
    public func nullImageEmbeddings(_ n: Int) throws -> Tensor {
        try inference { try with(components.decoder) { $0.textProj.nullEmbeddings(n) } }
    }

    /// The decoder component of `kind`; an error when the model has no GLIDE-style baseline.
    func decoderComponent(_ kind: DecoderKind) throws -> Component<UnCLIPDecoder> {
        guard kind == .glide else { return components.decoder }
        guard let baseline = components.baselineDecoder else {
            throw PipelineArgumentError("\(name) has no GLIDE-style decoder (no glide_decoder folder): train one with `unclip train decoder --out DIR --conditioning caption`, or use the unCLIP decoder")
        }
        return baseline
    }

    /// Refuses the GLIDE-style baseline for a run that gives the decoder an image embedding (`what` names the run).
    func requireUnCLIPDecoder(_ options: SamplingOptions, for what: String) throws {
        if options.decoder == .glide {
            throw PipelineArgumentError("\(what) gives the decoder a CLIP image embedding; the GLIDE-style decoder takes none: use the unCLIP decoder")
        }
    }

    /// Checks `options` (`SamplingOptions.validate`) and that this model draws `options.size`, before anything runs.
    func validate(_ options: SamplingOptions) throws {
        try options.validate()
        _ = try upsamplerStages(for: options)
    }

    /// The sides this model draws: the decoder's, then each upsampler stage's output.
    public var imageSizes: [Int] { [decoderConfig.sampleSize] + components.upsamplers.map(\.size) }

    /// How many upsampler stages run for `options.size` (nil: the model's default size): up to the stage that
    /// outputs that size, all of them for no size or one above the largest (`sizeNote` says what is drawn instead);
    /// an error for a size between.
    public func upsamplerStages(for options: SamplingOptions) throws -> Int {
        let sizes = imageSizes
        guard let size = options.size ?? components.defaults.size, size < sizes.last! else { return sizes.count - 1 }
        guard let k = sizes.firstIndex(of: size) else {
            let listed = sizes.map(String.init).joined(separator: ", ")
            throw PipelineArgumentError("\(name) draws \(listed) px images (its decoder and upsampler stages); \(size) is none of them: ask for one of those, or resize the image afterwards")
        }
        return k
    }

    /// What a user should be told when `size` is more than the model draws (nil when it draws that size).
    public func sizeNote(_ size: Int?) -> String? {
        guard let size, let largest = imageSizes.last, size > largest else { return nil }
        let stages = components.upsamplers.count
        return "\(name) draws at most \(largest) × \(largest) (\(stages == 0 ? "no upsampler" : stages == 1 ? "one upsampler stage" : "\(stages) upsampler stages")): drawing \(largest) × \(largest), not \(size) × \(size)"
    }

    /// The upsampler cascade: images [B, 3, h, w] of the decoder's size (or of a later stage's input size) → the
    /// final images [B, 3, H, W] in [−1, 1] (unchanged without upsamplers), from the stage that takes `h` and
    /// stopping at `options.size` (`upsamplerStages(for:)`). The first upsampler runs `options.superResSteps` steps,
    /// later ones `options.laterSuperResSteps` (default: the same).
    public func runSuperResolution(_ small: Tensor, options: SamplingOptions, noise: inout some NoiseSource,
                                   progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        let sizes = imageSizes, stages = try upsamplerStages(for: options)
        guard small.shape.count == 4, let start = sizes.firstIndex(of: small.shape[2]), small.shape[3] == small.shape[2] else {
            throw PipelineArgumentError("the upsamplers of \(name) take square images of \(sizes.dropLast().map(String.init).joined(separator: " or ")) px, not \(small.shape)")
        }
        return try inference {
            var x = small
            for k in start..<max(start, stages) {
                let upsampler = components.upsamplers[k]
                // Each stage after the first is conditioned on a valid image, as the decoder's output is.
                if k > 0 { x = x.clamped(min: -1, max: 1) }
                let steps = k == 0 ? options.superResSteps : options.laterSuperResSteps ?? options.superResSteps
                x = try upsampler.run(x, steps: steps, noise: &noise, observer: observer(progress)) { unet, body in
                    try with(unet, body)
                }
            }
            return x
        }
    }

    // MARK: Pipelines

    /// Text → images: [B, H, W, 3] floats in [0, 1], B = prompts × imagesPerPrompt.
    public func generate(prompts: [String], options: SamplingOptions = SamplingOptions(), noise: inout some NoiseSource,
                         progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        try validate(options)
        guard !prompts.isEmpty else { throw PipelineArgumentError("no prompt given") }
        if options.decoder == .glide {
            // GLIDE: the caption alone; no prior runs (its guidance scale is unused).
            _ = try decoderComponent(.glide)
            return try inference {
                let text = try encodePrompts(prompts, imagesPerPrompt: options.imagesPerPrompt, classifierFreeGuidance: options.classifierFreeGuidance)
                // runDecoder puts the baseline's null embedding in this placeholder's place.
                let placeholder = Tensor.zeros([prompts.count * options.imagesPerPrompt, text.promptEmbeds.shape[1]])
                return try finish(imageEmbeddings: placeholder, text: text, options: options, noise: &noise, progress: progress)
            }
        }
        guard hasPrior else {
            throw PipelineArgumentError("\(name) has no prior: it is an image-variation pipeline; use `vary`")
        }
        return try inference {
            let b = prompts.count * options.imagesPerPrompt
            let text = try encodePrompts(prompts, imagesPerPrompt: options.imagesPerPrompt, classifierFreeGuidance: options.classifierFreeGuidance)
            let embeddings = try NonFiniteOutput.check(runPrior(text, batch: b, options: options, noise: &noise, progress: progress), "prior")
            return try finish(imageEmbeddings: embeddings, text: text, options: options, noise: &noise, progress: progress)
        }
    }

    /// Text and given CLIP image embeddings [P, E] (one per prompt) → images, the prior skipped: the decoder draws
    /// `options.imagesPerPrompt` images of each embedding, conditioned on its caption as in `generate`. With the
    /// embedding of a real image of the caption this measures the decoder apart from the prior.
    public func generate(prompts: [String], imageEmbeddings given: Tensor, options: SamplingOptions = SamplingOptions(),
                         noise: inout some NoiseSource, progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        try validate(options)
        guard !prompts.isEmpty else { throw PipelineArgumentError("no prompt given") }
        try requireUnCLIPDecoder(options, for: "decoding given image embeddings")
        guard given.rank == 2, given.shape[0] == prompts.count else {
            throw PipelineArgumentError("image embeddings of shape \(given.shape) for \(prompts.count) prompts: need [\(prompts.count), E]")
        }
        return try inference {
            let text = try encodePrompts(prompts, imagesPerPrompt: options.imagesPerPrompt, classifierFreeGuidance: options.classifierFreeGuidance)
            let rows = (0..<prompts.count).flatMap { Array(repeating: $0, count: options.imagesPerPrompt) }
            let embeddings = repeatRows(given, rows)
            emit("image_embeddings", embeddings)
            return try finish(imageEmbeddings: embeddings, text: text, options: options, noise: &noise, progress: progress)
        }
    }

    /// Decoder and upsamplers from given CLIP image embeddings [B, E] and text conditioning.
    public func finish(imageEmbeddings: Tensor, text: TextConditioning, options: SamplingOptions, noise: inout some NoiseSource,
                       progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        try inference {
            let small = try NonFiniteOutput.check(runDecoder(imageEmbeddings: imageEmbeddings, text: text, options: options,
                                                             noise: &noise, progress: progress), "decoder")
            let large = try NonFiniteOutput.check(runSuperResolution(small, options: options, noise: &noise, progress: progress),
                                                  "super-resolution")
            let image = Self.pixels(large)
            emit("image", image)
            return image
        }
    }

    /// Model-space images [B, 3, H, W] in [−1, 1] → [B, H, W, 3] in [0, 1].
    static func pixels(_ x: Tensor) -> Tensor { (x * 0.5 + 0.5).clamped(min: 0, max: 1).permuted([0, 2, 3, 1]) }

    /// CLIP image embeddings [N, E] of preprocessed pixel values [N, 3, S, S] (the variation pipeline's encoder).
    public func imageEmbeddings(pixelValues: Tensor) throws -> Tensor {
        guard let encoder = components.imageEncoder else {
            throw PipelineArgumentError("\(name) has no image_encoder: image manipulations need the CLIP image encoder")
        }
        return try inference { try with(encoder) { $0(pixelValues) } }
    }

    /// Image variations: preprocessed pixel values [N, 3, S, S] (or precomputed embeddings) → [N·n, H, W, 3] in [0, 1].
    ///
    /// Both guidance halves use the empty prompt, as in diffusers' `UnCLIPImageVariationPipeline`.
    public func vary(pixelValues: Tensor? = nil, imageEmbeddings given: Tensor? = nil, options: SamplingOptions = SamplingOptions(),
                     noise: inout some NoiseSource, progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        try validate(options)
        try requireUnCLIPDecoder(options, for: "vary")
        var options = options
        options.priorGuidance = 1  // no prior here: guidance is decided by the decoder scale alone
        return try inference {
            guard let embeds = try given ?? pixelValues.map({ try imageEmbeddings(pixelValues: $0) }) else {
                throw PipelineArgumentError("vary needs an image or image embeddings")
            }
            return try generate(prompts: Array(repeating: "", count: embeds.shape[0]), imageEmbeddings: embeds, options: options,
                                noise: &noise, progress: progress)
        }
    }
}

extension UnCLIPPipeline {
    /// Pipeline output [B, H, W, 3] in [0, 1] → 8-bit images.
    ///
    /// Matches diffusers' `numpy_to_pil`: (x·255).round() with NumPy's half-to-even rounding.
    public static func images(from output: Tensor) -> [RGBImage] {
        let (b, h, w) = (output.shape[0], output.shape[1], output.shape[2])
        return (0..<b).map { i in
            let src = output.data + i * h * w * 3
            return RGBImage(width: w, height: h, pixels: (0..<(h * w * 3)).map { UInt8(clamping: Int((src[$0] * 255).rounded(.toNearestOrEven))) })
        }
    }
}

/// Rows of `t` (along axis 0) picked by `rows`, e.g. [0, 0, 1, 1] for repeat_interleave(2).
func repeatRows(_ t: Tensor, _ rows: [Int]) -> Tensor {
    let inner = Array(t.shape.dropFirst())
    return t.reshaped([t.shape[0], -1]).gatherRows(rows).reshaped([rows.count] + inner)
}
