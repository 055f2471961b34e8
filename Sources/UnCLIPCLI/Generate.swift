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
            4.0 and 8.0) unless the model directory's unclip_defaults.json says otherwise (the embedded model: prior \
            guidance 2, decoder guidance 3). With --noise, the recorded draws of a reference run are replayed, \
            reproducing its image.
            """)

    @Argument(help: "The caption to draw.")
    var prompt: String

    @OptionGroup var model: ModelOptions
    @OptionGroup var sampling: SamplingArguments
    @OptionGroup var prior: PriorArguments

    @Option(name: .shortAndLong, help: "Output PNG (with -n > 1: a grid, plus numbered files beside it).")
    var output = "unclip.png"

    @Option(help: ArgumentHelp("Which decoder draws: unclip (the CLIP image embedding from the prior, and the caption) or glide (the model's GLIDE-style baseline, glide_decoder: the caption alone; no prior runs).", valueName: "unclip|glide"))
    var decoder: DecoderKind = .unclip

    func validate() throws {
        if decoder == .glide && (prior.prior != .diffusion || prior.priorCandidates != 1 || prior.priorGuidance != nil || prior.priorSteps != nil) {
            throw ValidationError("--decoder glide runs no prior: the prior options (--prior, --prior-candidates, --prior-guidance, --prior-steps) do not apply")
        }
    }

    func run() throws {
        try OutputPlan.images(at: output, count: sampling.n).check(inputs: [sampling.noise])
        let pipeline = try model.pipeline()
        var options = try prior.applied(to: try sampling.options(for: pipeline), in: pipeline)
        options.decoder = decoder
        if decoder == .glide && !pipeline.hasBaselineDecoder {
            throw ValidationError("--decoder glide: \(pipeline.name) has no GLIDE-style decoder (no glide_decoder folder); train one with `unclip train decoder --out DIR --conditioning caption`")
        }
        var noise = try sampling.noiseSource()
        let progress = StageProgress(quiet: sampling.quiet)
        let start = Date()
        let images = try pipeline.generate(prompts: [prompt], options: options, noise: &noise, progress: progress.handle)
        let files = try writeImages(images, to: output)
        print("wrote \(files.joined(separator: ", ")) in \(ProgressBar.format(Date().timeIntervalSince(start)))")
    }
}
