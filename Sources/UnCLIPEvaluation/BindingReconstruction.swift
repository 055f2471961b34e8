import Foundation
import UnCLIPModels
import UnCLIPImage
import UnCLIPShapesWorld

// The paper's first named limitation (§7, Figure 15): decoding a CLIP image embedding of two objects, unCLIP mixes up
// which attribute belongs to which object. On ShapesWorld the render's objects are known, so each reconstruction's
// objects are matched to them by position and every swap is counted.

/// How one reconstruction of a two-object render went.
public enum ReconstructionOutcome: String, Sendable, CaseIterable {
    /// Both objects drawn with their own colour and shape.
    case correct
    /// The two colours exchanged between the objects' places (the shapes in place).
    case colorSwap = "colour swap"
    /// The two shapes exchanged (the colours in place).
    case shapeSwap = "shape swap"
    /// One object's colour given to both (the shapes in place): the attribute leaks to the other object.
    case colorCopy = "colour copied"
    /// One object's shape given to both (the colours in place).
    case shapeCopy = "shape copied"
    /// Some other colour or shape wrong (not an exchange between the two objects).
    case otherAttribute = "other attribute"
    /// Not two objects found.
    case count
}

/// The counts over all reconstructions of one condition.
public struct BindingReconstructionReport: Sendable, CustomStringConvertible {
    public var label: String
    public var scenes = 0
    public var images = 0
    public var outcomes: [ReconstructionOutcome: Int] = [:]
    /// Images whose two objects differ in colour (where a colour swap can show) / in shape.
    public var colorSwapEligible = 0
    public var shapeSwapEligible = 0
    /// The caption check's verdict: colours and shapes right as sets but bound to the wrong objects (position-free).
    public var unboundAttributes = 0
    /// The first scenes' renders and reconstructions, for the figure.
    public var samples: [(render: RGBImage, reconstructions: [RGBImage], outcomes: [ReconstructionOutcome])] = []

    public func count(_ o: ReconstructionOutcome) -> Int { outcomes[o] ?? 0 }
    public func rate(_ o: ReconstructionOutcome) -> Estimate {
        switch o {
        case .colorSwap, .colorCopy: return .proportion(count(o), of: colorSwapEligible)
        case .shapeSwap, .shapeCopy: return .proportion(count(o), of: shapeSwapEligible)
        default: return .proportion(count(o), of: images)
        }
    }
    /// Either attribute exchanged between the objects or copied from one to the other (all images): the binding
    /// errors of the paper's Figure 15.
    public var bindingErrorRate: Estimate {
        .proportion(count(.colorSwap) + count(.shapeSwap) + count(.colorCopy) + count(.shapeCopy), of: images)
    }

    public var description: String {
        [
            "\(label): \(scenes) two-object renders × \(images / max(scenes, 1)) reconstructions",
            "  correct \(rate(.correct).percent) %; of the \(colorSwapEligible) with two colours: colours swapped \(rate(.colorSwap).percent) %, one colour copied to both \(rate(.colorCopy).percent) %; of the \(shapeSwapEligible) with two shapes: shapes swapped \(rate(.shapeSwap).percent) %, one shape copied to both \(rate(.shapeCopy).percent) %",
            "  binding errors (swapped or copied) \(bindingErrorRate.percent) %; other colour / shape error \(rate(.otherAttribute).percent) %; not two objects \(rate(.count).percent) %; attributes right but unbound (caption check) \(Estimate.proportion(unboundAttributes, of: images).percent) %",
        ].joined(separator: "\n")
    }
}

