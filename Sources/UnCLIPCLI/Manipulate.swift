import ArgumentParser
import Foundation
import UnCLIPModels
import UnCLIPImage
import UnCLIPEvaluation

// The paper's image manipulations (unCLIP §3): variations, interpolations and text diffs on the bipartite latent
// (z_i, x_T), with x_T from DDIM inversion; and CLIP's zero-shot classification.

/// The DDIM decoder pass: steps, guidance, inversion refinements and depth (the manipulations and `evaluate`).
struct InversionArguments: ParsableArguments {
    @Option(help: "DDIM steps of the decoder (inversion and sampling; default 50, textdiff 25).")
    var ddimSteps: Int?

    @Option(help: "Classifier-free guidance scale of the decoder during inversion and sampling (1 = none).")
    var guidance: Float = DDIMOptions().guidance

    @Option(help: "Fixed-point refinements per inversion step (0 = plain DDIM inversion; each costs one decoder pass per step; default 6, textdiff 0).")
    var inversionRefinements: Int?

    @Option(help: "Fraction of the noise schedule the inversion climbs (1: to t = 980; less keeps positions more firmly).")
    var depth: Double = DDIMOptions().depth

    func validate() throws {
        try validateSteps(ddimSteps, "--ddim-steps")
        try validateGuidance(guidance, "--guidance")
        do { try options(eta: 0).validate() } catch { throw ValidationError("\(error)") }
    }

    /// The options given, the rest from `defaults` (`DDIMOptions()`, or `.shapesWorldTextDiff` for text diffs).
    func options(eta: Float, superResSteps: Int = DDIMOptions().superResSteps, defaults: DDIMOptions = DDIMOptions()) -> DDIMOptions {
        var o = DDIMOptions(steps: ddimSteps ?? defaults.steps, eta: eta, guidance: guidance, superResSteps: superResSteps,
                            inversionRefinements: inversionRefinements ?? defaults.inversionRefinements)
        o.depth = depth
        return o
    }
}

/// Settings shared by the manipulation commands: the DDIM pass, super-resolution, seed, progress.
struct DDIMArguments: ParsableArguments {
    @OptionGroup var inversion: InversionArguments

    @Option(help: "Super-resolution denoising steps.")
    var superResSteps = DDIMOptions().superResSteps

    @Option(help: "Seed of the project's Philox noise.")
    var seed: UInt64 = 0

    @Flag(help: "No progress bars.")
    var quiet = false

    func validate() throws {
        try validateSteps(superResSteps, "--super-res-steps")
    }

    func options(eta: Float, defaults: DDIMOptions = DDIMOptions()) -> DDIMOptions {
        inversion.options(eta: eta, superResSteps: superResSteps, defaults: defaults)
    }
}

/// Reads an input image; its errors name the file (and are input errors, not usage errors: no usage line).
func readImage(_ path: String) throws -> RGBImage {
    try RGBImage(contentsOf: URL(fileURLWithPath: path))
}

/// The pipeline of `model`, checked to have the CLIP image encoder the manipulations need.
func manipulationPipeline(_ model: ModelOptions) throws -> UnCLIPPipeline {
    let pipeline = try model.pipeline()
    guard pipeline.hasImageEncoder else {
        throw ValidationError("\(pipeline.name) has no image_encoder: image manipulations need the CLIP image encoder")
    }
    return pipeline
}

/// Writes numbered PNGs of `images` beside `path` (`OutputPlan.numbered`).
func writeNumbered(_ images: [RGBImage], beside path: String) throws -> [String] {
    try zip(images, OutputPlan.numbered(path, count: images.count)).map { image, file in
        try image.writePNG(to: file)
        return file.path
    }
}

/// The input shown at the output size, for side-by-side grids.
func displayed(_ image: RGBImage, like reference: RGBImage) -> RGBImage {
    image.width == reference.width && image.height == reference.height ? image
        : image.resized(width: reference.width, height: reference.height)
}

