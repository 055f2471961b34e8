import Foundation
import UnCLIPNN
import UnCLIPImage

/// Settings of the DDIM decoder pass used by the image manipulations (unCLIP §3).
public struct DDIMOptions: Sendable {
    /// DDIM steps of the decoder (inversion and sampling use the same timesteps).
    public var steps = 50
    /// η: 0 is deterministic (an inverted image decodes back to itself); 1 adds DDPM-like noise at every step.
    public var eta: Float = 0
    /// Classifier-free guidance scale of the decoder, for inversion and sampling alike (1 = none).
    public var guidance: Float = 1
    /// Super-resolution denoising steps after the decoder.
    public var superResSteps = 7
    /// Fixed-point refinements of each inversion step: the model is evaluated again at the current estimate of x_t
    /// and the step re-solved, which makes inversion the exact inverse of η = 0 sampling as the iteration converges
    /// (each refinement costs one more decoder pass per step).
    public var inversionRefinements = 6
    /// How much of the noise schedule inversion climbs: 1 reaches t = 980 (for 50 steps), where x_T is nearly pure
    /// noise and the decoder redraws the scene from z_i; smaller depths stop earlier, so x_T pins the layout
    /// (positions) more firmly while z_i still sets what is drawn.
    public var depth: Double = 1

    public init(steps: Int = 50, eta: Float = 0, guidance: Float = 1, superResSteps: Int = 7, inversionRefinements: Int = 6) {
        self.steps = steps
        self.eta = eta
        self.guidance = guidance
        self.superResSteps = superResSteps
        self.inversionRefinements = inversionRefinements
    }

    /// Throws a `PipelineArgumentError` naming the first setting out of range.
    public func validate() throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw PipelineArgumentError(message) } }
        try check(steps >= 2 && steps <= 1000, "DDIM steps must be in 2…1000 (got \(steps))")
        try check(eta.isFinite && eta >= 0, "η must be a finite number ≥ 0 (got \(eta))")
        try check(guidance.isFinite && guidance >= 1, "guidance must be a finite number ≥ 1 (got \(guidance))")
        try check(superResSteps >= 2, "super-resolution steps must be at least 2 (got \(superResSteps))")
        try check((0...10).contains(inversionRefinements), "inversion refinements must be in 0…10 (got \(inversionRefinements))")
        try check(depth > 0 && depth <= 1, "depth must be in (0, 1] (got \(depth))")
    }
}

/// How interpolation frames get their decoder latent x_T (unCLIP §3.2 shows both).
public enum InterpolationLatent: String, Sendable, CaseIterable {
    /// x_T(θ) = slerp(x_T¹, x_T², θ) between the two images' DDIM inversions: both ends reconstruct their inputs.
    case interpolated
    /// One seeded x_T for every frame: only the CLIP image embedding changes along the strip.
    case shared
}

/// Spherical interpolation of the rows of `a` and `b` ([N, D] or [D]): the directions are slerped and the norm
/// interpolated linearly, so θ = 0 and θ = 1 give `a` and `b` exactly and equal-norm inputs keep their norm.
public func slerp(_ a: Tensor, _ b: Tensor, _ theta: Float) -> Tensor {
    precondition(a.shape == b.shape, "slerp: shapes \(a.shape) and \(b.shape) differ")
    if theta == 0 { return a.clone() }
    if theta == 1 { return b.clone() }
    let d = a.shape.last ?? 1, rows = a.count / max(d, 1)
    let out = Tensor(uninitializedShape: a.shape)
    let pa = a.data, pb = b.data, po = out.data
    for r in 0..<rows {
        let x = pa + r * d, y = pb + r * d, o = po + r * d
        var na = 0.0, nb = 0.0, dot = 0.0
        for i in 0..<d {
            na += Double(x[i]) * Double(x[i]); nb += Double(y[i]) * Double(y[i]); dot += Double(x[i]) * Double(y[i])
        }
        na = na.squareRoot(); nb = nb.squareRoot()
        let t = Double(theta)
        let norm = (1 - t) * na + t * nb
        guard na > 0 && nb > 0 else {
            for i in 0..<d { o[i] = Float((1 - t) * Double(x[i]) + t * Double(y[i])) }
            continue
        }
        let cosine = min(1, max(-1, dot / (na * nb)))
        let omega = acos(cosine)
        var wa: Double, wb: Double
        if omega < 1e-6 {
            (wa, wb) = (1 - t, t)  // (nearly) parallel: the chord is the arc
        } else {
            (wa, wb) = (sin((1 - t) * omega) / sin(omega), sin(t * omega) / sin(omega))
        }
        var m = 0.0
        var v = [Double](repeating: 0, count: d)
        for i in 0..<d {
            v[i] = wa * Double(x[i]) / na + wb * Double(y[i]) / nb
            m += v[i] * v[i]
        }
        let scale = norm / max(m.squareRoot(), 1e-30)
        for i in 0..<d { o[i] = Float(v[i] * scale) }
    }
    return out
}