/// The outcome of one reconstruction: `detected` matched to the render's two objects by the assignment with the
/// smaller total centre distance.
public func reconstructionOutcome(objects: [SceneObject], detected: [DetectedObject]) -> ReconstructionOutcome {
    precondition(objects.count == 2, "reconstructionOutcome: two-object scenes only")
    guard detected.count == 2 else { return .count }
    func distance(_ o: SceneObject, _ d: DetectedObject) -> Double { ((o.cx - d.cx) * (o.cx - d.cx) + (o.cy - d.cy) * (o.cy - d.cy)).squareRoot() }
    let straight = distance(objects[0], detected[0]) + distance(objects[1], detected[1])
    let crossed = distance(objects[0], detected[1]) + distance(objects[1], detected[0])
    let drawn = straight <= crossed ? detected : [detected[1], detected[0]]
    let (a, b) = (objects[0], objects[1])
    let colorsRight = drawn[0].color == a.color && drawn[1].color == b.color
    let shapesRight = drawn[0].shape == a.shape && drawn[1].shape == b.shape
    let colorsSwapped = a.color != b.color && drawn[0].color == b.color && drawn[1].color == a.color
    let shapesSwapped = a.shape != b.shape && drawn[0].shape == b.shape && drawn[1].shape == a.shape
    let colorCopied = a.color != b.color && drawn[0].color == drawn[1].color && [a.color, b.color].contains(drawn[0].color)
    let shapeCopied = a.shape != b.shape && drawn[0].shape == drawn[1].shape && [a.shape, b.shape].contains(drawn[0].shape)
    switch (colorsRight, shapesRight) {
    case (true, true): return .correct
    case (false, true): return colorsSwapped ? .colorSwap : colorCopied ? .colorCopy : .otherAttribute
    case (true, false): return shapesSwapped ? .shapeSwap : shapeCopied ? .shapeCopy : .otherAttribute
    case (false, false):
        // Both exchanged is the two objects drawn in each other's place: neither attribute is bound wrongly.
        return .otherAttribute
    }
}

/// Reconstructs the first `scenes` two-object scenes of the prompt world from their renders' CLIP image embeddings,
/// `imagesPerScene` each, with the caption (`captioned`, the decoder's text conditioning as in generation) or without
/// it (the paper's reconstructions: the image variation pipeline, empty caption).
public func evaluateBindingReconstruction(pipeline: UnCLIPPipeline, scenes count: Int, imagesPerScene n: Int, captioned: Bool,
                                          promptSeed: UInt64 = 9_000_001, noiseSeed: UInt64 = 1, sampling: SamplingOptions,
                                          progress: ((Int, Int) -> Void)? = nil) throws -> BindingReconstructionReport {
    guard pipeline.hasImageEncoder else {
        throw PipelineArgumentError("\(pipeline.name) has no image_encoder: reconstructions need the CLIP image encoder")
    }
    var report = BindingReconstructionReport(label: captioned ? "reconstruction with the caption" : "reconstruction (image embedding only, empty caption)")
    let world = ShapesWorld(seed: promptSeed)
    var options = sampling
    options.imagesPerPrompt = n
    options.decoder = .unclip
    var noise = SeededNoise(seed: noiseSeed)
    let parser = ShapesParser()
    var index = 0
    while report.scenes < count {
        let scene = world.scene(at: index)
        index += 1
        guard scene.objects.count == 2 else { continue }
        let render = ShapesWorld.render(scene)
        let embedding = try pipeline.imageEmbeddings(of: [render])
        let batch = captioned
            ? try pipeline.generate(prompts: [scene.caption], imageEmbeddings: embedding, options: options, noise: &noise)
            : try pipeline.vary(imageEmbeddings: embedding, options: options, noise: &noise)
        let images = UnCLIPPipeline.images(from: batch)
        let expected = try CaptionParser.parse(scene.caption)
        var outcomes: [ReconstructionOutcome] = []
        for image in images {
            let detected = parser.parse(image)
            let outcome = reconstructionOutcome(objects: scene.objects, detected: detected)
            outcomes.append(outcome)
            report.outcomes[outcome, default: 0] += 1
            if scene.objects[0].color != scene.objects[1].color { report.colorSwapEligible += 1 }
            if scene.objects[0].shape != scene.objects[1].shape { report.shapeSwapEligible += 1 }
            let check = CaptionCheck.evaluate(expected: expected, detected: detected)
            if check.colorsCorrect && check.shapesCorrect && !check.bindingCorrect { report.unboundAttributes += 1 }
        }
        if report.samples.count < 8 { report.samples.append((render, images, outcomes)) }
        report.images += images.count
        report.scenes += 1
        progress?(report.scenes, count)
    }
    return report
}

/// Each sample's render beside its reconstructions, labelled with the outcomes: the paper's Figure 15 for ShapesWorld.
public func bindingReconstructionGrid(_ report: BindingReconstructionReport, scenes: Int = 6) -> RGBImage {
    var images: [RGBImage] = [], labels: [String] = []
    let perRow = 1 + (report.samples.first?.reconstructions.count ?? 0)
    for sample in report.samples.prefix(scenes) {
        images.append(sample.render)
        labels.append("render")
        images += sample.reconstructions
        labels += sample.outcomes.map { $0 == .correct ? "ok" : $0.rawValue }
    }
    return RGBImage.labelledGrid(images, labels: labels, columns: perRow, padding: 4, title: report.label)
}
