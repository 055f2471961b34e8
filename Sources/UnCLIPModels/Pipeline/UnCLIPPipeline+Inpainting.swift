import UnCLIPTensor
import UnCLIPImage

// Inpainting (edits): the prompt's image embedding from the prior, then every stage samples with RePaint
// (Sampling/RePaint.swift) against the input image at that stage's resolution. docs/manipulations.md, "Inpainting".

/// Which pixels of an image an edit repaints: `width · height` flags, row-major, true = repaint.
///
/// As in the DALL·E edits API, a mask is usually an alpha channel (the image's own or a separate PNG's) whose
/// fully transparent pixels (alpha 0) are repainted. A mask that keeps everything or repaints everything is valid.
public struct InpaintingMask: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// Row-major, true = repaint.
    public let repaint: [Bool]

    public init(width: Int, height: Int, repaint: [Bool]) throws {
        guard width > 0, height > 0 else { throw PipelineArgumentError("inpainting mask: the size \(width)×\(height) is empty") }
        guard width <= RGBImage.maxPixelCount / height else {
            throw PipelineArgumentError("inpainting mask: \(width)×\(height) is more than the limit of \(RGBImage.maxPixelCount) pixels")
        }
        guard repaint.count == width * height else {
            throw PipelineArgumentError("inpainting mask: \(repaint.count) flags for \(width)×\(height) pixels (need \(width * height))")
        }
        self.width = width
        self.height = height
        self.repaint = repaint
    }

    /// The mask of an alpha channel: alpha 0 (fully transparent) is repainted, anything else kept.
    public init(alpha: [UInt8], width: Int, height: Int) throws {
        guard alpha.count == width * height || width <= 0 || height <= 0 else {
            throw PipelineArgumentError("inpainting mask: \(alpha.count) alpha values for \(width)×\(height) pixels (need \(width * height))")
        }
        try self.init(width: width, height: height, repaint: alpha.map { $0 == 0 })
    }

    /// How many pixels are repainted.
    public var repaintCount: Int { repaint.reduce(0) { $0 + ($1 ? 1 : 0) } }

    /// The keep weight at a stage's resolution, [1, 1, size, size]: 1 known, 0 repainted (in between for `.coverage`).
    ///
    /// `.strict`: a pixel is known only when every input pixel the image's resize reads for it is known — its 2 × 2
    /// block tree for area averaging, the taps of the antialiased bicubic kernel otherwise — so no repainted pixel's
    /// colour leaks into the known region. `.coverage`: the keep indicator resized as the image is, clamped to [0, 1].
    func keepWeight(size: Int, resampling: MaskResampling) -> Tensor {
        precondition(width == height, "keepWeight: the mask is \(width)×\(height)")
        let side = width
        switch resampling {
        case .coverage:
            let keep = Tensor(shape: [1, 1, side, side], repaint.map { $0 ? 0 : 1 })
            var t = keep
            if UnCLIPPipeline.resizesByAreaAveraging(side: side, to: size) {
                var factor = side / size
                while factor > 1 { t = t.avgPool2x2(); factor /= 2 }
            } else {
                t = t.resizedBicubicAntialiased(height: size, width: size)
            }
            return t.clamped(min: 0, max: 1)
        case .strict:
            // The input rows (columns) read for output row i: [lo, hi).
            let spans: [(Int, Int)]
            if UnCLIPPipeline.resizesByAreaAveraging(side: side, to: size) {
                let f = side / size
                spans = (0..<size).map { ($0 * f, ($0 + 1) * f) }
            } else {
                // Matches the tap bounds of `resizedBicubicAntialiased` (PyTorch's aa kernel): support 2·scale when
                // downsampling, 2 otherwise.
                let scale = Float(side) / Float(size)
                let support: Float = scale >= 1 ? 2 * scale : 2
                spans = (0..<size).map { i in
                    let center = Float(Double(scale) * (Double(i) + 0.5))
                    let lo = max(Int(Double(center - support) + 0.5), 0)
                    let hi = min(Int(Double(center + support) + 0.5), side)
                    return (lo, max(hi, lo + 1))
                }
            }
            // Repainted pixels in the rectangle [0, y) × [0, x): a summed-area table.
            var table = [Int](repeating: 0, count: (side + 1) * (side + 1))
            for y in 0..<side {
                var row = 0
                for x in 0..<side {
                    row += repaint[y * side + x] ? 1 : 0
                    table[(y + 1) * (side + 1) + x + 1] = table[y * (side + 1) + x + 1] + row
                }
            }
            func repainted(_ ys: (Int, Int), _ xs: (Int, Int)) -> Int {
                let w = side + 1
                return table[ys.1 * w + xs.1] - table[ys.0 * w + xs.1] - table[ys.1 * w + xs.0] + table[ys.0 * w + xs.0]
            }
            var values = [Float](repeating: 0, count: size * size)
            for y in 0..<size {
                for x in 0..<size where repainted(spans[y], spans[x]) == 0 { values[y * size + x] = 1 }
            }
            return Tensor(shape: [1, 1, size, size], values)
        }
    }
}

