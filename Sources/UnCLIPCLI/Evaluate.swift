import ArgumentParser
import Foundation
import UnCLIPModels
import UnCLIPEvaluation
import UnCLIPImage
import UnCLIPShapesWorld

extension DecoderKind: ExpressibleByArgument {}

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
            with a standard error. \
            --task guidance: the paper's Figures 9 and 10: unCLIP's decoder and the GLIDE-style baseline \
            (glide_decoder, `unclip train decoder --conditioning caption`) at each decoder guidance scale of \
            --scales, the same metrics; --figures DIR writes the line charts of the metrics against the scale and \
            a 4 × 4 grid per scale and decoder of the first prompt. --task binding: the paper's Figure 15: the CLIP \
            image embeddings of two-object renders decoded (with an empty caption, as the variation pipeline does, \
            and with the caption), each reconstruction's objects matched to the render's by position: how often \
            the two colours or the two shapes swap; --grid draws the first renders and their reconstructions. \
            --task upsampler: the cascade's last stage (the embedded model's 128 → 512) on each prompt's image: \
            whole-caption accuracy of its input and of its output area-downscaled back (paired), the 10–90 % edge \
            width of its output's shapes against exact renders of the same scenes at its size, the background's \
            deviation from white, and its time; --grid draws crops of input, output and render.
            """)

    enum Task: String, ExpressibleByArgument, CaseIterable {
        case captions, inversion, textdiff, relations, inpainting, priors, ablation, guidance, binding, upsampler
    }

    @Option(help: "What to evaluate: captions (text → image fidelity), inversion, textdiff, relations (does CLIP read them), inpainting, priors (diffusion / best of two / autoregressive), ablation (caption only / text embedding / prior), guidance (unCLIP against the GLIDE-style decoder across decoder guidance scales), binding (attribute swaps in reconstructions) or upsampler (the cascade's last stage: accuracy kept, edge sharpness, clean background).")
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

    @Option(help: ArgumentHelp("The decoder of --task captions: unclip, or glide (the model's caption-only baseline, glide_decoder; no prior runs).", valueName: "unclip|glide"))
    var decoder: DecoderKind = .unclip

    @Option(help: ArgumentHelp("The rows of --task ablation, comma-separated from none (the decoder's learned null embedding: the caption only), text-embedding, prior.", valueName: "list"))
    var rows = "none,text-embedding,prior"

    @Option(help: ArgumentHelp("Decoder guidance scales of --task guidance, comma-separated.", valueName: "list"))
    var scales = "1,2,3,4,6,8"

    @Option(help: ArgumentHelp("--task guidance: write the charts (guidance-chart.png) and the 4 × 4 grids (guidance-grids.png and one per decoder and scale) into this directory.", valueName: "dir"))
    var figures: String?

    @Flag(help: "Skip the prior: decode the CLIP image embedding of each prompt's ground-truth render (measures the decoder alone).")
    var groundTruthEmbeddings = false

    @Option(help: ArgumentHelp("Side of the images of --task captions (one the model draws; the parser reads any size). Default: the model's.", valueName: "px"))
    var size: Int?

    func validate() throws {
        guard prompts >= 1 else { throw ValidationError("--prompts must be at least 1 (got \(prompts))") }
        guard n >= 1 else { throw ValidationError("-n must be at least 1 (got \(n))") }
        guard cases >= 1 else { throw ValidationError("--cases must be at least 1 (got \(cases))") }
        guard (1...SamplingOptions.maxPriorCandidates).contains(priorCandidates) else {
            throw ValidationError("--prior-candidates must be in 1 … \(SamplingOptions.maxPriorCandidates) (got \(priorCandidates))")
        }
        _ = try guidanceScales()
        _ = try ablationRows()
        if decoder == .glide && (prior != .diffusion || priorCandidates != 1) {
            throw ValidationError("--decoder glide runs no prior: --prior and --prior-candidates do not apply")
        }
        if decoder == .glide && groundTruthEmbeddings {
            throw ValidationError("--decoder glide takes no image embedding: --ground-truth-embeddings does not apply")
        }
        if let figures {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: figures, isDirectory: &isDirectory), !isDirectory.boolValue {
                throw ValidationError("--figures \(figures) is a file; give a directory (it is created if missing)")
            }
        }
    }

    /// --rows parsed.
    func ablationRows() throws -> [ImageEmbeddingSource] {
        let names = rows.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let sources = try names.map { name -> ImageEmbeddingSource in
            guard let s = ImageEmbeddingSource(rawValue: name), s != .groundTruth else {
                throw ValidationError("--rows: '\(name)' is not an ablation row; give some of none, text-embedding, prior")
            }
            return s
        }
        guard !sources.isEmpty, Set(sources).count == sources.count else { throw ValidationError("--rows: give each of none, text-embedding, prior at most once, at least one") }
        return sources
    }

    /// --scales parsed: finite, ≥ 0, distinct, at most 16.
    func guidanceScales() throws -> [Float] {
        let parts = scales.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        var values: [Float] = []
        for p in parts {
            guard let v = Float(p), v.isFinite, v >= 0 else {
                throw ValidationError("--scales: '\(p)' is not a guidance scale (a finite number ≥ 0); give e.g. 1,2,3,4,6,8")
            }
            guard !values.contains(v) else { throw ValidationError("--scales: \(p) appears twice") }
            values.append(v)
        }
        guard (1...16).contains(values.count) else { throw ValidationError("--scales: give 1 … 16 scales (got \(values.count))") }
        return values
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
        case .guidance:
            try sweepGuidance(pipeline)
            return
        case .binding:
            try measureBinding(pipeline)
            return
        case .upsampler:
            let c = UpsamplerEvaluationConfiguration(configuration(pipeline))
            print(samplingLine(c.sampling))
            let bar = ProgressBar("upsampler", total: prompts)
            print(try evaluateUpsampler(pipeline: pipeline, configuration: c) { done, _ in bar.update(done) })
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
        if decoder == .glide && !pipeline.hasBaselineDecoder {
            throw ValidationError("--decoder glide: \(pipeline.name) has no GLIDE-style decoder (no glide_decoder folder); train one with `unclip train decoder --out DIR --conditioning caption`")
        }
        if prior == .autoregressive && !pipeline.hasAutoregressivePrior {
            throw ValidationError("--prior ar: \(pipeline.name) has no autoregressive prior (no ar_prior folder); train one with `unclip train ar-prior --out DIR`")
        }
        print(samplingLine(o))
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
        if let size, task == .captions { c.sampling.size = size }
        if task == .captions {
            c.sampling.prior = prior
            c.sampling.priorCandidates = priorCandidates
            c.sampling.decoder = decoder
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
            let labels: [ImageEmbeddingSource: String] = [.none: "caption only", .textEmbedding: "text embedding", .prior: "prior embedding"]
            for source in try ablationRows() {
                var c = base
                c.embeddings = source
                conditions.append((labels[source]!, c))
            }
        }
        print(samplingLine(base.sampling))
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

extension Evaluate {
    /// The settings line every task prints first.
    func samplingLine(_ o: SamplingOptions) -> String {
        let priorPart = o.decoder == .glide ? "no prior (GLIDE-style decoder)"
            : "prior \(o.prior == .autoregressive ? "autoregressive" : "diffusion, \(o.priorSteps) steps"), guidance \(o.priorGuidance)\(o.priorCandidates > 1 ? ", best of \(o.priorCandidates)" : "")"
        return "sampling: \(priorPart); decoder \(o.decoder == .glide ? "GLIDE-style" : "unCLIP"), \(o.decoderSteps) steps, guidance \(o.decoderGuidance); super-resolution \(o.superResSteps) steps\(o.laterSuperResSteps.map { ", second upsampler \($0)" } ?? "")\(o.size.map { "; \($0) px" } ?? "")"
    }

    /// --task guidance: both decoders at every scale, then the figures.
    func sweepGuidance(_ pipeline: UnCLIPPipeline) throws {
        guard pipeline.hasBaselineDecoder else {
            throw ValidationError("--task guidance: \(pipeline.name) has no GLIDE-style decoder (no glide_decoder folder); train one with `unclip train decoder --out DIR --conditioning caption`")
        }
        let scales = try guidanceScales()
        var base = configuration(pipeline)
        base.gridURL = nil
        let figureDir = try figures.map { path -> URL in
            let url = URL(fileURLWithPath: path)
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            return url
        }
        print(samplingLine(base.sampling) + "; decoder guidance swept over \(scales.map { String(format: "%g", $0) }.joined(separator: ", "))")
        var bars: [String: ProgressBar] = [:]
        let sweep = try guidanceSweep(pipeline: pipeline, base: base, scales: scales, decoders: [.unclip, .glide]) { label, done, total in
            let bar = bars[label] ?? ProgressBar(label, total: total)
            bars[label] = bar
            bar.update(done)
        }
        print(sweep.comparison)
        guard let figureDir else { return }
        let chart = figureDir.appendingPathComponent("guidance-chart.png")
        try sweep.charts().writePNG(to: chart)
        print("wrote \(chart.path)")
        // Figure 9: the first prompt, 16 images per scale and decoder, the same noise everywhere.
        let caption = ShapesWorld(seed: promptSeed).scene(at: 0).caption
        var rows: [RGBImage] = []
        for d in [DecoderKind.unclip, .glide] {
            var row: [RGBImage] = []
            for s in scales {
                let grid = try guidanceGrid(pipeline: pipeline, caption: caption, decoder: d, scale: s, sampling: base.sampling, noiseSeed: seed)
                let file = figureDir.appendingPathComponent("guidance-\(d.rawValue)-\(String(format: "%g", s)).png")
                try grid.writePNG(to: file)
                row.append(grid.resized(width: grid.width / 2, height: grid.height / 2))
            }
            rows.append(RGBImage.grid(row, columns: row.count, padding: 6))
        }
        let overview = RGBImage.labelledGrid(rows, labels: rows.map { _ in "" }, columns: 1, padding: 6, title: "\"\(caption)\" at each decoder guidance scale (top: unCLIP, bottom: GLIDE-style)")
        let grids = figureDir.appendingPathComponent("guidance-grids.png")
        try overview.writePNG(to: grids)
        print("wrote \(grids.path) and one grid per decoder and scale")
    }

    /// --task binding: reconstructions of two-object renders, without and with the caption.
    func measureBinding(_ pipeline: UnCLIPPipeline) throws {
        var sampling = pipeline.defaultOptions
        if let decoderGuidance { sampling.decoderGuidance = decoderGuidance }
        print("sampling: decoder \(sampling.decoderSteps) steps, guidance \(sampling.decoderGuidance); super-resolution \(sampling.superResSteps) steps; \(prompts) two-object renders of the prompt world × \(n)")
        var reports: [BindingReconstructionReport] = []
        for captioned in [false, true] {
            let bar = ProgressBar(captioned ? "with caption" : "no caption", total: prompts)
            reports.append(try evaluateBindingReconstruction(pipeline: pipeline, scenes: prompts, imagesPerScene: n, captioned: captioned,
                                                             promptSeed: promptSeed, noiseSeed: seed, sampling: sampling) { done, _ in bar.update(done) })
        }
        reports.forEach { print($0) }
        if let grid {
            let image = RGBImage.grid(reports.map { bindingReconstructionGrid($0) }, columns: 1, padding: 8)
            try image.writePNG(to: URL(fileURLWithPath: grid))
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
