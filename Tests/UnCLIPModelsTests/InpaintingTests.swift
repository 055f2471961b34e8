import Foundation
import XCTest
import UnCLIPImage
@testable import UnCLIPModels

/// Inpainting (RePaint through the one denoising loop) on the Karlo-structured tiny fixture: decoder 16 px, a
/// first/last upsampler pair to 64 px.
final class InpaintingTests: XCTestCase {
    static let parity = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/parity")
    static let karlo = parity.appendingPathComponent("tiny_karlo_structure")
    static let prompt = "a high-resolution photograph of a big red frog on a green leaf."

    static var fast: SamplingOptions {
        var o = SamplingOptions()
        o.priorSteps = 3; o.decoderSteps = 7; o.superResSteps = 3
        return o
    }

    func pipeline() throws -> UnCLIPPipeline {
        let p = try UnCLIPPipeline(directory: Self.karlo)
        p.keepLoaded = true
        return p
    }

    /// A 64 × 64 test card: smooth ramps and a block, so resizing has something to do.
    static func card(side: Int = 64) -> RGBImage {
        var pixels = [UInt8](repeating: 0, count: side * side * 3)
        for y in 0..<side {
            for x in 0..<side {
                let i = 3 * (y * side + x)
                pixels[i] = UInt8(x * 255 / (side - 1))
                pixels[i + 1] = UInt8(y * 255 / (side - 1))
                pixels[i + 2] = (x / 8 + y / 8) % 2 == 0 ? 40 : 220
            }
        }
        return RGBImage(width: side, height: side, pixels: pixels)
    }

    static func mask(side: Int = 64, repaint: (Int, Int) -> Bool) throws -> InpaintingMask {
        try InpaintingMask(width: side, height: side, repaint: (0..<(side * side)).map { repaint($0 % side, $0 / side) })
    }

    /// Records every draw a run asks for, passing them on to seeded noise.
    struct LoggedNoise: NoiseSource {
        var inner: SeededNoise
        var draws: [String] = []
        init(seed: UInt64) { inner = SeededNoise(seed: seed) }
        mutating func noise(stage: Stage, index: Int, shape: [Int]) throws -> Tensor {
            draws.append("\(stage.key).\(index)")
            return try inner.noise(stage: stage, index: index, shape: shape)
        }
        mutating func noise(stage: Stage, auxiliary stream: AuxiliaryNoise, index: Int, shape: [Int]) throws -> Tensor {
            draws.append("\(stage.key).\(stream.rawValue).\(index)")
            return try inner.noise(stage: stage, auxiliary: stream, index: index, shape: shape)
        }
    }

    // MARK: The resampling schedule

    func testTheResamplingScheduleIsRePaints() {
        typealias M = ResamplingSchedule.Move
        // 6 steps, jumps of 2 at levels 6 and 4 (level 2 would jump back to the initial noise), each stretch twice.
        let moves = ResamplingSchedule(jumpLength: 2, count: 2).moves(steps: 0..<6, stepCount: 6)
        XCTAssertEqual(moves, [M.step(0), .step(1), .step(2), .step(3), .jump(from: 4, to: 2), .step(2), .step(3),
                               .step(4), .step(5), .jump(from: 6, to: 4), .step(4), .step(5)])
        // r = 3: each jump point sends the walk back twice.
        let three = ResamplingSchedule(jumpLength: 2, count: 3)
        XCTAssertEqual(three.stepCount(steps: 0..<6, of: 6), 6 + 2 * 2 * 2)
        // No resampling is the plain walk; a range (Karlo's last upsampler step) only jumps inside itself.
        XCTAssertEqual(ResamplingSchedule.none.moves(steps: 0..<4, stepCount: 4), [M.step(0), .step(1), .step(2), .step(3)])
        XCTAssertEqual(ResamplingSchedule(jumpLength: 1, count: 2).moves(steps: 5..<6, stepCount: 6),
                       [M.step(5), .jump(from: 6, to: 5), .step(5)])
        XCTAssertEqual(ResamplingSchedule(jumpLength: 2, count: 2).moves(steps: 5..<6, stepCount: 6), [M.step(5)])
    }

