import ArgumentParser
import Foundation
import UnCLIPModels
import UnCLIPImage
import UnCLIPShapesModel

/// Where the model comes from.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("A diffusers-layout unCLIP directory (e.g. Karlo); default: the embedded ShapesWorld model.", valueName: "dir"))
    var model: String?

    @Option(help: ArgumentHelp("Prefer this weight-file variant (e.g. fp16); fp32 files are used otherwise.", valueName: "name"))
    var variant: String?

    @Option(help: ArgumentHelp("Arithmetic of convolutions and matrix products: fp32, bf16 (bf16 operands, fp32 accumulation; needs AVX-512 BF16 or AMX) or auto (bf16 where the CPU has it, else fp32).", valueName: "fp32|bf16|auto"))
    var precision: PrecisionChoice = .fp32

    func validate() throws { try precision.validate() }

    func pipeline() throws -> UnCLIPPipeline {
        let pipeline: UnCLIPPipeline
        if let model {
            pipeline = try UnCLIPPipeline(directory: URL(fileURLWithPath: model), variant: variant)
        } else {
            guard let embedded = EmbeddedModel.url else {
                throw ValidationError("this build has no embedded model (its resources are missing): pass --model DIR, a diffusers unCLIP directory such as Karlo")
            }
            pipeline = try UnCLIPPipeline(directory: embedded, variant: variant)
        }
        try pipeline.use(precision: precision.resolved())
        return pipeline
    }
}

/// `--precision`: a precision, or `auto`.
enum PrecisionChoice: String, ExpressibleByArgument, CaseIterable {
    case fp32, bf16, auto

    /// Refuses an explicit bf16 on a CPU that would only emulate it (slower than fp32).
    func validate() throws {
        if self == .bf16 && !Precision.hardwareSupportsBF16 {
            throw ValidationError("--precision bf16: this CPU has no bf16 dot-product instructions (AVX-512 BF16 or AMX); use --precision fp32 or auto")
        }
    }

    /// The precision to run; `auto` says on stderr what it chose and why.
    func resolved() -> Precision {
        switch self {
        case .fp32: return .fp32
        case .bf16: return .bf16
        case .auto:
            let chosen = Precision.automatic
            FileHandle.standardError.write(Data("precision: \(chosen) (auto: this CPU \(Precision.hardwareSupportsBF16 ? "has" : "has no") bf16 dot-product instructions)\n".utf8))
            return chosen
        }
    }
}

/// Sampling settings shared by `generate` and `vary`.
struct SamplingArguments: ParsableArguments {
    @Option(name: .shortAndLong, help: "Images per prompt (or per input image).")
    var n = 1

    @Option(help: "Seed of the project's Philox noise (same seed, same image on every machine).")
    var seed: UInt64 = 0

    @Option(help: ArgumentHelp("Replay recorded noise from a safetensors file (tensors prior.K, decoder.K, super_res.K).", valueName: "file"))
    var noise: String?

    @Option(help: "Decoder denoising steps (default: the model's; diffusers' 25).")
    var decoderSteps: Int?

    @Option(help: "Super-resolution denoising steps (default: the model's; diffusers' 7).")
    var superResSteps: Int?

    @Option(name: .customLong("super-res-2-steps"), help: "Denoising steps of the second upsampler (the embedded model's 128 → 512; default: the model's, else --super-res-steps).")
    var superRes2Steps: Int?

    @Option(help: "Classifier-free guidance scale of the decoder (default: the model's; diffusers' 8, the embedded model's 3).")
    var decoderGuidance: Float?

    @Option(help: ArgumentHelp("""
        Side of the images: the decoder's or one upsampler stage's output, where the cascade stops (the embedded \
        model: 32, 128 or 512; Karlo: 64 or 256). Default: the model's (the embedded model's 128); a size above the \
        model's largest draws its largest and says so.
        """, valueName: "px"))
    var size: Int?

    @Flag(help: "No progress bars.")
    var quiet = false

    func validate() throws {
        try validateCount(n)
        try validateSteps(decoderSteps, "--decoder-steps")
        try validateSteps(superResSteps, "--super-res-steps")
        try validateSteps(superRes2Steps, "--super-res-2-steps")
        try validateGuidance(decoderGuidance, "--decoder-guidance")
        if let size, !(1...SamplingOptions.maxSize).contains(size) {
            throw ValidationError("--size must be in 1 … \(SamplingOptions.maxSize) pixels (got \(size))")
        }
        if let noise, !FileManager.default.fileExists(atPath: noise) { throw ValidationError("--noise: no such file: \(noise)") }
    }

