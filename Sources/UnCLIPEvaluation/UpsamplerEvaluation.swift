import Foundation
import UnCLIPModels
import UnCLIPImage
import UnCLIPShapesWorld

/// Settings of `unclip evaluate --task upsampler`: the last upsampler stage judged against the image it was given.
public struct UpsamplerEvaluationConfiguration: Sendable {
    public var promptSeed: UInt64 = 9_000_001
    public var promptCount = 50
    public var imagesPerPrompt = 1
    public var noiseSeed: UInt64 = 1
    /// The model's sampling settings; `size` is ignored (the stage's input and output sizes are the cascade's last two).
    public var sampling = SamplingOptions()
    /// Where to write crops of the first images (the input's pixels enlarged, its bicubic enlargement, the output), if
    /// anywhere.
    public var gridURL: URL?
    public var log: (@Sendable (String) -> Void)?

    public init() {}

    /// The prompts, images, noise, sampling, grid and log of a caption evaluation's settings.
    public init(_ c: ShapesEvaluationConfiguration) {
        promptSeed = c.promptSeed
        promptCount = c.promptCount
        imagesPerPrompt = c.imagesPerPrompt
        noiseSeed = c.noiseSeed
        sampling = c.sampling
        gridURL = c.gridURL
        log = c.log
    }
}

/// What the last upsampler does to the images it is given (`evaluateUpsampler`).
public struct UpsamplerEvaluationReport: Sendable, CustomStringConvertible {
    /// The stage's input and output sides (the embedded model: 128 → 512).
    public var inputSize = 0, outputSize = 0
    public var prompts = 0, images = 0
    /// Whole-caption accuracy of the input images and of the outputs area-downscaled to the input size, over one-
    /// and two-object prompts, each with its standard error across prompts.
    public var inputAccuracy = Estimate(0, standardError: 0), outputAccuracy = Estimate(0, standardError: 0)
    public var inputAccuracyByObjects: [Int: Estimate] = [:], outputAccuracyByObjects: [Int: Estimate] = [:]
    /// Output minus input accuracy, paired per prompt.
    public var accuracyChange = Estimate(0, standardError: 0)
    /// Edges of the outputs, of their inputs enlarged by antialiased bicubic (what the stage is conditioned on: no
    /// upsampler at all), and of ground-truth renders of the prompts' scenes at the output size.
    public var outputEdges = EdgeStatistics(), bicubicEdges = EdgeStatistics(), truthEdges = EdgeStatistics()
    /// Seconds per image of the stage alone.
    public var secondsPerImage = 0.0

    public var description: String {
        func pct(_ e: Estimate) -> String { String(format: "%5.1f %% ± %.1f", 100 * e.value, 100 * e.standardError) }
        func objects(_ m: [Int: Estimate]) -> String { [1, 2].compactMap { k in m[k].map { "\(k) object\(k == 1 ? "" : "s") \(pct($0))" } }.joined(separator: ", ") }
        let ratio = truthEdges.medianWidth > 0 ? outputEdges.medianWidth / truthEdges.medianWidth : .nan
        return [
            "upsampler \(inputSize) → \(outputSize): \(prompts) prompts × \(images / max(prompts, 1)) images",
            "whole caption at \(inputSize) (its input):              \(pct(inputAccuracy))  (\(objects(inputAccuracyByObjects)))",
            "whole caption at \(outputSize), area-downscaled to \(inputSize): \(pct(outputAccuracy))  (\(objects(outputAccuracyByObjects)))",
            String(format: "change (paired per prompt): %+.1f ± %.1f points", 100 * accuracyChange.value, 100 * accuracyChange.standardError),
            String(format: "edge width 10–90 %% (median of %d edges): output %.2f px, ground-truth renders %.2f px (%d edges): ratio %.2f; the input enlarged by bicubic %.2f px",
                   outputEdges.count, outputEdges.medianWidth, truthEdges.medianWidth, truthEdges.count, ratio, bicubicEdges.medianWidth),
            String(format: "background (beyond 4 px of any shape): mean deviation from white %.2f levels (output), %.2f (ground truth); %.3f %% of its pixels off by more than 8",
                   outputEdges.backgroundDeviation, truthEdges.backgroundDeviation, 100 * outputEdges.backgroundOutliers),
            String(format: "speed: %.2f s per image for the stage alone", secondsPerImage),
        ].joined(separator: "\n")
    }
}