extension UnCLIPPipeline {
    // MARK: Building blocks

    /// CLIP image embeddings [N, E] of images, preprocessed by the pipeline's image processor (the directory's
    /// feature extractor, CLIP's defaults without one).
    public func imageEmbeddings(of images: [RGBImage]) throws -> Tensor {
        guard hasImageEncoder else {
            throw PipelineArgumentError("\(name) has no image_encoder: image manipulations need the CLIP image encoder")
        }
        return try imageEmbeddings(pixelValues: components.imageProcessor(images))
    }

    /// CLIP text embeddings [N, E] (the projected EOS features the prior is conditioned on).
    public func textEmbeddings(of texts: [String]) throws -> Tensor {
        try encodePrompts(texts, imagesPerPrompt: 1, classifierFreeGuidance: false).promptEmbeds
    }

    /// Images at the decoder's resolution as [N, 3, s, s] in [−1, 1]: area averaging (repeated 2 × 2 means) for
    /// power-of-two factors — how the ShapesWorld decoder's training images are made — antialiased bicubic otherwise;
    /// non-square images are centre cropped first.
    public func decoderInput(_ images: [RGBImage]) throws -> Tensor {
        guard !images.isEmpty else { throw PipelineArgumentError("no images given") }
        let s = decoderSampleSize()
        return inference {
            let tensors = images.map { image -> Tensor in
                let side = min(image.width, image.height)
                let square = image.width == image.height ? image : image.centerCropped(width: side, height: side)
                return Self.resized(square, to: s)
            }
            return Tensor.concat(tensors, axis: 0)
        }
    }

    /// Whether a square image of `side` pixels reaches `size` by area averaging (repeated 2 × 2 means: `side` is
    /// `size` times a power of two) rather than antialiased bicubic.
    static func resizesByAreaAveraging(side: Int, to size: Int) -> Bool {
        let factor = side / size
        return side % size == 0 && factor & (factor - 1) == 0
    }

    /// A square image as [1, 3, size, size] in [−1, 1], resized as `decoderInput` does.
    static func resized(_ square: RGBImage, to size: Int) -> Tensor {
        var t = square.tensor()
        guard resizesByAreaAveraging(side: square.width, to: size) else { return t.resizedBicubicAntialiased(height: size, width: size) }
        var factor = square.width / size
        while factor > 1 {
            t = t.avgPool2x2()
            factor /= 2
        }
        return t
    }

    /// The decoder's sample size, from its config.
    public func decoderSampleSize() -> Int { decoderConfig.sampleSize }

    /// Runs `body` with the decoder and the conditioning of `embeddings` with empty captions, as diffusers' variation
    /// pipeline does.
    private func withDecoder<R>(conditioning embeddings: Tensor, guidance: Float,
                                _ body: (UnCLIPDecoder, DecoderConditioning) throws -> R) throws -> R {
        let guided = guidance > 1
        let text = try encodePrompts(Array(repeating: "", count: embeddings.shape[0]), imagesPerPrompt: 1, classifierFreeGuidance: guided)
        return try with(components.decoder) { decoder in
            try body(decoder, decoder.conditioning(imageEmbeddings: embeddings, text: text, guided: guided))
        }
    }

