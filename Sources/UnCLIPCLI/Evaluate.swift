import ArgumentParser
import Foundation
import UnCLIPModels
import UnCLIPEvaluation

/// `unclip evaluate`: caption fidelity, diversity and CLIP score on ShapesWorld prompts.
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate images for held-out ShapesWorld captions, parse them back and score them.",
        discussion: """
            Reports colour, shape, count, binding, relation and whole-caption accuracy for one- and two-object \
            prompts, the spread of object positions and sizes across a prompt's images, the CLIP score from the \
            pipeline's own CLIP, and the time per image.
            """)

    @OptionGroup var model: ModelOptions

    @Option(help: "Number of prompts (ShapesWorld captions from a seed the trainers do not use).")
    var prompts = 200

    @Option(name: .shortAndLong, help: "Images per prompt.")
    var n = 4

    @Option(help: "Seed of the prompt world.")
    var promptSeed: UInt64 = 9_000_001

    @Option(help: "Seed of the sampling noise.")
    var seed: UInt64 = 1

    @Option(help: "Write a grid of the first prompts' images here.")
    var grid: String?

    func validate() throws {
        guard prompts >= 1 else { throw ValidationError("--prompts must be at least 1 (got \(prompts))") }
        guard n >= 1 else { throw ValidationError("-n must be at least 1 (got \(n))") }
    }

    func run() throws {
        let pipeline = try model.pipeline()
        pipeline.keepLoaded = true
        var c = ShapesEvaluationConfiguration()
        c.promptCount = prompts
        c.imagesPerPrompt = n
        c.promptSeed = promptSeed
        c.noiseSeed = seed
        c.gridURL = grid.map { URL(fileURLWithPath: $0) }
        let bar = ProgressBar("evaluate", total: prompts)
        let report = try evaluateShapes(pipeline: pipeline, configuration: c) { done, _ in bar.update(done) }
        print(report)
    }
}
