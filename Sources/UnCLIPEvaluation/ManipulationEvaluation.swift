import Foundation
import UnCLIPModels
import UnCLIPImage
import UnCLIPTensor
import UnCLIPShapesWorld

/// Peak signal-to-noise ratio in dB of two tensors in [−1, 1] (peak-to-peak 2).
public func psnr(_ a: Tensor, _ b: Tensor) -> Double {
    precondition(a.shape == b.shape, "psnr: shapes \(a.shape) and \(b.shape) differ")
    var sum = 0.0
    for i in 0..<a.count { let d = Double(a.data[i] - b.data[i]); sum += d * d }
    let mse = sum / Double(max(a.count, 1))
    return mse == 0 ? .infinity : 10 * log10(4 / mse)
}

/// DDIM-inversion round trips: PSNR at the decoder's resolution between each image and its η = 0 reconstruction.
public struct InversionReport: Sendable, CustomStringConvertible {
    public var psnrs: [Double] = []
    public var mean: Double { psnrs.isEmpty ? 0 : psnrs.reduce(0, +) / Double(psnrs.count) }
    public var minimum: Double { psnrs.min() ?? 0 }
    public var description: String {
        String(format: "inversion: %d images, PSNR at the decoder's resolution mean %.1f dB, worst %.1f dB", psnrs.count, mean, minimum)
    }
}

/// Inverts each image (its own CLIP image embedding, empty caption) and decodes it back with η = 0.
public func evaluateInversion(pipeline: UnCLIPPipeline, images: [RGBImage], options: DDIMOptions = DDIMOptions(),
                              progress: ((Int, Int) -> Void)? = nil) throws -> InversionReport {
    var report = InversionReport()
    var noise = SeededNoise(seed: 0)
    var deterministic = options
    deterministic.eta = 0
    for (i, image) in images.enumerated() {
        let target = try pipeline.decoderInput([image])
        let (z, x) = try pipeline.latents(of: [image], options: deterministic)
        let back = try pipeline.decodeDDIM(latents: x, imageEmbeddings: z, options: deterministic, noise: &noise)
        report.psnrs.append(psnr(target.clamped(min: -1, max: 1), back))
        progress?(i + 1, images.count)
    }
    return report
}

extension DDIMOptions {
    /// The text-diff settings tuned on ShapesWorld: plain DDIM inversion (no refinements) over 25 steps. Chosen with
    /// `evaluateTextDiff` on the embedded model (docs/manipulations.md, 100 red circles): 99 % turn into a blue circle
    /// and 93 % stay within 8 px, against 54 % / 32 % with an exact inversion (50 steps, 3 refinements; variations and
    /// interpolations use 6) — an x_T that reproduces the red circle exactly pulls the rotated embedding's picture
    /// back toward it. `unclip textdiff` and `unclip evaluate --task textdiff` start from them.
    public static let shapesWorldTextDiff = DDIMOptions(steps: 25, inversionRefinements: 0)
}

/// The text-diff test of the paper's §3.3 on ShapesWorld: a red circle edited toward "a blue circle".
public struct TextDiffReport: Sendable, CustomStringConvertible {
    public var cases = 0
    /// Exactly one object is found and it is a blue circle.
    public var turnedBlue = 0
    /// …and its centroid is within `positionTolerance` px of the original's (128-px canvas).
    public var turnedBlueInPlace = 0
    /// Mean centroid displacement over the cases where one object was found.
    public var meanDisplacement = 0.0
    public var positionTolerance = 8.0
    public var theta: Float = 0.5
    /// Every case: the red circle, its edit and what the parser found in it.
    public var results: [TextDiffCase] = []

    public var description: String {
        String(format: "text diff \"a red circle\" → \"a blue circle\", θ = %.2f, %d cases: blue circle %.1f %%, blue circle within %.0f px %.1f %%, mean displacement %.1f px",
               theta, cases, 100 * Double(turnedBlue) / Double(max(cases, 1)), positionTolerance,
               100 * Double(turnedBlueInPlace) / Double(max(cases, 1)), meanDisplacement)
    }
}

/// One text-diff case: the rendered red circle, the edited image and the parser's reading of it.
public struct TextDiffCase: Sendable, CustomStringConvertible {
    public var original: SceneObject
    public var input: RGBImage
    public var edited: RGBImage
    public var found: [DetectedObject]
    /// Centroid distance to the original centre (128-px canvas) when exactly one object was found.
    public var displacement: Double?
    public var turnedBlue: Bool { found.count == 1 && found[0].color == .blue && found[0].shape == .circle }

    public var verdict: String {
        guard let d = displacement else { return "\(found.count) objects" }
        return "\(found[0].color.name) \(found[0].shape.name), moved " + String(format: "%.1f px", d)
    }
    public var description: String {
        "\(original.sizeClass) red circle " + String(format: "s %.1f at (%.1f, %.1f)", original.s, original.cx, original.cy)
            + " → \(verdict); found: " + found.map(\.description).joined(separator: ", ")
    }
}