    func testRenoisingFollowsTheForwardProcess() throws {
        var scheduler = try UnCLIPScheduler()
        try scheduler.setTimesteps(10)
        var rng = Philox(seed: 1)
        let x0 = Tensor.rand([1, 3, 8, 8], using: &rng) * 2 - 1
        let e1 = Tensor.randn([1, 3, 8, 8], using: &rng), e2 = Tensor.randn([1, 3, 8, 8], using: &rng)
        // q(x_a | x_b) after q(x_b | x_0) is q(x_a | x_0): the means and the variances compose.
        let xb = scheduler.noised(x0, beforeStep: 7, noise: e1)
        let xa = scheduler.renoised(xb, from: 7, to: 3, noise: e2)
        let aa = scheduler.alphaBar(beforeStep: 3), ab = scheduler.alphaBar(beforeStep: 7)
        XCTAssertEqual(scheduler.alphaBar(beforeStep: 10), 1)
        XCTAssertEqual(aa, scheduler.alphasCumprod[scheduler.timesteps[3]])
        let mean = x0 * aa.squareRoot()
        let combined = (e1 * (aa / ab).squareRoot() * (1 - ab).squareRoot() + e2 * (1 - aa / ab).squareRoot())
        XCTAssertLessThan((xa - mean - combined).abs().max().item, 1e-5)
        XCTAssertEqual(Double(aa / ab * (1 - ab) + (1 - aa / ab)), Double(1 - aa), accuracy: 1e-6)
        XCTAssertEqual(scheduler.noised(x0, beforeStep: 10, noise: e1).toArray(), x0.toArray())
    }

    // MARK: Masks

    func testMasksValidateTheirSizes() throws {
        XCTAssertThrowsError(try InpaintingMask(width: 4, height: 4, repaint: [true])) { XCTAssertTrue("\($0)".contains("1 flags for 4×4"), "\($0)") }
        XCTAssertThrowsError(try InpaintingMask(width: 0, height: 4, repaint: [])) { XCTAssertTrue("\($0)".contains("empty"), "\($0)") }
        XCTAssertThrowsError(try InpaintingMask(alpha: [0, 255], width: 2, height: 2)) { XCTAssertTrue("\($0)".contains("2 alpha values"), "\($0)") }
        let fromAlpha = try InpaintingMask(alpha: [0, 1, 255, 0], width: 2, height: 2)
        XCTAssertEqual(fromAlpha.repaint, [true, false, false, true])
        XCTAssertEqual(fromAlpha.repaintCount, 2)
        XCTAssertEqual(try InpaintingMask(width: 2, height: 1, repaint: [false, false]).repaintCount, 0)
        XCTAssertEqual(try InpaintingMask(width: 2, height: 1, repaint: [true, true]).repaintCount, 2)
    }

    func testAPixelIsKnownOnlyWhenAllItsInputIs() throws {
        // The right half of 64 px (from column 30) repainted: at 16 px, area averaging reads 4 × 4 blocks.
        let half = try Self.mask { x, _ in x >= 30 }
        let strict = half.keepWeight(size: 16, resampling: .strict).toArray()
        for y in 0..<16 { XCTAssertEqual(Array(strict[(y * 16)..<(y * 16 + 16)]), (0..<16).map { $0 < 7 ? 1 : 0 }) }
        let soft = half.keepWeight(size: 16, resampling: .coverage).toArray()
        XCTAssertEqual(soft[7], 0.5)  // columns 28, 29 of 28…31 known
        XCTAssertEqual(soft[6], 1)
        XCTAssertEqual(soft[8], 0)
        // 48 px → 16 (bicubic, scale 3, support 6): a known pixel's taps must all lie left of column 24.
        let bicubic = try Self.mask(side: 48) { x, _ in x >= 24 }.keepWeight(size: 16, resampling: .strict).toArray()
        let known = (0..<16).filter { bicubic[$0] == 1 }
        XCTAssertEqual(known, Array(0..<known.count))
        XCTAssertTrue((4..<8).contains(known.count), "\(known)")
        // The same size is the mask itself.
        XCTAssertEqual(half.keepWeight(size: 64, resampling: .strict).toArray(), half.repaint.map { $0 ? 0 : 1 })
    }

    // MARK: The pipeline

    func testAnAllKeepMaskGivesTheInputBack() throws {
        let p = try pipeline()
        var small: Tensor?
        p.trace = { name, t in if name == "image_small" { small = t.clone() } }
        let input = Self.card()
        var noise = SeededNoise(seed: 3)
        var options = Self.fast
        options.imagesPerPrompt = 2
        let out = try p.edit(input, mask: try Self.mask { _, _ in false }, prompt: Self.prompt, options: options,
                             inpainting: InpaintingOptions(jumpLength: 2, resampling: 2), noise: &noise)
        XCTAssertEqual(out.shape, [2, 64, 64, 3])
        // The decoder's image is the input at 16 px, the final images the input itself (to the 8-bit rounding).
        let target = try p.decoderInput([input])
        XCTAssertLessThan((small! - target).abs().max().item, 1e-6)
        for image in UnCLIPPipeline.images(from: out) {
            let worst = zip(image.pixels, input.pixels).map { abs(Int($0) - Int($1)) }.max()!
            XCTAssertLessThanOrEqual(worst, 1)
        }
    }

