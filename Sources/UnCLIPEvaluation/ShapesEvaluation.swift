import Foundation
import UnCLIPModels
import UnCLIPImage
import UnCLIPShapesWorld

/// Settings of `unclip evaluate`: which prompts, how many images each, and how to sample.
public struct ShapesEvaluationConfiguration: Sendable {
    /// Prompts drawn from ShapesWorld with this seed; the trainers never use it (they use seed 0 by default).
    public var promptSeed: UInt64 = 9_000_001
    public var promptCount = 200
    public var imagesPerPrompt = 4
    /// Seed of the sampling noise.
    public var noiseSeed: UInt64 = 1
    public var sampling = SamplingOptions()
    /// Skip the prior: decode the CLIP image embedding of each prompt's own ground-truth render (with its caption), so
    /// the scores measure the decoder and super-resolution alone; the gap to the full pipeline is the prior's share.
    public var groundTruthEmbeddings = false
    /// Where to write a labelled sample grid (first prompts), if anywhere.
    public var gridURL: URL?
    /// Called with one line per image (caption, verdict, detected objects), if set.
    public var log: (@Sendable (String) -> Void)?

    public init() {}
}

/// What `unclip evaluate` measures.
public struct ShapesEvaluationReport: Sendable, CustomStringConvertible {
    public var oneObject = CaptionCheckSummary()
    public var twoObjects = CaptionCheckSummary()
    /// Mean over prompts of the spread of object centres / sizes across that prompt's images (canvas px).
    public var meanPositionSpread = 0.0
    public var meanSizeSpread = 0.0
    /// Mean 100·cos(CLIP text embedding, CLIP image embedding) over all images (the project's CLIP).
    public var clipScore = 0.0
    /// Wall-clock seconds per prompt (all its images in one batch) and per image.
    public var secondsPerPrompt = 0.0
    public var secondsPerImage = 0.0
    public var prompts = 0
    public var images = 0

    public var description: String {
        func pct(_ x: Double) -> String { String(format: "%5.1f %%", 100 * x) }
        func row(_ name: String, _ s: CaptionCheckSummary) -> String {
            "\(name.padding(toLength: 12, withPad: " ", startingAt: 0)) images \(String(s.images).padding(toLength: 5, withPad: " ", startingAt: 0)) colour \(pct(s.colorAccuracy))  shape \(pct(s.shapeAccuracy))  count \(pct(s.countAccuracy))  binding \(pct(s.bindingAccuracy))  relation \(s.relationChecked > 0 ? pct(s.relationAccuracy) : "   –   ")\(s.relationBound > 0 ? " (bound: " + pct(s.relationAccuracyWhenBound) + ")" : "")  whole caption \(pct(s.wholeCaptionAccuracy))"
        }
        return [
            "\(prompts) prompts × \(images / max(prompts, 1)) images",
            row("one object", oneObject),
            row("two objects", twoObjects),
            String(format: "diversity: object centres spread %.1f px, sizes %.1f px (RMS across a prompt's images, 128-px canvas)", meanPositionSpread, meanSizeSpread),
            String(format: "CLIP score: %.1f", clipScore),
            String(format: "speed: %.2f s per prompt (%d images in one batch), %.2f s per image", secondsPerPrompt, images / max(prompts, 1), secondsPerImage),
        ].joined(separator: "\n")
    }
}

/// Generates images for ShapesWorld captions, parses them back and scores caption fidelity, diversity and CLIP score.
public func evaluateShapes(pipeline: UnCLIPPipeline, configuration c: ShapesEvaluationConfiguration,
                          progress: ((Int, Int) -> Void)? = nil) throws -> ShapesEvaluationReport {
    var report = ShapesEvaluationReport()
    let world = ShapesWorld(seed: c.promptSeed)
    var options = c.sampling
    options.imagesPerPrompt = c.imagesPerPrompt
    var noise = SeededNoise(seed: c.noiseSeed)
    let parser = ShapesParser()
    let hasCLIPImage = pipeline.hasImageEncoder
    var spreads: [(Double, Double)] = []
    var clipScores: [Double] = []
    var gridRows: [RGBImage] = []
    var seconds = 0.0
    for p in 0..<c.promptCount {
        let scene = world.scene(at: p), caption = scene.caption
        let start = Date()
        let batch = c.groundTruthEmbeddings
            ? try pipeline.generate(prompts: [caption], imageEmbeddings: pipeline.imageEmbeddings(of: [ShapesWorld.render(scene)]),
                                    options: options, noise: &noise)
            : try pipeline.generate(prompts: [caption], options: options, noise: &noise)
        seconds += Date().timeIntervalSince(start)
        let images = UnCLIPPipeline.images(from: batch)
        let expected = try CaptionParser.parse(caption)
        var verdicts: [Bool] = []
        for (k, image) in images.enumerated() {
            let result = try CaptionCheck.evaluate(caption: caption, image: image, parser: parser)
            if expected.objects.count == 1 { report.oneObject.add(result) } else { report.twoObjects.add(result) }
            verdicts.append(result.correct)
            c.log?("\(p).\(k) \(result.correct ? "ok   " : "wrong") \(caption) | found: \(result.detected.map(\.description).joined(separator: "; "))")
        }
        let diversity = try ShapesDiversity.measure(images, caption: caption, parser: parser)
        if diversity.objects > 0 { spreads.append((diversity.positionSpread, diversity.sizeSpread)) }
        if hasCLIPImage {
            let imageEmbeds = try pipeline.imageEmbeddings(of: images)
            let textEmbeds = try pipeline.textEmbeddings(of: [caption])
            for i in 0..<images.count { clipScores.append(100 * cosine(textEmbeds, row: 0, imageEmbeds, row: i)) }
        }
        if gridRows.count < 6 {
            // One row per prompt: the caption above, the parser's verdict under each image.
            gridRows.append(RGBImage.labelledGrid(Array(images.prefix(4)), labels: verdicts.prefix(4).map { $0 ? "ok" : "WRONG" },
                                                  columns: 4, padding: 4, title: caption))
        }
        report.images += images.count
        progress?(p + 1, c.promptCount)
    }
    report.prompts = c.promptCount
    report.meanPositionSpread = spreads.isEmpty ? 0 : spreads.map(\.0).reduce(0, +) / Double(spreads.count)
    report.meanSizeSpread = spreads.isEmpty ? 0 : spreads.map(\.1).reduce(0, +) / Double(spreads.count)
    report.clipScore = clipScores.isEmpty ? 0 : clipScores.reduce(0, +) / Double(clipScores.count)
    report.secondsPerPrompt = seconds / Double(max(c.promptCount, 1))
    report.secondsPerImage = seconds / Double(max(report.images, 1))
    if let url = c.gridURL, !gridRows.isEmpty {
        try RGBImage.grid(gridRows, columns: 1, padding: 0).writePNG(to: url)
    }
    return report
}

/// Cosine similarity of row i of `a` and row j of `b` (both [N, D]).
func cosine(_ a: Tensor, row i: Int, _ b: Tensor, row j: Int) -> Double {
    let d = a.shape[1]
    var dot = 0.0, na = 0.0, nb = 0.0
    for k in 0..<d {
        let x = Double(a.data[i * d + k]), y = Double(b.data[j * d + k])
        dot += x * y; na += x * x; nb += y * y
    }
    return dot / max((na * nb).squareRoot(), 1e-12)
}