/// Edge widths and background cleanliness of a set of images (`EdgeSharpness`).
public struct EdgeStatistics: Sendable {
    public var widths: [Double] = []
    var backgroundSum = 0.0, backgroundPixels = 0, backgroundOff = 0

    public init() {}

    public var count: Int { widths.count }
    public var medianWidth: Double {
        guard !widths.isEmpty else { return .nan }
        let s = widths.sorted(), n = s.count
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
    }
    /// Mean absolute deviation from white (0 … 255 levels, averaged over channels) of the background pixels.
    public var backgroundDeviation: Double { backgroundPixels > 0 ? backgroundSum / Double(backgroundPixels) : .nan }
    /// The fraction of background pixels more than 8 levels from white in some channel.
    public var backgroundOutliers: Double { backgroundPixels > 0 ? Double(backgroundOff) / Double(backgroundPixels) : .nan }

    public mutating func add(_ image: RGBImage) {
        widths += EdgeSharpness.widths(image)
        let b = EdgeSharpness.background(image)
        backgroundSum += b.sum
        backgroundPixels += b.pixels
        backgroundOff += b.off
    }
}

/// How sharp a ShapesWorld image's edges are and how clean its white background, measured without knowing the scene.
///
/// A pixel's "ink" is its distance from white, (765 − R − G − B) / 765: 0 on the background, a colour's constant on
/// its fill (0.38 for yellow … 0.63 for green), and linear in coverage across an anti-aliased edge. Along every 4th
/// row and column, each step from background to fill (and back) with flat stretches on both sides (pixels 6 … 12
/// away) is one edge; its 10–90 % width is the distance between the points where the ink crosses 10 % and 90 % of the
/// step, interpolated linearly. An exact render's axis-aligned edges are under a pixel wide; slanted and curved ones
/// wider along a row.
public enum EdgeSharpness {
    static func ink(_ image: RGBImage) -> [Double] {
        image.pixels.withUnsafeBufferPointer { p in
            (0..<(image.width * image.height)).map { i -> Double in
                let sum = Int(p[3 * i]) + Int(p[3 * i + 1]) + Int(p[3 * i + 2])
                return Double(765 - sum) / 765
            }
        }
    }

    /// The 10–90 % widths (pixels) of the image's edges.
    public static func widths(_ image: RGBImage) -> [Double] {
        let d = ink(image), w = image.width, h = image.height
        var out: [Double] = []
        func scan(_ line: [Double]) {
            for values in [line, line.reversed()] { out += risingEdges(values) }
        }
        for y in stride(from: 0, to: h, by: 4) { scan(Array(d[(y * w)..<((y + 1) * w)])) }
        for x in stride(from: 0, to: w, by: 4) { scan((0..<h).map { d[$0 * w + x] }) }
        return out
    }

    /// Widths of the background → fill steps of one line of ink values.
    static func risingEdges(_ v: [Double]) -> [Double] {
        let near = 6, far = 12, threshold = 0.15
        var out: [Double] = []
        var i = far
        while i < v.count - far {
            guard v[i - 1] < threshold && v[i] >= threshold else { i += 1; continue }
            let before = v[(i - far)...(i - near)], after = v[(i + near)...(i + far)]
            let background = before.reduce(0, +) / Double(before.count)
            let fill = after.reduce(0, +) / Double(after.count)
            let step = fill - background
            // Flat on both sides (no second edge, no stroke or tip of a thin part inside the windows).
            guard before.max()! < 0.05, step > 0.3, after.max()! - after.min()! < 0.1 * step else { i += 1; continue }
            func crossing(_ level: Double) -> Double? {
                for j in (i - near)..<(i + near) where v[j] < level && v[j + 1] >= level {
                    return Double(j) + (level - v[j]) / (v[j + 1] - v[j])
                }
                return nil
            }
            if let a = crossing(background + 0.1 * step), let b = crossing(background + 0.9 * step), b >= a { out.append(b - a) }
            i += near
        }
        return out
    }

