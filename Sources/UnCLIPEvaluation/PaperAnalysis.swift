import Foundation
import UnCLIPModels
import UnCLIPImage
import UnCLIPShapesWorld

// The paper's comparisons made measurable on ShapesWorld: the same prompts and noise seed under several conditions
// (priors, embeddings given to the decoder, guidance scales), each scored by caption accuracy, FD-CLIP, precision,
// recall, spread and speed, with standard errors.

/// One condition of a comparison and its scores.
public struct ConditionResult: Sendable {
    public var label: String
    public var report: ShapesEvaluationReport
    /// Against the CLIP image features of held-out renders of the same caption distribution.
    public var frechetDistance: Estimate
    public var precision: Estimate
    public var recall: Estimate
}

/// A table of conditions side by side.
public struct ConditionComparison: Sendable, CustomStringConvertible {
    public var title: String
    public var results: [ConditionResult]
    /// Held-out renders the features are compared with.
    public var referenceImages: Int

    public var description: String {
        var lines = [title, "\(results.first.map { "\($0.report.prompts) prompts × \($0.report.images / max($0.report.prompts, 1)) images" } ?? "") per condition; bound: two-object images whose named colour–shape pairs are both drawn; FD-CLIP, precision and recall (k = 3) against \(referenceImages) held-out renders; ± one standard error (accuracy and spread: across prompts; FD: bootstrap; precision / recall: binomial)"]
        let width = max(12, results.map(\.label.count).max() ?? 0)
        func cell(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
        lines.append("condition".padding(toLength: width, withPad: " ", startingAt: 0) + " | " + [
            cell("one object %", 12), cell("two objects %", 13), cell("bound %", 7), cell("FD-CLIP", 15), cell("precision %", 12),
            cell("recall %", 12), cell("position px", 12), cell("size px", 11), cell("s/image", 7)].joined(separator: " | "))
        for r in results {
            let rep = r.report
            lines.append(r.label.padding(toLength: width, withPad: " ", startingAt: 0) + " | " + [
                cell(rep.wholeCaption(objects: 1).percent, 12), cell(rep.wholeCaption(objects: 2).percent, 13),
                cell(String(format: "%.1f", 100 * rep.twoObjects.bindingAccuracy), 7),
                cell(String(format: "%.2f ± %.2f", r.frechetDistance.value, r.frechetDistance.standardError), 15),
                cell(r.precision.percent, 12), cell(r.recall.percent, 12),
                cell(String(format: "%.1f ± %.1f", rep.positionSpread.value, rep.positionSpread.standardError), 12),
                cell(String(format: "%.1f ± %.1f", rep.sizeSpread.value, rep.sizeSpread.standardError), 11),
                cell(String(format: "%.2f", rep.secondsPerImage), 7)].joined(separator: " | "))
        }
        return lines.joined(separator: "\n")
    }

    /// The result labelled `label`.
    public subscript(label: String) -> ConditionResult? { results.first { $0.label == label } }
}

/// CLIP image features [N][E] of renders of scenes 0 ..< count of the prompt world (the evaluation's held-out
/// captions and the layouts ShapesWorld draws for them): the reference set of FD-CLIP and precision / recall.
public func referenceFeatures(pipeline: UnCLIPPipeline, promptSeed: UInt64, count: Int) throws -> [[Float]] {
    let world = ShapesWorld(seed: promptSeed)
    var features: [[Float]] = []
    for start in stride(from: 0, to: count, by: 64) {
        let images = (start..<min(start + 64, count)).map { ShapesWorld.render(world.scene(at: $0)) }
        features += try pipeline.imageEmbeddings(of: images).rowArrays()
    }
    return features
}

/// Evaluates each (label, configuration) on the same prompts and scores it against the reference renders.
public func compareConditions(pipeline: UnCLIPPipeline, title: String, conditions: [(String, ShapesEvaluationConfiguration)],
                              progress: ((String, Int, Int) -> Void)? = nil) throws -> ConditionComparison {
    guard let first = conditions.first?.1 else { throw PipelineArgumentError("no conditions to compare") }
    guard pipeline.hasImageEncoder else {
        throw PipelineArgumentError("\(pipeline.name) has no image_encoder: FD-CLIP and precision / recall need the CLIP image encoder")
    }
    for (label, c) in conditions where c.promptCount * c.imagesPerPrompt <= 3 {
        throw PipelineArgumentError("\(label): \(c.promptCount) prompts × \(c.imagesPerPrompt) images is too few: precision and recall (k = 3) need at least 4 images per condition")
    }
    let reference = try referenceFeatures(pipeline: pipeline, promptSeed: first.promptSeed, count: first.promptCount * first.imagesPerPrompt)
    var results: [ConditionResult] = []
    for (label, configuration) in conditions {
        let report = try evaluateShapes(pipeline: pipeline, configuration: configuration) { done, total in progress?(label, done, total) }
        let pr = precisionRecall(real: reference, generated: report.features, k: 3)
        results.append(ConditionResult(
            label: label, report: report,
            frechetDistance: frechetDistanceEstimate(real: reference, generated: report.features),
            precision: Estimate.proportion(Int((pr.precision * Double(report.features.count)).rounded()), of: report.features.count),
            recall: Estimate.proportion(Int((pr.recall * Double(reference.count)).rounded()), of: reference.count)))
    }
    return ConditionComparison(title: title, results: results, referenceImages: reference.count)
}

/// The paper's Figure 3 layout: for each of the first prompts, a row of images per condition, labelled.
public func conditionGrid(_ comparison: ConditionComparison, prompts: Int = 3, imagesPerRow: Int = 4) -> RGBImage {
    var blocks: [RGBImage] = []
    let count = min(prompts, comparison.results.map(\.report.samples.count).min() ?? 0)
    for p in 0..<count {
        let caption = comparison.results[0].report.samples[p].caption
        var images: [RGBImage] = [], labels: [String] = []
        for r in comparison.results {
            let row = Array(r.report.samples[p].images.prefix(imagesPerRow))
            images += row
            labels += row.map { _ in r.label }  // under every image: a row's label is never read as the next row's
        }
        blocks.append(RGBImage.labelledGrid(images, labels: labels, columns: imagesPerRow, padding: 4, title: caption))
    }
    return RGBImage.grid(blocks, columns: 1, padding: 8)
}

// MARK: Guidance (paper §5.2, Figures 9 and 10)

/// The decoder guidance sweep: unCLIP's decoder and the GLIDE-style baseline at each scale, on the same prompts and
/// noise.
public struct GuidanceSweep: Sendable {
    public var scales: [Float]
    public var decoders: [DecoderKind]
    /// One condition per (decoder, scale), labelled by `label(_:scale:)`.
    public var comparison: ConditionComparison