/// How the mask reaches a stage's resolution (`InpaintingOptions.maskResampling`).
public enum MaskResampling: String, Sendable, CaseIterable {
    /// A pixel is known only when all the input pixels its resize reads are known (a hard mask; the default).
    case strict
    /// The fraction of known input under the pixel, as the image is resized (a soft mask).
    case coverage
}

/// What the upsamplers do with the known region (`InpaintingOptions.upsamplerKnownRegion`).
public enum UpsamplerKnownRegion: String, Sendable, CaseIterable {
    /// RePaint's replacement after every upsampler step against the input at that stage's resolution (the default):
    /// the final known region is the input itself, the repainted region super-resolved in agreement with it.
    case replace
    /// The upsamplers run as in `generate`; the final images' known pixels are then pasted from the input.
    case composite
    /// The upsamplers run as in `generate` and nothing is pasted: the known region is the model's reconstruction.
    case none
}

/// RePaint's settings for an edit; every default is written here once (docs/manipulations.md measures them).
public struct InpaintingOptions: Sendable, Equatable {
    /// j: decoder steps per resampling jump (RePaint: 10 of 250 steps).
    public var jumpLength = 5
    /// r: how many times each stretch of `jumpLength` decoder steps is denoised; 1 = no resampling (RePaint: 10).
    /// The decoder then takes about r × its steps.
    public var resampling = 4
    /// j of the upsampler stages.
    public var superResJumpLength = 1
    /// r of the upsampler stages (1: each step once; their few steps start from the decoder's settled image).
    public var superResResampling = 1
    /// How the upsamplers treat the known region.
    public var upsamplerKnownRegion = UpsamplerKnownRegion.replace
    /// How the mask reaches the decoder's and the upsamplers' resolutions.
    public var maskResampling = MaskResampling.strict

    public init(jumpLength: Int = 5, resampling: Int = 4, superResJumpLength: Int = 1, superResResampling: Int = 1,
                upsamplerKnownRegion: UpsamplerKnownRegion = .replace, maskResampling: MaskResampling = .strict) {
        self.jumpLength = jumpLength
        self.resampling = resampling
        self.superResJumpLength = superResJumpLength
        self.superResResampling = superResResampling
        self.upsamplerKnownRegion = upsamplerKnownRegion
        self.maskResampling = maskResampling
    }

    /// Throws a `PipelineArgumentError` naming the first setting out of range.
    public func validate() throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw PipelineArgumentError(message) } }
        try check(jumpLength >= 1, "inpainting jump length must be at least 1 (got \(jumpLength))")
        try check((1...100).contains(resampling), "inpainting resampling must be in 1…100 (got \(resampling))")
        try check(superResJumpLength >= 1, "inpainting super-resolution jump length must be at least 1 (got \(superResJumpLength))")
        try check((1...100).contains(superResResampling),
                  "inpainting super-resolution resampling must be in 1…100 (got \(superResResampling))")
    }

    /// Also checks the jumps against the step counts they walk.
    func validate(for options: SamplingOptions) throws {
        try validate()
        if resampling > 1 && jumpLength >= options.decoderSteps {
            throw PipelineArgumentError("inpainting jump length \(jumpLength) must be less than the decoder's \(options.decoderSteps) steps")
        }
        if superResResampling > 1 && superResJumpLength >= options.superResSteps {
            throw PipelineArgumentError("inpainting super-resolution jump length \(superResJumpLength) must be less than the \(options.superResSteps) super-resolution steps")
        }
    }

    var decoderSchedule: ResamplingSchedule { ResamplingSchedule(jumpLength: jumpLength, count: resampling) }
    var superResSchedule: ResamplingSchedule { ResamplingSchedule(jumpLength: superResJumpLength, count: superResResampling) }
}