/// Writes `images` as numbered PNGs beside `path` and, at `path`, a labelled grid with the input first; says what it
/// wrote and how long the command took.
func writeWithInput(_ images: [RGBImage], input: RGBImage, labels: [String], columns: Int, title: String,
                    to path: String, since start: Date) throws {
    let files = try writeNumbered(images, beside: path)
    let grid = RGBImage.labelledGrid([displayed(input, like: images[0])] + images, labels: ["input"] + labels,
                                     columns: columns, title: title)
    try grid.writePNG(to: URL(fileURLWithPath: path))
    print("wrote \(path) (grid), \(files.joined(separator: ", ")) in \(ProgressBar.format(Date().timeIntervalSince(start)))")
}

func format(_ x: Float, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", x) }

/// `unclip vary`: image → variations.
struct Vary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw variations of an image, keeping its CLIP image embedding z_i (unCLIP §3.1).",
        discussion: """
            The paper's method (default): z_i from the CLIP image encoder, the decoder latent x_T from DDIM inversion of \
            the image, then DDIM sampling with η > 0; η sets how far the variations stray (η = 0 gives the \
            reconstruction back). Writes a labelled grid (input first) and numbered files.
            --fresh-noise instead draws a fresh x_T and samples with the decoder's own scheduler, as diffusers' \
            UnCLIPImageVariationPipeline does (then --decoder-steps, --decoder-guidance and --noise apply).
            """)

    @Argument(help: "The input image (PNG or JPEG).")
    var image: String

    @OptionGroup var model: ModelOptions
    @OptionGroup var ddim: DDIMArguments

    @Option(name: .shortAndLong, help: "Number of variations.")
    var n = 4

    @Option(help: "DDIM η: 0 reproduces the image, larger values stray further.")
    var eta: Float = 1.0

    @Flag(help: "Fresh decoder noise and the scheduler's own sampler (diffusers' variation pipeline).")
    var freshNoise = false

    @Option(help: "Decoder denoising steps (with --fresh-noise).")
    var decoderSteps = 25

    @Option(help: "Decoder guidance scale (with --fresh-noise).")
    var decoderGuidance: Float = 8.0

    @Option(help: ArgumentHelp("Replay recorded noise (with --fresh-noise).", valueName: "file"))
    var noise: String?

    @Option(name: .shortAndLong, help: "Output PNG grid; the variations are also written as numbered files beside it.")
    var output = "variations.png"

    func validate() throws {
        try validateCount(n)
        guard eta.isFinite && eta >= 0 else { throw ValidationError("--eta must be ≥ 0 (got \(eta))") }
        try validateSteps(decoderSteps, "--decoder-steps")
        try validateGuidance(decoderGuidance, "--decoder-guidance")
        if noise != nil && !freshNoise { throw ValidationError("--noise replays diffusers' draws: it needs --fresh-noise") }
        if let noise, !FileManager.default.fileExists(atPath: noise) { throw ValidationError("--noise: no such file: \(noise)") }
    }

    func run() throws {
        try OutputPlan.images(at: self.output, count: n, alwaysGrid: true).check(inputs: [image, noise])
        let pipeline = try manipulationPipeline(model)
        let input = try readImage(image)
        let progress = StageProgress(quiet: ddim.quiet)
        let start = Date()
        let output: Tensor
        let labels: [String]
        if freshNoise {
            var options = SamplingOptions()
            options.imagesPerPrompt = n
            options.decoderSteps = decoderSteps
            options.superResSteps = ddim.superResSteps
            options.decoderGuidance = decoderGuidance
            var source: any NoiseSource = try noise.map { try RecordedNoise(contentsOf: URL(fileURLWithPath: $0)) } ?? SeededNoise(seed: ddim.seed)
            let z = try pipeline.imageEmbeddings(of: [input])
            output = try pipeline.vary(imageEmbeddings: z, options: options, noise: &source, progress: progress.handle)
            labels = (1...n).map { "fresh x_T #\($0)" }
        } else {
            var source = SeededNoise(seed: ddim.seed)
            output = try pipeline.variations(of: input, count: n, options: ddim.options(eta: eta), noise: &source,
                                             progress: progress.handle)
            labels = (1...n).map { "η=\(format(eta, 1)) #\($0)" }
        }
        try writeWithInput(UnCLIPPipeline.images(from: output), input: input, labels: labels, columns: min(n + 1, 5),
                           title: "variations of \(URL(fileURLWithPath: image).lastPathComponent)", to: self.output, since: start)
    }
}

