import ArgumentParser
import Foundation
import UnCLIPModels
import UnCLIPImage

/// RePaint's settings (`InpaintingOptions`) as options.
struct InpaintingArguments: ParsableArguments {
    @Option(help: "Decoder steps per resampling jump (RePaint's j).")
    var jumpLength = InpaintingOptions().jumpLength

    @Option(help: "Times each stretch of --jump-length decoder steps is denoised (RePaint's r; 1 = no resampling; the decoder takes about r times its steps).")
    var resampling = InpaintingOptions().resampling

    @Option(help: "Super-resolution steps per resampling jump.")
    var superResJumpLength = InpaintingOptions().superResJumpLength

    @Option(help: "Resampling count of the super-resolution stages (1 = none).")
    var superResResampling = InpaintingOptions().superResResampling

    @Option(help: "What the upsamplers do with the known region: replace (RePaint at every step), composite (paste the input at the end) or none.")
    var upsamplerKnownRegion = InpaintingOptions().upsamplerKnownRegion.rawValue

    @Option(help: "How the mask reaches each stage's resolution: strict (known only where every input pixel read is known) or coverage (soft).")
    var maskResampling = InpaintingOptions().maskResampling.rawValue

    func validate() throws {
        do { try options().validate() } catch let error as ValidationError { throw error } catch { throw ValidationError("\(error)") }
    }

    func options() throws -> InpaintingOptions {
        guard let known = UpsamplerKnownRegion(rawValue: upsamplerKnownRegion) else {
            throw ValidationError("--upsampler-known-region must be one of \(UpsamplerKnownRegion.allCases.map(\.rawValue).joined(separator: ", ")) (got \(upsamplerKnownRegion))")
        }
        guard let mask = MaskResampling(rawValue: maskResampling) else {
            throw ValidationError("--mask-resampling must be one of \(MaskResampling.allCases.map(\.rawValue).joined(separator: ", ")) (got \(maskResampling))")
        }
        return InpaintingOptions(jumpLength: jumpLength, resampling: resampling, superResJumpLength: superResJumpLength,
                                 superResResampling: superResResampling, upsamplerKnownRegion: known, maskResampling: mask)
    }
}

/// `unclip edit`: inpainting, the DALL·E edits API's operation.
struct Edit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Repaint the masked region of an image so that the whole image fits a prompt (inpainting).",
        discussion: """
            The region to repaint is where the mask is fully transparent (alpha 0): the image's own alpha channel, or \
            --mask, a PNG of the same size with an alpha channel (as in the DALL·E edits API). The prompt describes \
            the whole desired image. The prior draws the prompt's CLIP image embedding; the decoder and the upsamplers \
            sample with RePaint (Lugmayr et al. 2022): after every step the known region is replaced by the input, \
            noised to the step's level, and every --jump-length decoder steps the sample is re-noised and denoised \
            again (--resampling times in all). Works with any unCLIP model, Karlo included; the image must be square. \
            Writes the edit (with -n > 1: numbered files and a grid with the input first).
            """)

    @Argument(help: "The image to edit (PNG or JPEG, square); its alpha channel marks the region to repaint unless --mask is given.")
    var image: String

    @Argument(help: "The caption of the whole desired image.")
    var prompt: String

    @Option(help: ArgumentHelp("A PNG of the image's size whose fully transparent pixels (alpha 0) mark the region to repaint.", valueName: "png"))
    var mask: String?

    @OptionGroup var model: ModelOptions
    @OptionGroup var sampling: SamplingArguments
    @OptionGroup var prior: PriorArguments
    @OptionGroup var inpainting: InpaintingArguments

    @Option(name: .shortAndLong, help: "Output PNG (with -n > 1: a grid with the input, plus numbered files beside it).")
    var output = "edit.png"

    func run() throws {
        try OutputPlan.images(at: output, count: sampling.n).check(inputs: [image, mask, sampling.noise])
        let input = try readAlphaImage(image)
        let region = try editMask(for: input)
        let pipeline = try model.pipeline()
        let options = try prior.applied(to: try sampling.options(for: pipeline), in: pipeline)
        var noise = try sampling.noiseSource()
        let progress = StageProgress(quiet: sampling.quiet)
        let start = Date()
        let edited = try pipeline.edit(input.image, mask: region, prompt: prompt, options: options,
                                       inpainting: try inpainting.options(), noise: &noise, progress: progress.handle)
        let images = UnCLIPPipeline.images(from: edited)
        if images.count == 1 {
            try images[0].writePNG(to: URL(fileURLWithPath: output))
            print("wrote \(output) in \(ProgressBar.format(Date().timeIntervalSince(start)))")
            return
        }
        try writeWithInput(images, input: maskedForDisplay(input.image, region), labels: (1...images.count).map { "edit #\($0)" },
                           columns: min(images.count + 1, 5), title: "\"\(prompt)\"", to: output, since: start)
    }

    /// The mask: --mask's alpha, else the image's own.
    func editMask(for input: AlphaImage) throws -> InpaintingMask {
        guard let mask else {
            guard let alpha = input.alpha else {
                throw ValidationError("\(image) has no alpha channel to mark the region to repaint: make that region fully transparent (alpha 0), or pass --mask MASK.png, a PNG of the same size whose transparent pixels mark it")
            }
            return try InpaintingMask(alpha: alpha, width: input.width, height: input.height)
        }
        let file = try readAlphaImage(mask)
        guard let alpha = file.alpha else {
            throw ValidationError("the mask \(mask) has no alpha channel: make the pixels to repaint fully transparent (alpha 0) and the others opaque, as the DALL·E edits API expects")
        }
        guard file.width == input.width && file.height == input.height else {
            throw ValidationError("the mask \(mask) is \(file.width)×\(file.height) but the image \(image) is \(input.width)×\(input.height); they must be the same size")
        }
        return try InpaintingMask(alpha: alpha, width: file.width, height: file.height)
    }
}

/// Reads an image keeping its alpha channel; its errors name the file.
func readAlphaImage(_ path: String) throws -> AlphaImage {
    try AlphaImage(contentsOf: URL(fileURLWithPath: path))
}

/// The input as a grid shows it: the repainted region as a grey checkerboard.
func maskedForDisplay(_ image: RGBImage, _ mask: InpaintingMask) -> RGBImage {
    var pixels = image.pixels
    let cell = max(1, image.width / 16)
    for y in 0..<image.height {
        for x in 0..<image.width where mask.repaint[y * image.width + x] {
            let shade: UInt8 = (x / cell + y / cell) % 2 == 0 ? 204 : 153
            let i = 3 * (y * image.width + x)
            pixels[i] = shade; pixels[i + 1] = shade; pixels[i + 2] = shade
        }
    }
    return RGBImage(width: image.width, height: image.height, pixels: pixels)
}
