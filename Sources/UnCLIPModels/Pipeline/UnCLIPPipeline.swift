import Foundation
import UnCLIPNN
import UnCLIPImage

/// Sampling settings of the text-to-image and variation pipelines; every default is diffusers'.
public struct SamplingOptions: Sendable {
    /// Images drawn per prompt (or per input image).
    public var imagesPerPrompt = 1
    public var priorSteps = 25
    public var decoderSteps = 25
    public var superResSteps = 7
    /// Classifier-free guidance scale of the prior (applied to its x̂₀ prediction).
    public var priorGuidance: Float = 4.0
    /// Classifier-free guidance scale of the decoder (applied to ε).
    public var decoderGuidance: Float = 8.0

    public init() {}

    /// Guidance is on when either scale exceeds 1; it is then used by both stages (as diffusers does).
    public var classifierFreeGuidance: Bool { priorGuidance > 1 || decoderGuidance > 1 }

    func validate() throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw PipelineArgumentError(message) } }
        try check(imagesPerPrompt >= 1, "images per prompt must be at least 1 (got \(imagesPerPrompt))")
        try check(priorSteps >= 2, "prior steps must be at least 2 (got \(priorSteps)); the scheduler divides by steps − 1")
        try check(decoderSteps >= 2, "decoder steps must be at least 2 (got \(decoderSteps))")
        try check(superResSteps >= 2, "super-resolution steps must be at least 2 (got \(superResSteps))")
        try check(priorGuidance.isFinite && decoderGuidance.isFinite, "guidance scales must be finite numbers")
    }
}

/// A model's own sampling settings: the contents of `unclip_defaults.json` in its pipeline directory. The keys are
/// `UnCLIPPipeline.__call__`'s argument names; a setting left out keeps diffusers' default, and diffusers itself
/// ignores the file. A model trained here ships one when its best settings differ from Karlo's (the ShapesWorld
/// models' prior and decoder guidance, docs/evaluation.md); `unclip train all` writes it from its `sampling` section.
public struct SamplingDefaults: Codable, Equatable, Sendable {
    public var prior_num_inference_steps, decoder_num_inference_steps, super_res_num_inference_steps: Int?
    public var prior_guidance_scale, decoder_guidance_scale: Float?

    public init(prior_num_inference_steps: Int? = nil, decoder_num_inference_steps: Int? = nil,
                super_res_num_inference_steps: Int? = nil, prior_guidance_scale: Float? = nil,
                decoder_guidance_scale: Float? = nil) {
        self.prior_num_inference_steps = prior_num_inference_steps
        self.decoder_num_inference_steps = decoder_num_inference_steps
        self.super_res_num_inference_steps = super_res_num_inference_steps
        self.prior_guidance_scale = prior_guidance_scale
        self.decoder_guidance_scale = decoder_guidance_scale
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case prior_num_inference_steps, decoder_num_inference_steps, super_res_num_inference_steps
        case prior_guidance_scale, decoder_guidance_scale
    }

    /// `options` with every setting this file gives replaced.
    public func applied(to options: SamplingOptions) -> SamplingOptions {
        var o = options
        o.priorSteps = prior_num_inference_steps ?? o.priorSteps
        o.decoderSteps = decoder_num_inference_steps ?? o.decoderSteps
        o.superResSteps = super_res_num_inference_steps ?? o.superResSteps
        o.priorGuidance = prior_guidance_scale ?? o.priorGuidance
        o.decoderGuidance = decoder_guidance_scale ?? o.decoderGuidance
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
}

/// The unCLIP text-to-image and image-variation pipelines over a diffusers-layout directory.
///
/// Components are loaded when their stage runs and released afterwards (unless `keepLoaded`), so Karlo's 3.4 B
/// parameters never sit in memory at once. Inference records no autodiff graph.
public final class UnCLIPPipeline {
    public let directory: PipelineDirectory
    /// Weight-file variant to prefer (e.g. "fp16"); nil picks fp32 files, falling back to fp16 ones.
    public var variant: String?
    /// Keep every component in memory between calls (faster repeated runs, more memory).
    public var keepLoaded = false
    /// Called with (name, tensor) for every intermediate (names as in the parity fixtures); nil in normal use.
    public var trace: ((String, Tensor) -> Void)?