/// `unclip interpolate`: two images → a strip between them.
struct Interpolate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Interpolate between two images through CLIP image-embedding space (unCLIP §3.2).",
        discussion: """
            Frame k has θ = k/(frames − 1) and z_θ = slerp(z_1, z_2, θ). The decoder latent is either interpolated \
            between the two images' DDIM inversions (default: the end frames reconstruct the inputs) or shared: one \
            seeded x_T for every frame. Writes a labelled strip (PNG) and an animated PNG.
            """)

    @Argument(help: "The first image.")
    var first: String

    @Argument(help: "The second image.")
    var second: String

    @OptionGroup var model: ModelOptions
    @OptionGroup var ddim: DDIMArguments

    @Option(help: "Frames, both ends included.")
    var frames = 9

    @Option(help: "Decoder latent: interpolated (between the inversions) or shared (one seeded x_T).")
    var latent = InterpolationLatent.interpolated

    @Option(help: "Seconds per frame of the animation.")
    var frameDelay = 0.25

    @Option(name: .shortAndLong, help: "Output strip (PNG); the animation goes beside it as .apng.")
    var output = "interpolation.png"

    func validate() throws {
        guard (2...SamplingOptions.maxImagesPerPrompt).contains(frames) else {
            throw ValidationError("--frames must be in 2 … \(SamplingOptions.maxImagesPerPrompt) (got \(frames))")
        }
        guard frameDelay > 0 && frameDelay.isFinite else { throw ValidationError("--frame-delay must be positive (got \(frameDelay))") }
    }

    func run() throws {
        let animation = URL(fileURLWithPath: self.output).deletingPathExtension().appendingPathExtension("apng")
        var plan = OutputPlan.images(at: self.output, count: 1)
        plan.files.append(animation)
        try plan.check(inputs: [first, second])
        let pipeline = try manipulationPipeline(model)
        let a = try readImage(first), b = try readImage(second)
        var noise = SeededNoise(seed: ddim.seed)
        let start = Date()
        let (output, thetas) = try pipeline.interpolate(a, b, frames: frames, latent: latent,
                                                        options: ddim.options(eta: 0), noise: &noise,
                                                        progress: StageProgress(quiet: ddim.quiet).handle)
        let images = UnCLIPPipeline.images(from: output)
        let strip = RGBImage.labelledGrid(images, labels: thetas.map { "θ=\(format($0))" }, columns: images.count,
                                          title: "slerp \(URL(fileURLWithPath: first).lastPathComponent) -> \(URL(fileURLWithPath: second).lastPathComponent), x_T \(latent.rawValue)")
        try strip.writePNG(to: URL(fileURLWithPath: self.output))
        try RGBImage.writeAnimatedPNG(images + images.reversed().dropFirst().dropLast(), to: animation, frameDelay: frameDelay)
        print("wrote \(self.output) (strip), \(animation.path) (animation) in \(ProgressBar.format(Date().timeIntervalSince(start)))")
    }
}

