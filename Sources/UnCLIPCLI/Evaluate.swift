import ArgumentParser
import Foundation
import UnCLIPModels
import UnCLIPEvaluation
import UnCLIPImage
import UnCLIPShapesWorld

/// `unclip evaluate`: caption fidelity, diversity and CLIP score on ShapesWorld prompts.
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate images for held-out ShapesWorld captions, parse them back and score them.",
        discussion: """
            Reports colour, shape, count, binding, relation and whole-caption accuracy for one- and two-object \
            prompts, the spread of object positions and sizes across a prompt's images, the CLIP score from the \
            pipeline's own CLIP, and the time per image.
            --task inversion: DDIM-inversion round trips of ShapesWorld renders (PSNR at the decoder's resolution). \
            --task textdiff: the paper's text diff on renders of a red circle, "a red circle" → "a blue circle" at \
            θ = 0.5, judged by the parser (blue circle, centre kept within 8 px). --task relations: where spatial \
            relations get lost: does CLIP's text prefer a scene's true caption over the reversed relation, does its \
            image embedding tell a scene from its mirror image, does the prior's sample (50 % is chance); and, on \
            every two-object scene, does CLIP prefer the true caption over one with a shape or a colour changed, or \
            the two colours or the two shapes swapped. --task inpainting: renders of "a red circle to the left of a \
            blue square" with the right half repainted toward "a red circle to the left of a green triangle" \
            (`unclip edit`, its RePaint options below): whole-caption accuracy of the edit, mean difference of the \
            unmasked half from the input, time per edit. \
            --task priors: the paper's §5 comparison of priors on the same prompts and noise: the diffusion prior, \
            the diffusion prior keeping the better of two samples (z_i · z_t, the paper's trick) and the \
            autoregressive prior (the model's ar_prior). --task ablation: "why the prior matters" (Figure 3): the same \
            decoder given no image embedding (the caption only), the caption's CLIP text embedding, or the prior's \
            image embedding; --grid draws the three rows for the first prompts. Both report whole-caption accuracy, \
            FD-CLIP (the Fréchet distance of the project's CLIP image features to those of held-out renders: \
            Inception weights for FID cannot be had here), precision and recall (k = 3), spread and speed, each \
            with a standard error.
            """)

    enum Task: String, ExpressibleByArgument, CaseIterable {
        case captions, inversion, textdiff, relations, inpainting, priors, ablation
    }

    @Option(help: "What to evaluate: captions (text → image fidelity), inversion, textdiff, relations (does CLIP read them), inpainting, priors (diffusion / best of two / autoregressive) or ablation (caption only / text embedding / prior).")
    var task: Task = .captions

    @Option(help: "Cases for --task inversion / textdiff / inpainting.")
    var cases = 50

    /// The DDIM pass of --task inversion / textdiff.
    @OptionGroup var inversion: InversionArguments

    @OptionGroup var model: ModelOptions

    /// RePaint's settings of --task inpainting.
    @OptionGroup var inpainting: InpaintingArguments

    @Option(help: "Number of prompts (ShapesWorld captions from a seed the trainers do not use).")
    var prompts = 200

    @Option(name: .shortAndLong, help: "Images per prompt.")
    var n = 4

    @Option(help: "Seed of the prompt world.")
    var promptSeed: UInt64 = 9_000_001

    @Option(help: "Seed of the sampling noise.")
    var seed: UInt64 = 1

    @Option(help: "Write a labelled grid of the first prompts' images here (--task textdiff / inpainting: every case, input beside its edit).")
    var grid: String?

    @Option(help: "Classifier-free guidance scale of the prior (default: the model's).")
    var priorGuidance: Float?

    @Option(help: "Classifier-free guidance scale of the decoder (default: the model's).")
    var decoderGuidance: Float?

    @Option(help: ArgumentHelp("The prior of --task captions: diffusion or ar (the model's autoregressive prior).", valueName: "diffusion|ar"))
    var prior: PriorKind = .diffusion

    @Option(help: "Embeddings the prior draws per image, keeping the one closest to the caption (--task captions; the paper's trick: 2).")
    var priorCandidates = 1

    @Flag(help: "Print every image's verdict and the objects the parser found (--task textdiff / inpainting: every case).")
    var verbose = false

    @Flag(help: "Skip the prior: decode the CLIP image embedding of each prompt's ground-truth render (measures the decoder alone).")
    var groundTruthEmbeddings = false

    func validate() throws {
        guard prompts >= 1 else { throw ValidationError("--prompts must be at least 1 (got \(prompts))") }
        guard n >= 1 else { throw ValidationError("-n must be at least 1 (got \(n))") }
        guard cases >= 1 else { throw ValidationError("--cases must be at least 1 (got \(cases))") }
        guard (1...SamplingOptions.maxPriorCandidates).contains(priorCandidates) else {
            throw ValidationError("--prior-candidates must be in 1 … \(SamplingOptions.maxPriorCandidates) (got \(priorCandidates))")
        }
    }

    func run() throws {
        let pipeline = try model.pipeline()
        pipeline.keepLoaded = true
        let ddim = inversion.options(eta: 0)
        switch task {
        case .captions: break
        case .priors, .ablation:
            try comparePaperConditions(pipeline)
            return
        case .inversion:
            let world = ShapesWorld(seed: promptSeed)
            let images = (0..<cases).map { ShapesWorld.render(world.scene(at: $0)) }
            let bar = ProgressBar("inversion", total: cases)
            print(try evaluateInversion(pipeline: pipeline, images: images, options: ddim) { done, _ in bar.update(done) })
            return
        case .relations:
            var sampling = pipeline.defaultOptions
            if let priorGuidance { sampling.priorGuidance = priorGuidance }
            print(try probeRelations(pipeline: pipeline, scenes: prompts, sampling: sampling, noiseSeed: seed))
            return
        case .inpainting:
            var sampling = pipeline.defaultOptions
            if let priorGuidance { sampling.priorGuidance = priorGuidance }
            if let decoderGuidance { sampling.decoderGuidance = decoderGuidance }
            let settings = try inpainting.options()
            print("sampling: prior \(sampling.priorSteps) steps, guidance \(sampling.priorGuidance); decoder \(sampling.decoderSteps) steps, guidance \(sampling.decoderGuidance); super-resolution \(sampling.superResSteps) steps; RePaint jump \(settings.jumpLength), resampling \(settings.resampling), super-resolution jump \(settings.superResJumpLength), resampling \(settings.superResResampling), upsampler known region \(settings.upsamplerKnownRegion.rawValue), mask \(settings.maskResampling.rawValue)")
            let bar = ProgressBar("inpainting", total: cases)
            let report = try evaluateInpainting(pipeline: pipeline, cases: cases, options: sampling, inpainting: settings) { done, _ in
                bar.update(done)
            }
            if verbose { report.results.enumerated().forEach { print("case \($0.offset): \($0.element)") } }
            if let grid { try writeInpaintingGrid(report, to: grid) }
            print(report)
            return
        case .textdiff:
            let bar = ProgressBar("text diff", total: cases)
            let options = inversion.options(eta: 0, defaults: .shapesWorldTextDiff)
            let report = try evaluateTextDiff(pipeline: pipeline, cases: cases, options: options) { done, _ in bar.update(done) }
            if verbose { report.results.enumerated().forEach { print("case \($0.offset): \($0.element)") } }
            if let grid { try writeTextDiffGrid(report, to: grid) }
            print(report)
            return
        }
        let c = configuration(pipeline)
        let bar = ProgressBar("evaluate", total: prompts)
        let o = c.sampling
        print("sampling: prior \(o.priorSteps) steps, guidance \(o.priorGuidance); decoder \(o.decoderSteps) steps, guidance \(o.decoderGuidance); super-resolution \(o.superResSteps) steps")
        let report = try evaluateShapes(pipeline: pipeline, configuration: c) { done, _ in bar.update(done) }
        print(report)
    }

    /// The caption evaluation's settings from the options.
    func configuration(_ pipeline: UnCLIPPipeline) -> ShapesEvaluationConfiguration {
        var c = ShapesEvaluationConfiguration()
        c.promptCount = prompts
        c.imagesPerPrompt = n
        c.promptSeed = promptSeed
        c.noiseSeed = seed
        c.gridURL = grid.map { URL(fileURLWithPath: $0) }
        c.sampling = pipeline.defaultOptions
        if let priorGuidance { c.sampling.priorGuidance = priorGuidance }
        if let decoderGuidance { c.sampling.decoderGuidance = decoderGuidance }
        if task == .captions {
            c.sampling.prior = prior
            c.sampling.priorCandidates = priorCandidates
        }
        if verbose { c.log = { print($0) } }
        if groundTruthEmbeddings { c.embeddings = .groundTruth }
        return c
    }

    /// --task priors / ablation: the paper's conditions side by side on the same prompts and noise.
    func comparePaperConditions(_ pipeline: UnCLIPPipeline) throws {
        var base = configuration(pipeline)
        base.gridURL = nil
        var conditions: [(String, ShapesEvaluationConfiguration)] = []
        let title: String
        if task == .priors {
            guard pipeline.hasAutoregressivePrior else {
                throw ValidationError("--task priors: \(pipeline.name) has no autoregressive prior (ar_prior); train one with `unclip train ar-prior --out DIR`")
            }
            title = "priors (paper §5, Table 1: AR prior against diffusion prior)"
            var best2 = base, ar = base
            best2.sampling.priorCandidates = 2
            ar.sampling.prior = .autoregressive
            conditions = [("diffusion", base), ("diffusion, best of 2", best2), ("autoregressive", ar)]
        } else {
            title = "ablation (paper §5.1, Figure 3: what the decoder is given as z_i)"
            var none = base, text = base
            none.embeddings = .none
            text.embeddings = .textEmbedding
            conditions = [("caption only", none), ("text embedding", text), ("prior embedding", base)]
        }
        let o = base.sampling
        print("sampling: prior \(o.priorSteps) steps, guidance \(o.priorGuidance); decoder \(o.decoderSteps) steps, guidance \(o.decoderGuidance); super-resolution \(o.superResSteps) steps")
        var bars: [String: ProgressBar] = [:]
        let comparison = try compareConditions(pipeline: pipeline, title: title, conditions: conditions) { label, done, total in
            let bar = bars[label] ?? ProgressBar(label, total: total)
            bars[label] = bar
            bar.update(done)
        }
        print(comparison)
        if let grid {
            try conditionGrid(comparison).writePNG(to: URL(fileURLWithPath: grid))
            print("wrote \(grid)")
        }
    }
}