    /// DDIM inversion: decoder-resolution images [N, 3, s, s] in [−1, 1] and their CLIP image embeddings [N, E] →
    /// the latents x_T [N, 3, s, s] from which η = 0 DDIM sampling (same steps and guidance) redraws the images.
    public func invert(images x0: Tensor, imageEmbeddings: Tensor, options: DDIMOptions = DDIMOptions(),
                       progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        try options.validate()
        guard x0.shape.count == 4, x0.shape[0] == imageEmbeddings.shape[0] else {
            throw PipelineArgumentError("invert: images \(x0.shape) and embeddings \(imageEmbeddings.shape) do not pair up")
        }
        return try inference {
            try withDecoder(conditioning: imageEmbeddings, guidance: options.guidance) { decoder, c in
                try decoder.invert(images: x0, c, options: options, observer: observer(progress))
            }
        }
    }

    /// DDIM sampling of the decoder from latents x_T [N, 3, s, s] and CLIP image embeddings [N, E] → images
    /// [N, 3, s, s] in [−1, 1]. With η > 0 the step noise comes from `noise` (stage `decoder`).
    public func decodeDDIM(latents: Tensor, imageEmbeddings: Tensor, options: DDIMOptions = DDIMOptions(),
                           noise: inout some NoiseSource, progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        try options.validate()
        return try inference {
            try withDecoder(conditioning: imageEmbeddings, guidance: options.guidance) { decoder, c in
                try decoder.sampleDDIM(latents: latents, c, options: options, noise: &noise, observer: observer(progress))
            }
        }
    }

    /// Decoder-resolution images [N, 3, s, s] in [−1, 1] → final images [N, H, W, 3] in [0, 1] (the upsamplers, up
    /// to the model's default size).
    public func upscale(_ small: Tensor, superResSteps: Int = 7, noise: inout some NoiseSource,
                        progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        var options = SamplingOptions()
        options.superResSteps = superResSteps
        return try upscale(small, options: options, noise: &noise, progress: progress)
    }

    /// Images [N, 3, s, s] in [−1, 1] of the decoder's size or of a later stage's input size → images [N, H, W, 3] in
    /// [0, 1] at `options.size`: the cascade from the stage that takes s (its steps, size and noise from `options`).
    public func upscale(_ small: Tensor, options: SamplingOptions, noise: inout some NoiseSource,
                        progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        try validate(options)
        return try inference { Self.pixels(try runSuperResolution(small, options: options, noise: &noise, progress: progress)) }
    }

    // MARK: The paper's manipulations

    /// The bipartite latent (z_i, x_T) of images: CLIP image embeddings and DDIM-inverted decoder latents.
    public func latents(of images: [RGBImage], options: DDIMOptions = DDIMOptions(),
                        progress: ((PipelineProgress) -> Bool)? = nil) throws -> (embeddings: Tensor, latents: Tensor) {
        let z = try imageEmbeddings(of: images)
        let x = try invert(images: try decoderInput(images), imageEmbeddings: z, options: options, progress: progress)
        return (z, x)
    }

    /// Variations (§3.1): z_i of the image, x_T from its DDIM inversion, decoded `count` times with η > 0 (η = 0
    /// gives the reconstruction every time). Returns [count, H, W, 3] in [0, 1].
    public func variations(of image: RGBImage, count: Int, options: DDIMOptions, noise: inout some NoiseSource,
                           progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        guard count >= 1 else { throw PipelineArgumentError("variations: count must be at least 1 (got \(count))") }
        let (z, x) = try latents(of: [image], options: options, progress: progress)
        let rows = Array(repeating: 0, count: count)
        let small = try decodeDDIM(latents: repeatRows(x, rows), imageEmbeddings: repeatRows(z, rows), options: options,
                                   noise: &noise, progress: progress)
        return try upscale(small, superResSteps: options.superResSteps, noise: &noise, progress: progress)
    }