    /// "unCLIP, guidance 3" / "GLIDE-style, guidance 3".
    public static func label(_ decoder: DecoderKind, scale: Float) -> String {
        "\(name(of: decoder)), guidance \(String(format: "%g", scale))"
    }

    public static func name(of decoder: DecoderKind) -> String { decoder == .unclip ? "unCLIP" : "GLIDE-style" }

    public func result(_ decoder: DecoderKind, scale: Float) -> ConditionResult? { comparison[Self.label(decoder, scale: scale)] }

    /// The paper's Figure 10 made for ShapesWorld: caption accuracy (fidelity), recall and position spread
    /// (diversity) and FD-CLIP against the guidance scale, one line per decoder, ± one standard error.
    public func charts() -> RGBImage {
        func chart(_ title: String, _ y: String, _ value: (ConditionResult) -> Estimate, range: ClosedRange<Double>? = nil) -> RGBImage {
            let series = decoders.enumerated().map { k, d in
                LineChart.Series(name: Self.name(of: d), color: LineChart.palette[k % LineChart.palette.count],
                                 points: scales.compactMap { s in result(d, scale: s).map { r in
                                     let e = value(r)
                                     return LineChart.Point(x: Double(s), y: e.value, error: e.standardError)
                                 } })
            }
            return LineChart(title: title, xLabel: "decoder guidance scale", yLabel: y, series: series,
                             xTicks: scales.map(Double.init), yRange: range).render()
        }
        func percent(_ e: Estimate) -> Estimate { Estimate(100 * e.value, standardError: 100 * e.standardError) }
        return RGBImage.grid([
            chart("fidelity: whole-caption accuracy", "% of images", { percent($0.report.wholeCaption()) }),
            chart("diversity: recall (k = 3)", "% of held-out renders", { percent($0.recall) }),
            chart("diversity: object centres' spread", "px (RMS, 128-px canvas)", { $0.report.positionSpread }),
            chart("FD-CLIP (lower is better)", "Frechet distance", { $0.frechetDistance }),
        ], columns: 2, padding: 8)
    }
}

/// Evaluates each decoder at each decoder guidance scale on the prompts of `base` (its prior settings for unCLIP;
/// the baseline runs no prior).
public func guidanceSweep(pipeline: UnCLIPPipeline, base: ShapesEvaluationConfiguration, scales: [Float],
                          decoders: [DecoderKind], progress: ((String, Int, Int) -> Void)? = nil) throws -> GuidanceSweep {
    guard !scales.isEmpty, !decoders.isEmpty else { throw PipelineArgumentError("a guidance sweep needs at least one scale and one decoder") }
    if decoders.contains(.glide) && !pipeline.hasBaselineDecoder {
        throw PipelineArgumentError("\(pipeline.name) has no GLIDE-style decoder (glide_decoder): train one with `unclip train decoder --out DIR --conditioning caption`")
    }
    var conditions: [(String, ShapesEvaluationConfiguration)] = []
    for d in decoders {
        for s in scales {
            var c = base
            c.sampling.decoder = d
            c.sampling.decoderGuidance = s
            conditions.append((GuidanceSweep.label(d, scale: s), c))
        }
    }
    let comparison = try compareConditions(pipeline: pipeline, title: "decoder guidance (paper §5.2, Figures 9 and 10: unCLIP against a GLIDE-style decoder)",
                                           conditions: conditions, progress: progress)
    return GuidanceSweep(scales: scales, decoders: decoders, comparison: comparison)
}

/// The paper's Figure 9 for one caption: a 4 × 4 grid of `decoder`'s images at decoder guidance `scale` (the same
/// noise seed for every scale and decoder).
public func guidanceGrid(pipeline: UnCLIPPipeline, caption: String, decoder: DecoderKind, scale: Float, sampling: SamplingOptions,
                         noiseSeed: UInt64, side: Int = 4) throws -> RGBImage {
    var options = sampling
    options.decoder = decoder
    options.decoderGuidance = scale
    options.imagesPerPrompt = side * side
    var noise = SeededNoise(seed: noiseSeed)
    let images = UnCLIPPipeline.images(from: try pipeline.generate(prompts: [caption], options: options, noise: &noise))
    return RGBImage.labelledGrid(images, labels: images.map { _ in "" }, columns: side, padding: 2,
                                 title: GuidanceSweep.label(decoder, scale: scale))
}