    func testAnAllRepaintMaskWithoutResamplingIsGenerate() throws {
        let p = try pipeline()
        let repaintAll = try Self.mask { _, _ in true }
        var a = LoggedNoise(seed: 7), b = LoggedNoise(seed: 7)
        let generated = try p.generate(prompts: [Self.prompt], options: Self.fast, noise: &a)
        let edited = try p.edit(Self.card(), mask: repaintAll, prompt: Self.prompt, options: Self.fast,
                                inpainting: InpaintingOptions(resampling: 1), noise: &b)
        XCTAssertEqual(edited.toArray(), generated.toArray())
        // The sampler's draws are generate's; the known region's come from their own streams (none after the last
        // step, where the known region is x₀ itself).
        XCTAssertEqual(b.draws.filter { !$0.contains(".known.") && !$0.contains(".jump.") }, a.draws)
        XCTAssertEqual(b.draws.filter { $0.hasPrefix("decoder.known.") }, (0..<6).map { "decoder.known.\($0)" })
        XCTAssertEqual(b.draws.filter { $0.hasPrefix("super_res.known.") }, (0..<2).map { "super_res.known.\($0)" })
        // With resampling the image differs but stays a valid image; the decoder draws for every step it takes.
        var c = LoggedNoise(seed: 7)
        let resampled = try p.edit(Self.card(), mask: repaintAll, prompt: Self.prompt, options: Self.fast,
                                   inpainting: InpaintingOptions(jumpLength: 2, resampling: 3), noise: &c)
        XCTAssertEqual(resampled.shape, generated.shape)
        let values = resampled.toArray()
        XCTAssertTrue(values.allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 1 })
        XCTAssertNotEqual(values, generated.toArray())
        // 7 steps, jumps of 2 at levels 7, 5, 3, twice each: 7 + 3·2·2 steps, draws for all but the t = 0 ones.
        let steps = ResamplingSchedule(jumpLength: 2, count: 3).stepCount(steps: 0..<7, of: 7)
        XCTAssertEqual(steps, 19)
        XCTAssertEqual(c.draws.filter { $0.hasPrefix("decoder.jump.") }.count, 6)
        XCTAssertGreaterThan(c.draws.filter { $0.hasPrefix("decoder.") && !$0.contains(".known.") && !$0.contains(".jump.") }.count,
                             a.draws.filter { $0.hasPrefix("decoder.") }.count)
    }

    func testTheKnownHalfStaysAndTheOtherIsRepainted() throws {
        let p = try pipeline()
        let input = Self.card()
        let half = try Self.mask { x, _ in x >= 32 }
        var progress: [Stage: Int] = [:]
        var noise = SeededNoise(seed: 11)
        for mode in UpsamplerKnownRegion.allCases {
            var settings = InpaintingOptions(jumpLength: 3, resampling: 2)
            settings.upsamplerKnownRegion = mode
            let out = UnCLIPPipeline.images(from: try p.edit(input, mask: half, prompt: Self.prompt, options: Self.fast,
                                                             inpainting: settings, noise: &noise) {
                progress[$0.stage, default: 0] += 1
                XCTAssertLessThanOrEqual($0.step, $0.stepCount)
                return true
            })[0]
            func meanDifference(_ columns: Range<Int>) -> Double {
                var total = 0, count = 0
                for y in 0..<64 { for x in columns { for c in 0..<3 {
                    total += abs(Int(out.pixels[3 * (y * 64 + x) + c]) - Int(input.pixels[3 * (y * 64 + x) + c])); count += 1
                } } }
                return Double(total) / Double(count)
            }
            if mode == .none {
                XCTAssertGreaterThan(meanDifference(0..<32), 0, "the random upsampler redraws the known half")
            } else {
                XCTAssertLessThanOrEqual(meanDifference(0..<32), 0.5, "\(mode)")
            }
            XCTAssertGreaterThan(meanDifference(32..<64), 10, "\(mode): the repainted half is the model's")
        }
        XCTAssertEqual(Set(progress.keys), [.prior, .decoder, .superResolution(0)])
        // The decoder reported every step it took: 7 + 2 jumps of 3 (levels 7 and 4) per run.
        XCTAssertEqual(progress[.decoder], 3 * (7 + 2 * 3))
    }

    func testImpossibleEditsAreRefusedWithTheReason() throws {
        let p = try pipeline()
        var noise = SeededNoise(seed: 0)
        func refused(_ image: RGBImage, _ mask: InpaintingMask, _ options: SamplingOptions = InpaintingTests.fast,
                     _ inpainting: InpaintingOptions = InpaintingOptions(), mentioning words: [String],
                     line: UInt = #line) {
            XCTAssertThrowsError(try p.edit(image, mask: mask, prompt: "x", options: options, inpainting: inpainting, noise: &noise),
                                 line: line) { error in
                XCTAssertTrue(error is PipelineArgumentError, "\(type(of: error))", line: line)
                for word in words { XCTAssertTrue("\(error)".contains(word), "\(error)", line: line) }
            }
        }
        let keep = try Self.mask { _, _ in false }
        refused(Self.card(), try Self.mask(side: 32) { _, _ in false }, mentioning: ["32×32", "64×64", "same size"])
        let wide = RGBImage(width: 64, height: 48, red: 9)
        refused(wide, try InpaintingMask(width: 64, height: 48, repaint: Array(repeating: false, count: 64 * 48)),
                mentioning: ["64×48", "square"])
        refused(Self.card(), keep, Self.fast, InpaintingOptions(resampling: 0), mentioning: ["resampling", "got 0"])
        refused(Self.card(), keep, Self.fast, InpaintingOptions(jumpLength: 0), mentioning: ["jump length", "got 0"])
        refused(Self.card(), keep, Self.fast, InpaintingOptions(jumpLength: 7, resampling: 2), mentioning: ["jump length 7", "7 steps"])
        refused(Self.card(), keep, Self.fast, InpaintingOptions(superResJumpLength: 3, superResResampling: 2),
                mentioning: ["super-resolution jump length 3"])
        var none = Self.fast
        none.imagesPerPrompt = 0
        refused(Self.card(), keep, none, mentioning: ["images per prompt"])
        XCTAssertThrowsError(try InpaintingOptions(superResResampling: 101).validate()) { XCTAssertTrue("\($0)".contains("super-resolution resampling")) }
    }

    func testAnyImageSizeIsResizedToEachStage() throws {
        // 40 px: bicubic to the decoder's 16 px and up to the upsampler's 64 px; the output is the pipeline's 64 px.
        let p = try pipeline()
        var noise = SeededNoise(seed: 5)
        let small = Self.card(side: 40)
        let out = try p.edit(small, mask: try Self.mask(side: 40) { x, y in x + y > 40 }, prompt: Self.prompt,
                             options: Self.fast, inpainting: InpaintingOptions(jumpLength: 2, resampling: 2), noise: &noise)
        XCTAssertEqual(out.shape, [1, 64, 64, 3])
        XCTAssertTrue(out.toArray().allSatisfy(\.isFinite))
    }

    func testRecordedNoiseNamesTheKnownRegionDraws() throws {
        // The fixture's recording has the sampler's draws of a 25/7/3 run; an edit also needs decoder.known.0.
        var options = Self.fast
        options.priorSteps = 25
        options.priorGuidance = 4
        options.decoderGuidance = 8
        var recorded = try RecordedNoise(contentsOf: Self.karlo.appendingPathComponent("noise.safetensors"))
        XCTAssertThrowsError(try pipeline().edit(Self.card(), mask: try Self.mask { x, _ in x > 10 }, prompt: Self.prompt,
                                                 options: options, noise: &recorded)) {
            XCTAssertTrue("\($0)".contains("'decoder.known.0'"), "\($0)")
        }
    }

    func testTheSharedModelEdits() async throws {
        let model = UnCLIPModel(try pipeline())
        var options = Self.fast
        options.imagesPerPrompt = 2
        let images = try await model.edit(image: Self.card(), mask: try Self.mask { x, _ in x >= 32 }, prompt: Self.prompt,
                                          options: options, inpainting: InpaintingOptions(jumpLength: 2, resampling: 2), seed: 4)
        XCTAssertEqual(images.count, 2)
        XCTAssertEqual(images.map(\.width), [64, 64])
        let again = try await model.edit(image: Self.card(), mask: try Self.mask { x, _ in x >= 32 }, prompt: Self.prompt,
                                         options: options, inpainting: InpaintingOptions(jumpLength: 2, resampling: 2), seed: 4)
        XCTAssertEqual(images, again)
    }
}
