import Foundation
import UnCLIPModels
import UnCLIPImage
import UnCLIPTensor
import UnCLIPShapesWorld

/// The inpainting bar of issue 16 on ShapesWorld: renders of "a red circle to the left of a blue square" with the
/// right half repainted as "a red circle to the left of a green triangle", judged whole by the project's evaluator.
public struct InpaintingReport: Sendable, CustomStringConvertible {
    /// The caption of the inputs and the prompt of the edits.
    public var inputCaption = "", prompt = ""
    /// Every case: the render, its edit, the evaluator's verdict, the unmasked half's difference and the time.
    public var results: [InpaintingCase] = []

    public var cases: Int { results.count }
    /// Edits the evaluator reads as the prompt (whole caption: count, binding and relation).
    public var correct: Int { results.filter(\.check.correct).count }
    public var accuracy: Double { Double(correct) / Double(max(cases, 1)) }
    /// Mean over the cases of the unmasked half's mean absolute difference from the input (8-bit levels).
    public var meanUnmaskedDifference: Double { results.map(\.unmaskedDifference).reduce(0, +) / Double(max(cases, 1)) }
    public var worstUnmaskedDifference: Double { results.map(\.unmaskedDifference).max() ?? 0 }
    public var secondsPerEdit: Double { results.map(\.seconds).reduce(0, +) / Double(max(cases, 1)) }

    public var description: String {
        String(format: "inpainting \"%@\", right half repainted as \"%@\", %d cases: whole caption %.1f %% (%d), unmasked half mean |Δ| %.2f levels (worst case %.2f), %.2f s per edit",
               inputCaption, prompt, cases, 100 * accuracy, correct, meanUnmaskedDifference, worstUnmaskedDifference, secondsPerEdit)
    }
}

/// One inpainting case.
public struct InpaintingCase: Sendable, CustomStringConvertible {
    public var input: RGBImage
    public var edited: RGBImage
    public var check: CaptionCheckResult
    /// Mean absolute difference of the unmasked (left) half from the input, in 8-bit levels over R, G and B.
    public var unmaskedDifference: Double
    public var seconds: Double

    public var description: String {
        (check.correct ? "right" : "WRONG") + String(format: ", unmasked |Δ| %.2f, %.2f s; found: ", unmaskedDifference, seconds)
            + check.detected.map(\.description).joined(separator: ", ")
    }
}

/// The scenes of the bar: a red circle inside the left half and a blue square inside the right half (each box at
/// least 4 px from the middle line), "to the left of" holding with ShapesWorld's margin; sizes alternate small and
/// large per object, places are drawn from `seed`.
public func inpaintingScenes(count: Int, seed: UInt64 = 5) -> [Scene] {
    var rng = Philox(seed: seed, stream: 78)
    func uniform(_ r: ClosedRange<Double>) -> Double { r.lowerBound + (r.upperBound - r.lowerBound) * Double(rng.nextUInt32()) / 4_294_967_296 }
    let middle = Double(ShapesWorld.canvasSize) / 2, border = ShapesWorld.border
    let far = Double(ShapesWorld.canvasSize) - border
    return (0..<count).map { k in
        let circleSize: SizeClass = k % 2 == 0 ? .small : .large
        let squareSize: SizeClass = (k / 2) % 2 == 0 ? .small : .large
        while true {
            let a = uniform(circleSize.range), b = uniform(squareSize.range)
            let circle = SceneObject(shape: .circle, color: .red, sizeClass: circleSize, s: a,
                                     cx: uniform((border + a / 2)...(middle - 4 - a / 2)), cy: uniform((border + a / 2)...(far - a / 2)))
            let square = SceneObject(shape: .square, color: .blue, sizeClass: squareSize, s: b,
                                     cx: uniform((middle + 4 + b / 2)...(far - b / 2)), cy: uniform((border + b / 2)...(far - b / 2)))
            if SpatialRelation.leftOf.holds(a: (circle.cx, circle.cy), b: (square.cx, square.cy), margin: ShapesWorld.relationMargin) {
                return Scene(objects: [circle, square], relation: .leftOf, mentionsSize: false)
            }
        }
    }
}

/// Edits each scene's render with its right half masked toward `prompt` (seed k for case k) and judges the result.
public func evaluateInpainting(pipeline: UnCLIPPipeline, cases: Int = 50, seed: UInt64 = 5,
                               prompt: String = "a red circle to the left of a green triangle",
                               options: SamplingOptions, inpainting: InpaintingOptions = InpaintingOptions(),
                               progress: ((Int, Int) -> Void)? = nil) throws -> InpaintingReport {
    let scenes = inpaintingScenes(count: cases, seed: seed)
    var report = InpaintingReport()
    report.inputCaption = scenes.first?.caption ?? ""
    report.prompt = prompt
    let side = ShapesWorld.canvasSize, half = side / 2
    let mask = try InpaintingMask(width: side, height: side, repaint: (0..<(side * side)).map { $0 % side >= half })
    let parser = ShapesParser()
    var single = options
    single.imagesPerPrompt = 1
    for (k, scene) in scenes.enumerated() {
        let input = ShapesWorld.render(scene)
        var noise = SeededNoise(seed: UInt64(k))
        let start = Date()
        let edited = UnCLIPPipeline.images(from: try pipeline.edit(input, mask: mask, prompt: prompt, options: single,
                                                                   inpainting: inpainting, noise: &noise))[0]
        let seconds = Date().timeIntervalSince(start)
        guard edited.width == side && edited.height == side else {
            throw PipelineArgumentError("inpainting evaluation: the pipeline draws \(edited.width)×\(edited.height) images; ShapesWorld's are \(side)×\(side)")
        }
        var total = 0
        for y in 0..<side {
            for x in 0..<half {
                for c in 0..<3 {
                    let i = 3 * (y * side + x) + c
                    total += abs(Int(edited.pixels[i]) - Int(input.pixels[i]))
                }
            }
        }
        let check = try CaptionCheck.evaluate(caption: prompt, image: edited, parser: parser)
        report.results.append(InpaintingCase(input: input, edited: edited, check: check,
                                             unmaskedDifference: Double(total) / Double(side * half * 3), seconds: seconds))
        progress?(k + 1, cases)
    }
    return report
}