    /// Background pixels (farther than 4 px from any pixel of ink ≥ 0.15): their summed mean deviation from white,
    /// their count, and how many are more than 8 levels off in some channel.
    public static func background(_ image: RGBImage) -> (sum: Double, pixels: Int, off: Int) {
        let d = ink(image), w = image.width, h = image.height, r = 4
        // Dilate the shapes' mask by r, separably: along each line a pixel is masked when a marked pixel lies within r.
        func dilated(_ marked: [Bool], count n: Int, lines: Int, index: (Int, Int) -> Int) -> [Bool] {
            var out = marked
            for line in 0..<lines {
                var previous = Int.min / 2, following = [Int](repeating: Int.max / 2, count: n)
                for k in stride(from: n - 1, through: 0, by: -1) { following[k] = marked[index(line, k)] ? k : (k + 1 < n ? following[k + 1] : Int.max / 2) }
                for k in 0..<n {
                    if marked[index(line, k)] { previous = k }
                    out[index(line, k)] = k - previous <= r || following[k] - k <= r
                }
            }
            return out
        }
        let shapes = d.map { $0 >= 0.15 }
        let rows = dilated(shapes, count: w, lines: h) { y, x in y * w + x }
        let masked = dilated(rows, count: h, lines: w) { x, y in y * w + x }
        var sum = 0.0, pixels = 0, off = 0
        image.pixels.withUnsafeBufferPointer { p in
            for i in 0..<(w * h) where !masked[i] {
                let dr = 255 - Int(p[3 * i]), dg = 255 - Int(p[3 * i + 1]), db = 255 - Int(p[3 * i + 2])
                sum += Double(abs(dr) + abs(dg) + abs(db)) / 3
                pixels += 1
                if max(abs(dr), abs(dg), abs(db)) > 8 { off += 1 }
            }
        }
        return (sum, pixels, off)
    }
}