/// ShapesWorld renders of one red circle (sizes and places drawn from `seed`), edited with the text diff
/// "a red circle" → "a blue circle" at θ and parsed back by the project's evaluator.
public func evaluateTextDiff(pipeline: UnCLIPPipeline, cases: Int = 50, seed: UInt64 = 5, theta: Float = 0.5,
                             options: DDIMOptions = .shapesWorldTextDiff, positionTolerance: Double = 8,
                             progress: ((Int, Int) -> Void)? = nil) throws -> TextDiffReport {
    var report = TextDiffReport()
    report.positionTolerance = positionTolerance
    report.theta = theta
    var rng = Philox(seed: seed, stream: 77)
    func uniform(_ r: ClosedRange<Double>) -> Double { r.lowerBound + (r.upperBound - r.lowerBound) * Double(rng.nextUInt32()) / 4_294_967_296 }
    let parser = ShapesParser()
    var displacementSum = 0.0, displaced = 0
    for k in 0..<cases {
        let size: SizeClass = k % 2 == 0 ? .small : .large
        let s = uniform(size.range)
        let half = s / 2
        let object = SceneObject(shape: .circle, color: .red, sizeClass: size, s: s,
                                 cx: uniform((4 + half)...(124 - half)), cy: uniform((4 + half)...(124 - half)))
        let image = ShapesWorld.render(Scene(objects: [object], relation: nil, mentionsSize: false))
        var noise = SeededNoise(seed: UInt64(k))
        let edited = UnCLIPPipeline.images(from: try pipeline.textDiff(image, from: "a red circle", to: "a blue circle",
                                                                      thetas: [theta], options: options, noise: &noise))[0]
        var result = TextDiffCase(original: object, input: image, edited: edited, found: parser.parse(edited))
        report.cases += 1
        if result.found.count == 1 {
            let found = result.found[0]
            let d = ((found.cx - object.cx) * (found.cx - object.cx) + (found.cy - object.cy) * (found.cy - object.cy)).squareRoot()
            result.displacement = d
            displacementSum += d
            displaced += 1
            if result.turnedBlue {
                report.turnedBlue += 1
                if d <= positionTolerance { report.turnedBlueInPlace += 1 }
            }
        }
        report.results.append(result)
        progress?(k + 1, cases)
    }
    report.meanDisplacement = displaced > 0 ? displacementSum / Double(displaced) : 0
    return report
}

/// Where unCLIP keeps spatial relations, stage by stage. For ShapesWorld scenes whose caption has a relation, with the
/// scene's mirror image along the relation's axis (which the reversed caption describes: "A left of B" → "A right of
/// B"):
/// - text: how often the image embedding is closer to the true caption than to the reversed one, and how alike the
///   two text embeddings are (a bag-of-words text tower scores 50 % and cosine ≈ 1);
/// - image: how alike the image embeddings of the scene and its mirror image are (near 1: the embedding holds no
///   layout, and a decoder given it cannot place objects);
/// - prior: how often the prior's embedding for the caption is closer to the scene's than to the mirror image's
///   (50 % is chance).
public struct RelationProbeReport: Sendable, CustomStringConvertible {
    public var cases = 0
    public var preferred = 0
    public var meanTextCosine = 0.0
    public var meanMirrorImageCosine = 0.0
    /// Cases the prior was probed on (0 without a prior) and how many it placed on the scene's side.
    public var priorCases = 0
    public var priorPreferred = 0
    /// Two-object scenes (with or without a relation) on which CLIP's text scored the true caption against edits
    /// of it: the first object's shape changed, the second's colour changed, the two colours swapped or the two
    /// shapes swapped (binding; the swaps only where the two differ).
    public var attributeCases = 0
    public var shapePreferred = 0
    public var colorPreferred = 0
    public var swapCases = 0
    public var swapPreferred = 0
    public var shapeSwapCases = 0
    public var shapeSwapPreferred = 0
    public var description: String {
        func pct(_ a: Int, _ b: Int) -> Double { 100 * Double(a) / Double(max(b, 1)) }
        var lines = [
            String(format: "relation probe: %d scenes with a relation", cases),
            String(format: "  CLIP text:  true caption preferred over the reversed one for %.1f %% (chance 50 %%); text cosine of the two %.4f",
                   pct(preferred, cases), meanTextCosine),
            String(format: "  CLIP image: cosine of a scene's embedding and its mirror image's %.4f", meanMirrorImageCosine),
        ]
        if attributeCases > 0 {
            lines.append(String(format: "  CLIP text on %d two-object scenes, true caption preferred over: first shape changed %.1f %%, second colour changed %.1f %%, colours swapped %.1f %% (%d scenes), shapes swapped %.1f %% (%d scenes)",
                                attributeCases, pct(shapePreferred, attributeCases), pct(colorPreferred, attributeCases),
                                pct(swapPreferred, swapCases), swapCases, pct(shapeSwapPreferred, shapeSwapCases), shapeSwapCases))
        }
        if priorCases > 0 {
            lines.append(String(format: "  prior:      sample closer to the scene than to its mirror image for %.1f %% (chance 50 %%)",
                                pct(priorPreferred, priorCases)))
        }
        return lines.joined(separator: "\n")
    }
}

