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
    /// What the decoder is given as the CLIP image embedding (the prior's, by default).
    public var embeddings = ImageEmbeddingSource.prior
    /// Where to write a labelled sample grid (first prompts), if anywhere.
    public var gridURL: URL?
    /// Called with one line per image (caption, verdict, detected objects), if set.
    public var log: (@Sendable (String) -> Void)?

    public init() {}
}

/// The CLIP image embedding the decoder gets in an evaluation: the paper's "why the prior matters" conditions (§5.1,
/// Figure 3) and the decoder measured alone.
public enum ImageEmbeddingSource: String, Sendable, CaseIterable {
    /// The prior's sample from the caption (the full unCLIP pipeline).
    case prior
    /// The CLIP image embedding of each prompt's own ground-truth render: the scores measure the decoder and
    /// super-resolution alone; the gap to the full pipeline is the prior's share.
    case groundTruth = "ground-truth"
    /// None: the decoder's learned null embedding (text_proj's `learned_classifier_free_guidance_embeddings`), what
    /// its 10 % embedding dropout puts in the embedding's place in training (the caption alone).
    case none
    /// The caption's CLIP text embedding in place of an image embedding.
    case textEmbedding = "text-embedding"
}

/// One prompt's outcome: its object count, images drawn right, and the spread of its images.
public struct PromptOutcome: Sendable {
    public var objects: Int
    public var correct: Int
    public var images: Int
    public var positionSpread: Double?
    public var sizeSpread: Double?
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
    /// Per prompt, in order (for standard errors over prompts).
    public var outcomes: [PromptOutcome] = []
    /// The CLIP image embedding of every generated image, in order (for FD-CLIP and precision / recall).
    public var features: [[Float]] = []
    /// The first prompts' captions and images (for figures).
    public var samples: [(caption: String, images: [RGBImage])] = []

    /// Whole-caption accuracy over the prompts with `objects` objects, with its standard error across prompts.
    public func wholeCaption(objects: Int) -> Estimate {
        meanOverPrompts(outcomes.filter { $0.objects == objects }.map { Double($0.correct) / Double(max($0.images, 1)) })
    }

    /// Whole-caption accuracy over all prompts, with its standard error across prompts.
    public func wholeCaption() -> Estimate {
        meanOverPrompts(outcomes.map { Double($0.correct) / Double(max($0.images, 1)) })
    }

    /// Mean position / size spread across a prompt's images, with its standard error across prompts.
    public var positionSpread: Estimate { meanOverPrompts(outcomes.compactMap(\.positionSpread)) }
    public var sizeSpread: Estimate { meanOverPrompts(outcomes.compactMap(\.sizeSpread)) }

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
        let batch: Tensor
        switch c.embeddings {
        case .prior: batch = try pipeline.generate(prompts: [caption], options: options, noise: &noise)
        case .groundTruth:
            batch = try pipeline.generate(prompts: [caption], imageEmbeddings: pipeline.imageEmbeddings(of: [ShapesWorld.render(scene)]),
                                          options: options, noise: &noise)
        case .none:
            batch = try pipeline.generate(prompts: [caption], imageEmbeddings: pipeline.nullImageEmbeddings(1), options: options, noise: &noise)
        case .textEmbedding:
            batch = try pipeline.generate(prompts: [caption], imageEmbeddings: pipeline.textEmbeddings(of: [caption]), options: options, noise: &noise)
        }
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
        report.outcomes.append(PromptOutcome(objects: expected.objects.count, correct: verdicts.filter { $0 }.count, images: images.count,
                                             positionSpread: diversity.objects > 0 ? diversity.positionSpread : nil,
                                             sizeSpread: diversity.objects > 0 ? diversity.sizeSpread : nil))
        if hasCLIPImage {
            let imageEmbeds = try pipeline.imageEmbeddings(of: images)
            let textEmbeds = try pipeline.textEmbeddings(of: [caption])
            for i in 0..<images.count { clipScores.append(100 * cosineSimilarity(textEmbeds, row: 0, imageEmbeds, row: i)) }
            report.features += imageEmbeds.rowArrays()
        }
        if report.samples.count < 4 { report.samples.append((caption, images)) }
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

/// The mean of per-prompt values with its standard error (sample standard deviation / √n).
func meanOverPrompts(_ x: [Double]) -> Estimate {
    guard !x.isEmpty else { return Estimate(0, standardError: 0) }
    let n = Double(x.count), mean = x.reduce(0, +) / n
    let variance = x.count > 1 ? x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1) : 0
    return Estimate(mean, standardError: (variance / n).squareRoot())
}