    /// Interpolation (§3.2): z_θ = slerp(z₁, z₂, θ) for θ = 0, 1/(frames − 1), …, 1, with x_T interpolated between
    /// the two inversions or shared (seeded from `noise`). Returns [frames, H, W, 3] in [0, 1] and the θ values.
    public func interpolate(_ first: RGBImage, _ second: RGBImage, frames: Int, latent: InterpolationLatent = .interpolated,
                            options: DDIMOptions = DDIMOptions(), noise: inout some NoiseSource,
                            progress: ((PipelineProgress) -> Bool)? = nil) throws -> (images: Tensor, thetas: [Float]) {
        guard frames >= 2 else { throw PipelineArgumentError("interpolation needs at least 2 frames (got \(frames))") }
        let thetas = (0..<frames).map { Float($0) / Float(frames - 1) }
        let z = try imageEmbeddings(of: [first, second])
        let za = z.gatherRows([0]), zb = z.gatherRows([1])
        let zs = Tensor.concat(thetas.map { slerp(za, zb, $0) }, axis: 0)
        let xs: Tensor
        switch latent {
        case .interpolated:
            let x = try invert(images: try decoderInput([first, second]), imageEmbeddings: z, options: options, progress: progress)
            let xa = repeatRows(x, [0]).reshaped([1, -1]), xb = repeatRows(x, [1]).reshaped([1, -1])
            xs = Tensor.concat(thetas.map { slerp(xa, xb, $0) }, axis: 0).reshaped([frames] + Array(x.shape.dropFirst()))
        case .shared:
            let s = decoderSampleSize()
            let one = try noise.noise(stage: .decoder, index: 0, shape: [1, 3, s, s])
            xs = repeatRows(one, Array(repeating: 0, count: frames))
        }
        let small = try decodeDDIM(latents: xs, imageEmbeddings: zs, options: options, noise: &noise, progress: progress)
        return (try upscale(small, superResSteps: options.superResSteps, noise: &noise, progress: progress), thetas)
    }

    /// Text diffs (§3.3): z_d = normalise(z_t − z_t0) from the CLIP text embeddings of `to` and `from`, rescaled to
    /// the image embedding's norm, and z_θ = slerp(z_i, z_d, θ) for each θ, decoded from the image's inverted x_T.
    /// Returns [θ count, H, W, 3] in [0, 1].
    public func textDiff(_ image: RGBImage, from source: String, to target: String, thetas: [Float],
                         options: DDIMOptions, noise: inout some NoiseSource,
                         progress: ((PipelineProgress) -> Bool)? = nil) throws -> Tensor {
        guard !thetas.isEmpty else { throw PipelineArgumentError("text diff: no θ values") }
        guard thetas.allSatisfy({ $0.isFinite && $0 >= 0 && $0 <= 1 }) else {
            throw PipelineArgumentError("text diff: θ must lie in [0, 1] (got \(thetas))")
        }
        let (z, x) = try latents(of: [image], options: options, progress: progress)
        let zd = try textDiffDirection(from: source, to: target, norm: z)
        let zs = Tensor.concat(thetas.map { slerp(z, zd, $0) }, axis: 0)
        let small = try decodeDDIM(latents: repeatRows(x, Array(repeating: 0, count: thetas.count)), imageEmbeddings: zs,
                                   options: options, noise: &noise, progress: progress)
        return try upscale(small, superResSteps: options.superResSteps, noise: &noise, progress: progress)
    }

    /// z_d = (z_t − z_t0)/‖z_t − z_t0‖ scaled to ‖z‖ ([1, E]).
    public func textDiffDirection(from source: String, to target: String, norm z: Tensor) throws -> Tensor {
        let t = try textEmbeddings(of: [target, source])
        let d = t.gatherRows([0]) - t.gatherRows([1])
        let length = (d * d).sum().item.squareRoot()
        guard length > 0 else { throw PipelineArgumentError("text diff: \"\(source)\" and \"\(target)\" have the same CLIP embedding") }
        return d * ((z * z).sum().item.squareRoot() / length)
    }

    /// Zero-shot classification (CLIP §3.1): softmax over labels of `logitScale` · cos(image, text(label)).
    /// Each label is put into `template` ("{}" is replaced by the label). Returns one probability per label.
    public func classify(_ image: RGBImage, labels: [String], template: String = "{}", logitScale: Float = 100) throws -> [Float] {
        guard !labels.isEmpty else { throw PipelineArgumentError("classify: no labels") }
        let z = try imageEmbeddings(of: [image])
        let t = try textEmbeddings(of: labels.map { template.replacingOccurrences(of: "{}", with: $0) })
        let logits = (0..<labels.count).map { k in logitScale * Float(cosineSimilarity(z, row: 0, t, row: k)) }
        let m = logits.max()!
        let exps = logits.map { Foundation.exp($0 - m) }
        let total = exps.reduce(0, +)
        return exps.map { $0 / total }
    }
}