public func probeRelations(pipeline: UnCLIPPipeline, scenes: Int = 200, seed: UInt64 = 9_000_001,
                           sampling: SamplingOptions = SamplingOptions(), noiseSeed: UInt64 = 1) throws -> RelationProbeReport {
    let world = ShapesWorld(seed: seed)
    var report = RelationProbeReport()
    var textCosines = 0.0, imageCosines = 0.0
    var noise = SeededNoise(seed: noiseSeed)
    let hasPrior = pipeline.hasPrior
    var options = sampling
    options.imagesPerPrompt = 1
    for index in 0..<scenes {
        let scene = world.scene(at: index)
        guard scene.objects.count == 2 else { continue }
        let render = ShapesWorld.render(scene)
        guard scene.relation != nil else {
            try probeAttributes(of: scene, embedding: pipeline.imageEmbeddings(of: [render]), pipeline: pipeline, into: &report)
            continue
        }
        // The scene's mirror image along the relation's axis and its caption, the relation reversed — the same pair
        // CLIP's mirror-pair training uses.
        let (mirror, reversed) = CaptionNegatives.mirrorPair(image: render, caption: scene.caption)
        let z = try pipeline.imageEmbeddings(of: [render, mirror])
        try probeAttributes(of: scene, embedding: z, pipeline: pipeline, into: &report)
        let t = try pipeline.textEmbeddings(of: [scene.caption, reversed])
        report.cases += 1
        if cosine(z, row: 0, t, row: 0) > cosine(z, row: 0, t, row: 1) { report.preferred += 1 }
        textCosines += cosine(t, row: 0, t, row: 1)
        imageCosines += cosine(z, row: 0, z, row: 1)
        if hasPrior {
            let text = try pipeline.encodePrompts([scene.caption], imagesPerPrompt: 1, classifierFreeGuidance: options.classifierFreeGuidance)
            let sample = try pipeline.runPrior(text, batch: 1, options: options, noise: &noise)
            report.priorCases += 1
            if cosine(sample, row: 0, z, row: 0) > cosine(sample, row: 0, z, row: 1) { report.priorPreferred += 1 }
        }
    }
    report.meanTextCosine = textCosines / Double(max(report.cases, 1))
    report.meanMirrorImageCosine = imageCosines / Double(max(report.cases, 1))
    return report
}

/// Does CLIP's text prefer a two-object scene's caption over the same caption with one attribute changed? `z`'s first
/// row is the scene's image embedding.
private func probeAttributes(of scene: Scene, embedding z: Tensor, pipeline: UnCLIPPipeline,
                             into report: inout RelationProbeReport) throws {
    func edited(_ change: (inout [SceneObject]) -> Void) -> String {
        var objects = scene.objects
        change(&objects)
        return Scene(objects: objects, relation: scene.relation, mentionsSize: scene.mentionsSize).caption
    }
    let shape = edited { $0[0].shape = ShapeKind(rawValue: ($0[0].shape.rawValue + 1) % ShapeKind.allCases.count)! }
    let color = edited { $0[1].color = ShapeColor(rawValue: ($0[1].color.rawValue + 1) % ShapeColor.allCases.count)! }
    let swapped = edited { objects in (objects[0].color, objects[1].color) = (objects[1].color, objects[0].color) }
    let shapesSwapped = edited { objects in (objects[0].shape, objects[1].shape) = (objects[1].shape, objects[0].shape) }
    let t = try pipeline.textEmbeddings(of: [scene.caption, shape, color, swapped, shapesSwapped])
    let truth = cosine(z, row: 0, t, row: 0)
    report.attributeCases += 1
    if truth > cosine(z, row: 0, t, row: 1) { report.shapePreferred += 1 }
    if truth > cosine(z, row: 0, t, row: 2) { report.colorPreferred += 1 }
    if swapped != scene.caption {
        report.swapCases += 1
        if truth > cosine(z, row: 0, t, row: 3) { report.swapPreferred += 1 }
    }
    if shapesSwapped != scene.caption {
        report.shapeSwapCases += 1
        if truth > cosine(z, row: 0, t, row: 4) { report.shapeSwapPreferred += 1 }
    }
}