    /// The model's defaults (diffusers' unless its directory says otherwise), with the options given here; step
    /// counts are checked against the model's schedulers before any weights load.
    func options(for pipeline: UnCLIPPipeline) throws -> SamplingOptions {
        var o = pipeline.defaultOptions
        o.imagesPerPrompt = n
        if let decoderSteps { o.decoderSteps = decoderSteps }
        if let superResSteps { o.superResSteps = superResSteps }
        if let decoderGuidance { o.decoderGuidance = decoderGuidance }
        if let size { o.size = size }
        if let superRes2Steps { o.laterSuperResSteps = superRes2Steps }
        try checkSteps(o.decoderSteps, "--decoder-steps", scheduler: "decoder_scheduler", in: pipeline)
        do {
            for k in 0..<(try pipeline.upsamplerStages(for: o)) {
                let steps = k == 0 ? o.superResSteps : o.laterSuperResSteps ?? o.superResSteps
                try checkSteps(steps, k == 0 ? "--super-res-steps" : "--super-res-2-steps", scheduler: "\(Stage.superResolution(k).key)_scheduler", in: pipeline)
            }
        } catch let error as PipelineArgumentError { throw ValidationError("--size: \(error)") }
        if let note = pipeline.sizeNote(o.size) { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
        return o
    }

    func noiseSource() throws -> any NoiseSource {
        if let noise { return try RecordedNoise(contentsOf: URL(fileURLWithPath: noise)) }
        return SeededNoise(seed: seed)
    }
}

/// The prior's settings shared by `generate` and `edit`.
struct PriorArguments: ParsableArguments {
    @Option(help: "Prior denoising steps (default: the model's; diffusers' 25).")
    var priorSteps: Int?

    @Option(help: "Classifier-free guidance scale of the prior (default: the model's; diffusers' 4, the embedded model's 2).")
    var priorGuidance: Float?

    @Option(help: ArgumentHelp("Which prior draws the CLIP image embedding: diffusion (the model's prior) or ar (the paper's autoregressive prior, the model's ar_prior).", valueName: "diffusion|ar"))
    var prior: PriorKind = .diffusion

    @Option(help: "Embeddings the prior draws per image, keeping the one closest to the caption's CLIP text embedding (the paper's trick for the diffusion prior: 2).")
    var priorCandidates = 1

    func validate() throws {
        try validateSteps(priorSteps, "--prior-steps")
        try validateGuidance(priorGuidance, "--prior-guidance")
        guard (1...SamplingOptions.maxPriorCandidates).contains(priorCandidates) else {
            throw ValidationError("--prior-candidates must be in 1 … \(SamplingOptions.maxPriorCandidates) (got \(priorCandidates))")
        }
    }

    /// `options` with the settings given here, the prior's steps checked against its scheduler.
    func applied(to options: SamplingOptions, in pipeline: UnCLIPPipeline) throws -> SamplingOptions {
        var o = options
        if let priorSteps { o.priorSteps = priorSteps }
        if let priorGuidance { o.priorGuidance = priorGuidance }
        o.prior = prior
        o.priorCandidates = priorCandidates
        if prior == .autoregressive && pipeline.hasPrior && !pipeline.hasAutoregressivePrior {
            throw ValidationError("--prior ar: \(pipeline.name) has no autoregressive prior (no ar_prior folder); train one with `unclip train ar-prior --out DIR`")
        }
        if pipeline.hasPrior { try checkSteps(o.priorSteps, "--prior-steps", scheduler: "prior_scheduler", in: pipeline) }
        return o
    }
}

extension PriorKind: ExpressibleByArgument {}
extension BenchWeights: ExpressibleByArgument {}

/// Every unCLIP model trains on 1000 timesteps, so no sampler takes more steps; the model's own count is checked
/// again once its directory is read (`checkSteps`).
let maxSamplingSteps = 1000

/// `-n`: at least one image, and few enough that the batch fits (`SamplingOptions.maxImagesPerPrompt`).
func validateCount(_ n: Int) throws {
    guard (1...SamplingOptions.maxImagesPerPrompt).contains(n) else {
        throw ValidationError("-n must be in 1 … \(SamplingOptions.maxImagesPerPrompt) (got \(n)); run the command again for more images")
    }
}

/// A step count option: 2 (the scheduler divides by steps − 1) … `maxSamplingSteps`.
func validateSteps(_ steps: Int?, _ flag: String) throws {
    guard let steps else { return }
    guard (2...maxSamplingSteps).contains(steps) else {
        throw ValidationError("\(flag) must be in 2 … \(maxSamplingSteps) (got \(steps))")
    }
}

/// A guidance scale option: finite and ≥ 0 (at most 1 in both stages turns guidance off).
func validateGuidance(_ scale: Float?, _ flag: String) throws {
    guard let scale else { return }
    guard scale.isFinite, scale >= 0, scale <= 1000 else {
        throw ValidationError("\(flag) must be a number in 0 … 1000 (got \(scale))")
    }
}

/// Refuses a step count above the model's `num_train_timesteps`, naming the flag, before any weights load.
func checkSteps(_ steps: Int, _ flag: String, scheduler: String, in pipeline: UnCLIPPipeline) throws {
    guard let directory = pipeline.directory, directory.has(scheduler) else { return }
    let limit = try directory.loadScheduler(scheduler).config.numTrainTimesteps
    guard steps <= limit else {
        throw ValidationError("\(flag) must be at most \(limit), the model's num_train_timesteps (got \(steps))")
    }
}

/// Writes pipeline output images ([B, H, W, 3] in [0, 1]) as PNG: one file, or numbered files plus a grid
/// (`OutputPlan.images`, checked before the run).
func writeImages(_ images: Tensor, to path: String) throws -> [String] {
    let list = UnCLIPPipeline.images(from: images)
    let url = URL(fileURLWithPath: path)
    if list.count == 1 {
        try list[0].writePNG(to: url)
        return [url.path]
    }
    let files = try writeNumbered(list, beside: path)
    try RGBImage.grid(list, columns: min(list.count, 4), padding: 4).writePNG(to: url)
    return [url.path + " (grid)"] + files
}
