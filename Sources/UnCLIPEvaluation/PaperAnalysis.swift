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
        var lines = [title, "\(results.first.map { "\($0.report.prompts) prompts × \($0.report.images / max($0.report.prompts, 1)) images" } ?? "") per condition; FD-CLIP, precision and recall (k = 3) against \(referenceImages) held-out renders; ± one standard error (accuracy and spread: across prompts; FD: bootstrap; precision / recall: binomial)"]
        let width = max(12, results.map(\.label.count).max() ?? 0)
        func cell(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
        lines.append("condition".padding(toLength: width, withPad: " ", startingAt: 0) + " | " + [
            cell("one object %", 12), cell("two objects %", 13), cell("FD-CLIP", 15), cell("precision %", 12),
            cell("recall %", 12), cell("position px", 12), cell("size px", 11), cell("s/image", 7)].joined(separator: " | "))
        for r in results {
            let rep = r.report
            lines.append(r.label.padding(toLength: width, withPad: " ", startingAt: 0) + " | " + [
                cell(rep.wholeCaption(objects: 1).percent, 12), cell(rep.wholeCaption(objects: 2).percent, 13),
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