extension UnCLIPPipeline {
    /// Inpainting: `image` with its `mask`ed region repainted so the whole image fits `prompt` → [n, H, W, 3] in [0, 1]
    /// at the pipeline's final resolution, n = `options.imagesPerPrompt`.
    ///
    /// The prior draws the prompt's CLIP image embedding as `generate` does; the decoder then samples with the unCLIP
    /// scheduler while RePaint (Lugmayr et al. 2022) replaces the known region after every step with the forward
    /// process's sample of the input at the decoder's resolution and, every `inpainting.jumpLength` steps, re-noises
    /// the sample back up and denoises it again (`inpainting.resampling` times in all); the upsamplers do the same
    /// against the input at their resolutions (`inpainting.upsamplerKnownRegion`). Works on any unCLIP decoder, no
    /// retraining. The image must be square (any size: resized to each stage's resolution as `decoderInput` does);
    /// the mask must have its size. The sampler's draws are `generate`'s; the known region's and the jumps' come from
    /// each stage's auxiliary streams (`AuxiliaryNoise`), so with an all-repaint mask and no resampling the edit is
    /// `generate`'s image.
    public func edit(_ image: RGBImage, mask: InpaintingMask, prompt: String, options: SamplingOptions,
                     inpainting: InpaintingOptions = InpaintingOptions(), noise: inout some NoiseSource,
                     progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        try validate(options)
        try requireUnCLIPDecoder(options, for: "edit")
        try inpainting.validate(for: options)
        guard image.width == image.height else {
            throw PipelineArgumentError("edit: the image is \(image.width)×\(image.height); it must be square (crop or pad it first)")
        }
        guard mask.width == image.width && mask.height == image.height else {
            throw PipelineArgumentError("edit: the mask is \(mask.width)×\(mask.height) but the image is \(image.width)×\(image.height); they must be the same size")
        }
        guard hasPrior else {
            throw PipelineArgumentError("\(name) has no prior: an edit draws the prompt's image embedding with the prior")
        }
        guard decoderConfig.inChannels == 3 else {
            throw PipelineArgumentError("edit: the decoder samples \(decoderConfig.inChannels) channels; inpainting needs an RGB decoder")
        }
        return try inference {
            let n = options.imagesPerPrompt
            let text = try encodePrompts([prompt], imagesPerPrompt: n, classifierFreeGuidance: options.classifierFreeGuidance)
            let embeddings = try runPrior(text, batch: n, options: options, noise: &noise, progress: progress)
            func known(_ size: Int) -> KnownRegion {
                KnownRegion(image: Self.resized(image, to: size),
                            weight: mask.keepWeight(size: size, resampling: inpainting.maskResampling))
            }
            let small = try with(components.decoder) { decoder in
                let c = decoder.conditioning(imageEmbeddings: embeddings, text: text, guided: options.classifierFreeGuidance)
                return try decoder.inpaint(c, batch: n, steps: options.decoderSteps, guidance: options.decoderGuidance,
                                           known: known(decoder.sampleSize), schedule: inpainting.decoderSchedule,
                                           noise: &noise, observer: observer(progress))
            }
            var x = small
            let replace = inpainting.upsamplerKnownRegion == .replace
            let stages = try upsamplerStages(for: options)
            for (k, upsampler) in components.upsamplers.prefix(stages).enumerated() {
                if k > 0 { x = x.clamped(min: -1, max: 1) }
                let steps = k == 0 ? options.superResSteps : options.laterSuperResSteps ?? options.superResSteps
                x = try upsampler.run(x, steps: steps, noise: &noise, observer: observer(progress),
                                      known: replace ? known : nil, schedule: inpainting.superResSchedule) { unet, body in
                    try with(unet, body)
                }
            }
            if inpainting.upsamplerKnownRegion == .composite && stages > 0 {
                let region = known(x.shape[3])
                x = region.merged(x, known: region.image)
            }
            let out = Self.pixels(x)
            emit("image", out)
            return out
        }
    }
}