/// `unclip textdiff`: edit an image along a caption difference.
struct TextDiff: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "textdiff",
        abstract: "Edit an image by moving its CLIP image embedding toward a text difference (unCLIP §3.3).",
        discussion: """
            z_d = normalise(z_t − z_t0) from the CLIP text embeddings of --to and --from; frame k has \
            θ = max-theta·k/(frames − 1) and z_θ = slerp(z_i, z_d, θ), decoded from the image's DDIM-inverted x_T \
            with η = 0, so θ = 0 is the plain reconstruction. The inversion is plain DDIM over 25 steps unless \
            --inversion-refinements / --ddim-steps say otherwise: an exact inversion pins the original picture too \
            firmly for the edit (docs/manipulations.md). Writes a labelled strip.
            """)

    @Argument(help: "The image to edit.")
    var image: String

    @OptionGroup var model: ModelOptions
    @OptionGroup var ddim: DDIMArguments

    @Option(help: "The caption describing the image now.")
    var from: String

    @Option(help: "The caption describing the edit's target.")
    var to: String

    @Option(help: "Frames, θ = 0 included.")
    var frames = 6

    @Option(help: "The largest θ (0 … 1).")
    var maxTheta: Float = 0.5

    @Option(name: .shortAndLong, help: "Output strip (PNG); frames are also written as numbered files beside it.")
    var output = "textdiff.png"

    func validate() throws {
        guard (2...SamplingOptions.maxImagesPerPrompt).contains(frames) else {
            throw ValidationError("--frames must be in 2 … \(SamplingOptions.maxImagesPerPrompt) (got \(frames))")
        }
        guard maxTheta.isFinite && maxTheta > 0 && maxTheta <= 1 else { throw ValidationError("--max-theta must be in (0, 1] (got \(maxTheta))") }
    }

    func run() throws {
        try OutputPlan.images(at: self.output, count: frames, alwaysGrid: true).check(inputs: [image])
        let pipeline = try manipulationPipeline(model)
        let input = try readImage(image)
        var noise = SeededNoise(seed: ddim.seed)
        let thetas = (0..<frames).map { maxTheta * Float($0) / Float(frames - 1) }
        let start = Date()
        let output = try pipeline.textDiff(input, from: from, to: to, thetas: thetas, options: ddim.options(eta: 0, defaults: .shapesWorldTextDiff),
                                           noise: &noise, progress: StageProgress(quiet: ddim.quiet).handle)
        try writeWithInput(UnCLIPPipeline.images(from: output), input: input, labels: thetas.map { "θ=\(format($0))" },
                           columns: thetas.count + 1, title: "\"\(from)\" -> \"\(to)\"", to: self.output, since: start)
    }
}

/// `unclip classify`: zero-shot CLIP classification.
struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Zero-shot classification with the pipeline's CLIP: probabilities of text labels for an image.",
        discussion: """
            p(label) = softmax over labels of scale · cos(z_image, z_text(template with the label)). Useful as the \
            paper's typographic-attack probe: which caption does CLIP think the picture shows?
            """)

    @Argument(help: "The image.")
    var image: String

    @OptionGroup var model: ModelOptions

    @Option(help: "Comma-separated labels, e.g. \"red circle,blue square\".")
    var labels: String

    @Option(help: "Text template; {} is replaced by the label, {a} by its article (a/an).")
    var template = "{a} {}"

    @Option(help: "Logit scale (CLIP's trained value is 100).")
    var scale: Float = 100

    @Option(name: .shortAndLong, help: "Also write the image with its label probabilities under it (PNG).")
    var output: String?

    func validate() throws {
        guard !parsedLabels.isEmpty else { throw ValidationError("--labels: give at least one label, separated by commas") }
        guard scale.isFinite && scale > 0 else { throw ValidationError("--scale must be positive (got \(scale))") }
    }

    var parsedLabels: [String] { labels.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }

    func run() throws {
        if let output { try OutputPlan.images(at: output, count: 1).check(inputs: [image]) }
        let pipeline = try manipulationPipeline(model)
        let input = try readImage(image)
        let list = parsedLabels
        let texts = list.map { label -> String in
            let article = "aeiou".contains(label.lowercased().first ?? "x") ? "an" : "a"
            return template.replacingOccurrences(of: "{a}", with: article).replacingOccurrences(of: "{}", with: label)
        }
        let probabilities = try pipeline.classify(input, labels: texts, template: "{}", logitScale: scale)
        let ranked = zip(list, probabilities).sorted { $0.1 > $1.1 }
        let width = max(5, list.map(\.count).max() ?? 5)
        print("label".padding(toLength: width, withPad: " ", startingAt: 0) + "  probability")
        for (label, p) in ranked {
            let bar = String(repeating: "█", count: Int((p * 30).rounded()))
            print(label.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + format(p * 100, 1).leftPadded(to: 5) + " %  " + bar)
        }
        if let output {
            let lines = ranked.prefix(5).map { "\($0.0): \(format($0.1 * 100, 1)) %" }
            try input.withCaption(lines.joined(separator: "\n")).writePNG(to: URL(fileURLWithPath: output))
            print("wrote \(output)")
        }
    }
}

extension String {
    func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

extension InterpolationLatent: ExpressibleByArgument {}