/// Draws each prompt's images up to the cascade's last input size, runs the last upsampler on them (as saved: 8-bit),
/// and measures what it did: caption accuracy before and after (the output area-downscaled back), edge widths and
/// background against ground-truth renders of the prompts' scenes at the output size, and its time.
public func evaluateUpsampler(pipeline: UnCLIPPipeline, configuration c: UpsamplerEvaluationConfiguration,
                              progress: ((Int, Int) -> Void)? = nil) throws -> UpsamplerEvaluationReport {
    let sizes = pipeline.imageSizes
    guard sizes.count >= 2 else {
        throw PipelineArgumentError("\(pipeline.name) has no upsampler: --task upsampler judges the cascade's last stage")
    }
    let input = sizes[sizes.count - 2], output = sizes[sizes.count - 1]
    guard output % input == 0 else {
        throw PipelineArgumentError("the last upsampler of \(pipeline.name) goes \(input) → \(output), not a whole factor")
    }
    var report = UpsamplerEvaluationReport()
    report.inputSize = input
    report.outputSize = output
    let world = ShapesWorld(seed: c.promptSeed), parser = ShapesParser()
    var before = c.sampling, after = c.sampling
    before.imagesPerPrompt = c.imagesPerPrompt
    before.size = input
    after.size = output
    var noise = SeededNoise(seed: c.noiseSeed)
    var inputScores: [(objects: Int, value: Double)] = [], outputScores: [(objects: Int, value: Double)] = []
    var seconds = 0.0
    var cells: [RGBImage] = [], labels: [String] = []
    for p in 0..<c.promptCount {
        let scene = world.scene(at: p), caption = scene.caption
        let small = UnCLIPPipeline.images(from: try pipeline.generate(prompts: [caption], options: before, noise: &noise))
        let start = Date()
        let large = UnCLIPPipeline.images(from: try pipeline.upscale(try RGBImage.batch(small), options: after, noise: &noise))
        seconds += Date().timeIntervalSince(start)
        var right = (0, 0)
        var firstObject: (Double, Double)? = nil
        for (k, (a, b)) in zip(small, large).enumerated() {
            let shrunk = try b.boxDownsampled(factor: output / input)
            let ra = try CaptionCheck.evaluate(caption: caption, image: a, parser: parser)
            let rb = try CaptionCheck.evaluate(caption: caption, image: shrunk, parser: parser)
            right.0 += ra.correct ? 1 : 0
            right.1 += rb.correct ? 1 : 0
            if k == 0, let o = ra.detected.first { firstObject = (o.cx, o.cy) }
            report.outputEdges.add(b)
            report.bicubicEdges.add(a.resized(width: output, height: output))
            c.log?("\(p).\(k) \(caption) | \(input): \(ra.correct ? "ok" : "wrong"), \(output): \(rb.correct ? "ok" : "wrong")")
        }
        let truth = try ShapesWorld.render(scene, size: output)
        report.truthEdges.add(truth)
        let objects = scene.objects.count, n = Double(small.count)
        inputScores.append((objects, Double(right.0) / n))
        outputScores.append((objects, Double(right.1) / n))
        report.images += small.count
        if cells.count < 9, let a = small.first, let b = large.first, let (ox, oy) = firstObject {
            // A quarter of the picture around the first object found in the input, at the output's scale: the input's
            // pixels enlarged, the antialiased-bicubic enlargement the stage is conditioned on, and its output.
            let f = output / input, side = output / 4, scale = Double(output) / Double(ShapesWorld.canvasSize)
            let x0 = min(max(Int(ox * scale) - side / 2, 0), output - side), y0 = min(max(Int(oy * scale) - side / 2, 0), output - side)
            cells += [a.enlarged(by: f), a.resized(width: output, height: output), b].map { $0.cropped(x: x0, y: y0, side: side) }
            labels += ["input \(input) px, x\(f)", "bicubic x\(f)", "output \(output) px"]
        }
        progress?(p + 1, c.promptCount)
    }
    report.prompts = c.promptCount
    report.inputAccuracy = meanOverPrompts(inputScores.map(\.value))
    report.outputAccuracy = meanOverPrompts(outputScores.map(\.value))
    for k in [1, 2] {
        let a = inputScores.filter { $0.objects == k }.map(\.value), b = outputScores.filter { $0.objects == k }.map(\.value)
        if !a.isEmpty { report.inputAccuracyByObjects[k] = meanOverPrompts(a); report.outputAccuracyByObjects[k] = meanOverPrompts(b) }
    }
    report.accuracyChange = meanOverPrompts(zip(outputScores, inputScores).map { $0.value - $1.value })
    report.secondsPerImage = seconds / Double(max(report.images, 1))
    if let url = c.gridURL, !cells.isEmpty {
        try RGBImage.labelledGrid(cells, labels: labels, columns: 3, padding: 4,
                                  title: "upsampler \(input) -> \(output), crops").writePNG(to: url)
    }
    return report
}

extension RGBImage {
    /// The square `side` × `side` at (x, y), which must lie inside the image.
    func cropped(x: Int, y: Int, side: Int) -> RGBImage {
        var out = [UInt8](repeating: 0, count: side * side * 3)
        for r in 0..<side {
            let src = ((y + r) * width + x) * 3
            out.replaceSubrange((r * side * 3)..<((r + 1) * side * 3), with: pixels[src..<(src + side * 3)])
        }
        return RGBImage(width: side, height: side, pixels: out)
    }

    /// Each pixel repeated `factor` × `factor` times (to show an image's own pixels beside a larger one).
    func enlarged(by factor: Int) -> RGBImage {
        let w = width * factor, h = height * factor
        var out = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            for x in 0..<w {
                let s = ((y / factor) * width + x / factor) * 3, d = (y * w + x) * 3
                out[d] = pixels[s]; out[d + 1] = pixels[s + 1]; out[d + 2] = pixels[s + 2]
            }
        }
        return RGBImage(width: w, height: h, pixels: out)
    }
}
