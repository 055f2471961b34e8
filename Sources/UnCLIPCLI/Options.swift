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

    func pipeline() throws -> UnCLIPPipeline {
        if let model { return try UnCLIPPipeline(directory: URL(fileURLWithPath: model), variant: variant) }
        guard let embedded = EmbeddedModel.url else {
            throw ValidationError("this build has no embedded model (its resources are missing): pass --model DIR, a diffusers unCLIP directory such as Karlo")
        }
        return try UnCLIPPipeline(directory: embedded, variant: variant)
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

    @Option(help: "Classifier-free guidance scale of the decoder (default: the model's; diffusers' 8, the embedded model's 3).")
    var decoderGuidance: Float?

    @Flag(help: "No progress bars.")
    var quiet = false

    func validate() throws {
        guard n >= 1 else { throw ValidationError("-n must be at least 1 (got \(n))") }
        if let decoderSteps, decoderSteps < 2 { throw ValidationError("--decoder-steps must be at least 2 (got \(decoderSteps))") }
        if let superResSteps, superResSteps < 2 { throw ValidationError("--super-res-steps must be at least 2 (got \(superResSteps))") }
        if let noise, !FileManager.default.fileExists(atPath: noise) { throw ValidationError("--noise: no such file: \(noise)") }
    }

    /// The model's defaults (diffusers' unless its directory says otherwise), with the options given here.
    func options(for pipeline: UnCLIPPipeline) throws -> SamplingOptions {
        var o = pipeline.defaultOptions
        o.imagesPerPrompt = n
        if let decoderSteps { o.decoderSteps = decoderSteps }
        if let superResSteps { o.superResSteps = superResSteps }
        if let decoderGuidance { o.decoderGuidance = decoderGuidance }
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

    func validate() throws {
        if let priorSteps, priorSteps < 2 { throw ValidationError("--prior-steps must be at least 2 (got \(priorSteps))") }
    }

    /// `options` with the settings given here.
    func applied(to options: SamplingOptions) -> SamplingOptions {
        var o = options
        if let priorSteps { o.priorSteps = priorSteps }
        if let priorGuidance { o.priorGuidance = priorGuidance }
        return o
    }
}

/// Writes pipeline output images ([B, H, W, 3] in [0, 1]) as PNG: one file, or numbered files plus a grid.
func writeImages(_ images: Tensor, to path: String) throws -> [String] {
    let list = UnCLIPPipeline.images(from: images)
    let url = URL(fileURLWithPath: path)
    if list.count == 1 {
        try list[0].writePNG(to: url)
        return [url.path]
    }
    var written: [String] = []
    let stem = url.deletingPathExtension().path, ext = url.pathExtension.isEmpty ? "png" : url.pathExtension
    for (i, image) in list.enumerated() {
        let file = URL(fileURLWithPath: "\(stem)-\(i + 1).\(ext)")
        try image.writePNG(to: file)
        written.append(file.path)
    }
    try RGBImage.grid(list, columns: min(list.count, 4), padding: 4).writePNG(to: url)
    written.insert(url.path + " (grid)", at: 0)
    return written
}