/// Each case's input (the repainted half shown as a checkerboard) beside its edit, labelled with the verdict, four
/// pairs to a row.
func writeInpaintingGrid(_ report: InpaintingReport, to path: String) throws {
    var images: [RGBImage] = [], labels: [String] = []
    for (k, result) in report.results.enumerated() {
        let side = result.input.width
        let mask = try InpaintingMask(width: side, height: side, repaint: (0..<(side * side)).map { $0 % side >= side / 2 })
        images += [maskedForDisplay(result.input, mask), result.edited]
        labels += ["\(k)", (result.check.correct ? "ok " : "NO ") + String(format: "%.1f", result.unmaskedDifference)]
    }
    let title = "inpainting: right half repainted as \"\(report.prompt)\" (label: verdict, unmasked half mean difference in levels)"
    try RGBImage.labelledGrid(images, labels: labels, columns: 8, title: title).writePNG(to: URL(fileURLWithPath: path))
    print("wrote \(path)")
}

/// Each case's input beside its edit, labelled with the parser's verdict, four pairs to a row.
func writeTextDiffGrid(_ report: TextDiffReport, to path: String) throws {
    var images: [RGBImage] = [], labels: [String] = []
    for (k, result) in report.results.enumerated() {
        images += [result.input, result.edited]
        let label: String
        switch (result.displacement, result.found.first) {
        case (let d?, _?) where result.turnedBlue:
            label = (d <= report.positionTolerance ? "ok " : "NO ") + String(format: "%.0f px", d)
        case (_?, let object?): label = "NO \(object.color.name) \(object.shape.name)"
        default: label = "NO \(result.found.count) objects"
        }
        labels += ["\(k)", label]
    }
    let title = String(format: "text diff \"a red circle\" to \"a blue circle\", θ = %.2f (label: centre moved)", report.theta)
    try RGBImage.labelledGrid(images, labels: labels, columns: 8, title: title).writePNG(to: URL(fileURLWithPath: path))
    print("wrote \(path)")
}