    public let tokenizer: CLIPTokenizer
    private var cache: [String: Module] = [:]

    public init(directory url: URL, variant: String? = nil) throws {
        directory = try PipelineDirectory(url)
        self.variant = variant
        tokenizer = try directory.loadTokenizer()
    }

    /// Loads (or reuses) a component for the duration of `body`.
    func with<M: Module, R>(_ name: String, _ load: () throws -> M, _ body: (M) throws -> R) throws -> R {
        let model: M
        if let cached = cache[name] as? M { model = cached } else { model = try load() }
        if keepLoaded { cache[name] = model }
        defer { if !keepLoaded { BufferPool.shared.trim(to: 0) } }
        return try body(model)
    }

    func emit(_ name: String, _ t: @autoclosure () -> Tensor) { if let trace { trace(name, t()) } }

    // MARK: Text

    /// Encodes prompts for the prior and decoder, repeating each row `imagesPerPrompt` times and, with guidance,
    /// prepending the empty prompt's encoding.
    public func encodePrompts(_ prompts: [String], imagesPerPrompt n: Int, classifierFreeGuidance cfg: Bool) throws -> TextConditioning {
        try with("text_encoder", { try directory.loadTextEncoder(variant: variant) }) { encoder in
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

    // MARK: Stages

    /// The diffusion prior: text conditioning → CLIP image embeddings [B, E] (raw CLIP space).
    public func runPrior(_ text: TextConditioning, batch b: Int, options: SamplingOptions, noise: inout some NoiseSource,
                         progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        var scheduler = try directory.loadScheduler("prior_scheduler")
        try scheduler.setTimesteps(options.priorSteps)
        let cfg = options.classifierFreeGuidance
        return try with("prior", { try directory.loadPrior(variant: variant) }) { prior in
            var draws = 0
            var x = try noise.noise(stage: .prior, index: draws, shape: [b, prior.config.embeddingDim]) * scheduler.initNoiseSigma
            draws += 1
            for (i, t) in scheduler.timesteps.enumerated() {
                let input = cfg ? Tensor.concat([x, x], axis: 0) : x
                emit("prior.step.\(i).input", input)
                let out = prior(input, timestep: t, projEmbedding: text.promptEmbeds, encoderHiddenStates: text.hiddenStates,
                                attentionMask: text.mask)
                emit("prior.step.\(i).output", out)
                var guided = out
                if cfg {
                    let halves = out.chunked(2, axis: 0)  // [unconditional, conditional]
                    guided = halves[0] + options.priorGuidance * (halves[1] - halves[0])
                }
                emit("prior.step.\(i).model_output", guided)
                let stepNoise = t > 0 ? try noise.noise(stage: .prior, index: draws, shape: x.shape) : nil
                if t > 0 { draws += 1 }
                x = try scheduler.step(modelOutput: guided, timestep: t, sample: x,
                                       prevTimestep: scheduler.previousTimestep(afterIndex: i), noise: stepNoise)
                emit("prior.latents.\(i + 1)", x)
                if let progress, !progress(PipelineProgress(stage: .prior, step: i + 1, stepCount: scheduler.timesteps.count)) {
                    throw PipelineCancelled()
                }
            }
            let embeddings = prior.postProcessLatents(x)
            emit("image_embeddings", embeddings)
            return embeddings
        }
    }

    /// The decoder: image embeddings [B, E] and text conditioning → the low-resolution image [B, 3, h, w] in [−1, 1].
    public func runDecoder(imageEmbeddings: Tensor, text: TextConditioning, options: SamplingOptions,
                           noise: inout some NoiseSource, progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        let cfg = options.classifierFreeGuidance
        let (context, additiveTime) = try with("text_proj", { try directory.loadTextProj(variant: variant) }) { proj in
            proj(imageEmbeddings: imageEmbeddings, promptEmbeds: text.promptEmbeds, textEncoderHiddenStates: text.hiddenStates,
                 classifierFreeGuidance: cfg)
        }
        emit("text_proj.encoder_hidden_states", context)
        emit("text_proj.additive_time", additiveTime)
        let extra = context.shape[1] - text.mask[0].count
        let mask = text.mask.map { Array(repeating: 1, count: extra) + $0 }  // the CLIP tokens are always attended
        emit("decoder.attention_mask", Tensor(shape: [mask.count, mask[0].count], mask.flatMap { $0.map(Float.init) }))

        var scheduler = try directory.loadScheduler("decoder_scheduler")
        try scheduler.setTimesteps(options.decoderSteps)
        let b = imageEmbeddings.shape[0]
        return try with("decoder", { try directory.loadDecoder(variant: variant) }) { decoder in
            let c = decoder.config.inChannels, s = decoder.config.sampleSize
            var draws = 0
            var x = try noise.noise(stage: .decoder, index: draws, shape: [b, c, s, s]) * scheduler.initNoiseSigma
            draws += 1
            for (i, t) in scheduler.timesteps.enumerated() {
                let input = cfg ? Tensor.concat([x, x], axis: 0) : x
                let out = decoder(input, timestep: t, encoderHiddenStates: context, classLabels: additiveTime, attentionMask: mask)
                emit("decoder.step.\(i).output", out)
                var modelOutput = out
                if cfg {
                    // ε is guided; the variance channels come from the conditional half only.
                    let halves = out.chunked(2, axis: 0)
                    let uncond = halves[0].split(sizes: [c, out.shape[1] - c], axis: 1)
                    let cond = halves[1].split(sizes: [c, out.shape[1] - c], axis: 1)
                    let eps = uncond[0] + options.decoderGuidance * (cond[0] - uncond[0])
                    modelOutput = Tensor.concat([eps, cond[1]], axis: 1)
                }
                emit("decoder.step.\(i).model_output", modelOutput)
                let shape = scheduler.noiseShape(modelOutputShape: modelOutput.shape, sampleShape: x.shape)
                let stepNoise = t > 0 ? try noise.noise(stage: .decoder, index: draws, shape: shape) : nil
                if t > 0 { draws += 1 }
                x = try scheduler.step(modelOutput: modelOutput, timestep: t, sample: x,
                                       prevTimestep: scheduler.previousTimestep(afterIndex: i), noise: stepNoise)
                emit("decoder.latents.\(i + 1)", x)
                if let progress, !progress(PipelineProgress(stage: .decoder, step: i + 1, stepCount: scheduler.timesteps.count)) {
                    throw PipelineCancelled()
                }
            }
            let small = x.clamped(min: -1, max: 1)
            emit("image_small", small)
            return small
        }
    }

    /// Super-resolution: the low-resolution image [B, 3, h, w] → the final image [B, 3, H, W] in [−1, 1].
    public func runSuperResolution(_ small: Tensor, options: SamplingOptions, noise: inout some NoiseSource,
                                   progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        var scheduler = try directory.loadScheduler("super_res_scheduler")
        try scheduler.setTimesteps(options.superResSteps)
        let steps = scheduler.timesteps
        let hasLast = directory.has("super_res_last")
        var x: Tensor? = nil
        var upscaled: Tensor? = nil
        var draws = 0
        // super_res_first runs every step but the last; super_res_last only the last (diffusers' rule).
        func run(_ unet: UNet2DModel, _ indices: Range<Int>) throws {
            let size = unet.config.sampleSize
            if upscaled == nil {
                // Matches diffusers: antialiased bicubic (a = −0.5), align_corners = False.
                upscaled = small.resizedBicubicAntialiased(height: size, width: size)
                emit("image_upscaled", upscaled!)
            }
            if x == nil {
                x = try noise.noise(stage: .superResolution, index: draws, shape: [small.shape[0], small.shape[1], size, size]) * scheduler.initNoiseSigma
                draws += 1
            }
            for i in indices {
                let t = steps[i]
                let out = unet(Tensor.concat([x!, upscaled!], axis: 1), timestep: t)
                emit("super_res.step.\(i).output", out)
                let stepNoise = t > 0 ? try noise.noise(stage: .superResolution, index: draws, shape: x!.shape) : nil
                if t > 0 { draws += 1 }
                x = try scheduler.step(modelOutput: out, timestep: t, sample: x!,
                                       prevTimestep: scheduler.previousTimestep(afterIndex: i), noise: stepNoise)
                emit("super_res.latents.\(i + 1)", x!)
                if let progress, !progress(PipelineProgress(stage: .superResolution, step: i + 1, stepCount: steps.count)) {
                    throw PipelineCancelled()
                }
            }
        }
        let firstCount = hasLast ? steps.count - 1 : steps.count
        try with("super_res_first", { try directory.loadSuperRes("super_res_first", variant: variant) }) { try run($0, 0..<firstCount) }
        if hasLast {
            try with("super_res_last", { try directory.loadSuperRes("super_res_last", variant: variant) }) { try run($0, firstCount..<steps.count) }
        }
        return x!
    }

    // MARK: Pipelines

    /// Text → images: [B, H, W, 3] floats in [0, 1], B = prompts × imagesPerPrompt.
    public func generate(prompts: [String], options: SamplingOptions = SamplingOptions(), noise: inout some NoiseSource,
                         progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        try options.validate()
        guard !prompts.isEmpty else { throw PipelineArgumentError("no prompt given") }
        guard directory.has("prior") else {
            throw PipelineArgumentError("\(directory.url.path) has no prior: it is an image-variation pipeline; use `vary`")
        }
        return try withNoGrad {
            let b = prompts.count * options.imagesPerPrompt
            let text = try encodePrompts(prompts, imagesPerPrompt: options.imagesPerPrompt, classifierFreeGuidance: options.classifierFreeGuidance)
            let embeddings = try runPrior(text, batch: b, options: options, noise: &noise, progress: progress)
            return try finish(imageEmbeddings: embeddings, text: text, options: options, noise: &noise, progress: progress)
        }
    }

    /// Text and given CLIP image embeddings [P, E] (one per prompt) → images, the prior skipped: the decoder draws
    /// `options.imagesPerPrompt` images of each embedding, conditioned on its caption as in `generate`. With the
    /// embedding of a real image of the caption this measures the decoder apart from the prior.
    public func generate(prompts: [String], imageEmbeddings given: Tensor, options: SamplingOptions = SamplingOptions(),
                         noise: inout some NoiseSource, progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        try options.validate()
        guard !prompts.isEmpty else { throw PipelineArgumentError("no prompt given") }
        guard given.rank == 2, given.shape[0] == prompts.count else {
            throw PipelineArgumentError("image embeddings of shape \(given.shape) for \(prompts.count) prompts: need [\(prompts.count), E]")
        }
        return try withNoGrad {
            let text = try encodePrompts(prompts, imagesPerPrompt: options.imagesPerPrompt, classifierFreeGuidance: options.classifierFreeGuidance)
            let rows = (0..<prompts.count).flatMap { Array(repeating: $0, count: options.imagesPerPrompt) }
            let embeddings = repeatRows(given, rows)
            emit("image_embeddings", embeddings)
            return try finish(imageEmbeddings: embeddings, text: text, options: options, noise: &noise, progress: progress)
        }
    }

    /// Decoder and super-resolution from given CLIP image embeddings [B, E] and text conditioning.
    public func finish(imageEmbeddings: Tensor, text: TextConditioning, options: SamplingOptions, noise: inout some NoiseSource,
                       progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        try withNoGrad {
            let small = try runDecoder(imageEmbeddings: imageEmbeddings, text: text, options: options, noise: &noise, progress: progress)
            let large = try runSuperResolution(small, options: options, noise: &noise, progress: progress)
            let image = (large * 0.5 + 0.5).clamped(min: 0, max: 1).permuted([0, 2, 3, 1])  // NHWC
            emit("image", image)
            return image
        }
    }

    /// CLIP image embeddings [N, E] of preprocessed pixel values [N, 3, S, S] (the variation pipeline's encoder).
    public func imageEmbeddings(pixelValues: Tensor) throws -> Tensor {
        try withNoGrad {
            try with("image_encoder", { try directory.loadImageEncoder(variant: variant) }) { $0(pixelValues) }
        }
    }

    /// Image variations: preprocessed pixel values [N, 3, S, S] (or precomputed embeddings) → [N·n, H, W, 3] in [0, 1].
    ///
    /// Both guidance halves use the empty prompt, as in diffusers' `UnCLIPImageVariationPipeline`.
    public func vary(pixelValues: Tensor? = nil, imageEmbeddings given: Tensor? = nil, options: SamplingOptions = SamplingOptions(),
                     noise: inout some NoiseSource, progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        try options.validate()
        var options = options
        options.priorGuidance = 1  // no prior here: guidance is decided by the decoder scale alone
        return try withNoGrad {
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
