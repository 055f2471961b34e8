import ArgumentParser
import Foundation
import UnCLIPModels
import UnCLIPImage

/// `unclip generate`: text → image.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw images from a text prompt: CLIP text encoder → prior → decoder → super-resolution.",
        discussion: """
            Defaults are diffusers' UnCLIPPipeline defaults (prior 25 steps, decoder 25, super-resolution 7; guidance \
            4.0 and 8.0). With --noise, the recorded draws of a reference run are replayed, reproducing its image.
            """)

    @Argument(help: "The caption to draw.")
    var prompt: String

    @OptionGroup var model: ModelOptions
    @OptionGroup var sampling: SamplingArguments

    @Option(help: "Prior denoising steps.")
    var priorSteps = 25

    @Option(help: "Classifier-free guidance scale of the prior.")
    var priorGuidance: Float = 4.0

    @Option(name: .shortAndLong, help: "Output PNG (with -n > 1: a grid, plus numbered files beside it).")
    var output = "unclip.png"

    func validate() throws {
        guard priorSteps >= 2 else { throw ValidationError("--prior-steps must be at least 2 (got \(priorSteps))") }
    }

    func run() throws {
        let pipeline = try model.pipeline()
        var options = sampling.options()
        options.priorSteps = priorSteps
        options.priorGuidance = priorGuidance
        var noise = try sampling.noiseSource()
        let progress = StageProgress(quiet: sampling.quiet)
        let start = Date()
        let images = try pipeline.generate(prompts: [prompt], options: options, noise: &noise, progress: progress.handle)
        let files = try writeImages(images, to: output)
        print("wrote \(files.joined(separator: ", ")) in \(ProgressBar.format(Date().timeIntervalSince(start)))")
    }
}

/// `unclip vary`: image → variations.
struct Vary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw variations of an image: CLIP image embedding → decoder → super-resolution.",
        discussion: "Needs a pipeline with an image_encoder (e.g. Karlo's image-variations directory).")

    @Argument(help: "The input image (PNG or JPEG).")
    var image: String

    @OptionGroup var model: ModelOptions
    @OptionGroup var sampling: SamplingArguments

    @Option(name: .shortAndLong, help: "Output PNG (with -n > 1: a grid, plus numbered files beside it).")
    var output = "variations.png"

    func run() throws {
        let pipeline = try model.pipeline()
        guard pipeline.directory.has("image_encoder") else {
            throw ValidationError("\(pipeline.directory.url.path) has no image_encoder: use an image-variation pipeline directory")
        }
        let input = try RGBImage(contentsOf: URL(fileURLWithPath: image))
        let processorConfig = pipeline.directory.url.appendingPathComponent("feature_extractor/preprocessor_config.json")
        let processor = FileManager.default.fileExists(atPath: processorConfig.path)
            ? try CLIPImageProcessor(configURL: processorConfig) : CLIPImageProcessor()
        var noise = try sampling.noiseSource()
        let progress = StageProgress(quiet: sampling.quiet)
        let start = Date()
        let images = try pipeline.vary(pixelValues: processor([input]), options: sampling.options(), noise: &noise,
                                       progress: progress.handle)
        let files = try writeImages(images, to: output)
        print("wrote \(files.joined(separator: ", ")) in \(ProgressBar.format(Date().timeIntervalSince(start)))")
    }
}
