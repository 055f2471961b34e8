import Foundation
import XCTest
@testable import UnCLIPCLI
import UnCLIPImage
import UnCLIPTraining

/// The command-line tool driven in-process, on the parity fixtures' tiny pipelines.
final class CLITests: XCTestCase {
    static let parity = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../UnCLIPModelsTests/Fixtures/parity").standardizedFileURL

    func run(_ arguments: [String]) throws {
        var command = try UnCLIPCommand.parseAsRoot(arguments)
        try command.run()
    }

    func temporaryFile(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-cli-\(UUID().uuidString)-\(name)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func testGenerateWithRecordedNoiseReproducesTheReferenceImage() throws {
        let dir = Self.parity.appendingPathComponent("tiny_karlo_structure")
        let out = temporaryFile("frog.png")
        try run(["generate", "a high-resolution photograph of a big red frog on a green leaf.", "--model", dir.path,
                 "--noise", dir.appendingPathComponent("noise.safetensors").path,
                 "--decoder-steps", "7", "--super-res-steps", "3", "-o", out.path, "--quiet"])
        let ours = try RGBImage(contentsOf: out), reference = try RGBImage(contentsOf: dir.appendingPathComponent("image.png"))
        XCTAssertEqual(ours.width, reference.width)
        let worst = zip(ours.pixels, reference.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 255
        XCTAssertLessThanOrEqual(worst, 1, "CLI image differs from diffusers' by \(worst) levels")
    }

    func testVaryWritesAGridAndNumberedFiles() throws {
        let dir = Self.parity.appendingPathComponent("tiny_variation")
        let out = temporaryFile("vary.png")
        try run(["vary", Self.parity.appendingPathComponent("tiny_variation_pil/input.png").path, "--model", dir.path,
                 "-n", "2", "--decoder-steps", "2", "--super-res-steps", "2", "-o", out.path, "--quiet"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.path))
        let stem = out.deletingPathExtension().path
        for i in 1...2 { XCTAssertTrue(FileManager.default.fileExists(atPath: "\(stem)-\(i).png")) }
        addTeardownBlock { for i in 1...2 { try? FileManager.default.removeItem(atPath: "\(stem)-\(i).png") } }
    }

    func testManipulationsWriteTheirGridsOnAKarloStructuredPipeline() throws {
        let dir = Self.parity.appendingPathComponent("tiny_variation").path
        let input = Self.parity.appendingPathComponent("tiny_variation_pil/input.png").path
        let fast = ["--model", dir, "--ddim-steps", "4", "--super-res-steps", "2", "--quiet"]
        let strip = temporaryFile("interp.png")
        try run(["interpolate", input, input, "--frames", "3", "-o", strip.path] + fast)
        let animation = strip.deletingPathExtension().appendingPathExtension("apng")
        addTeardownBlock { try? FileManager.default.removeItem(at: animation) }
        XCTAssertGreaterThan(try RGBImage(contentsOf: strip).width, 3 * 32)
        XCTAssertEqual(try RGBImage(contentsOf: animation).width, 32)  // an APNG's default image is its first frame
        let diff = temporaryFile("diff.png")
        try run(["textdiff", input, "--from", "a cat", "--to", "a dog", "--frames", "2", "-o", diff.path] + fast)
        XCTAssertTrue(FileManager.default.fileExists(atPath: diff.path))
        addTeardownBlock { for i in 1...2 { try? FileManager.default.removeItem(atPath: diff.deletingPathExtension().path + "-\(i).png") } }
        let classified = temporaryFile("classify.png")
        try run(["classify", input, "--model", dir, "--labels", "cat, dog", "-o", classified.path])
        XCTAssertTrue(FileManager.default.fileExists(atPath: classified.path))
        // Impossible requests are refused with the reason.
        XCTAssertThrowsError(try UnCLIPCommand.parseAsRoot(["textdiff", input, "--from", "a", "--to", "b", "--max-theta", "2"]))
        XCTAssertThrowsError(try UnCLIPCommand.parseAsRoot(["interpolate", input, input, "--latent", "sideways"])) {
            XCTAssertTrue(UnCLIPCommand.message(for: $0).contains("interpolated"))
        }
        XCTAssertThrowsError(try UnCLIPCommand.parseAsRoot(["vary", input, "--noise", "/nonexistent"]))
        XCTAssertThrowsError(try run(["classify", input, "--labels", " , "]))
        XCTAssertThrowsError(try run(["textdiff", input, "--from", "a", "--to", "b", "--model",
                                      Self.parity.appendingPathComponent("tiny_karlo_structure").path])) {
            XCTAssertTrue("\($0)".contains("image_encoder"), "\($0)")
        }
        XCTAssertThrowsError(try run(["vary", "/nonexistent.png", "--model", dir])) { XCTAssertTrue("\($0)".contains("/nonexistent.png")) }
    }

    func testImpossibleArgumentsAreRejectedWithAReason() {
        XCTAssertThrowsError(try UnCLIPCommand.parseAsRoot(["generate", "x", "--prior-steps", "1"])) {
            XCTAssertTrue(UnCLIPCommand.message(for: $0).contains("--prior-steps"))
        }
        XCTAssertThrowsError(try UnCLIPCommand.parseAsRoot(["generate", "x", "-n", "0"]))
        XCTAssertThrowsError(try UnCLIPCommand.parseAsRoot(["generate", "x", "--noise", "/nonexistent.safetensors"]))
        XCTAssertThrowsError(try run(["generate", "x", "--model", "/nonexistent/model"])) {
            XCTAssertTrue("\($0)".contains("/nonexistent/model"))
        }
        XCTAssertThrowsError(try UnCLIPCommand.parseAsRoot(["generate", "x", "--prior-candidates", "0"])) {
            XCTAssertTrue(UnCLIPCommand.message(for: $0).contains("--prior-candidates"))
        }
        XCTAssertThrowsError(try UnCLIPCommand.parseAsRoot(["generate", "x", "--prior", "gan"])) {
            XCTAssertTrue(UnCLIPCommand.message(for: $0).contains("--prior"))
        }
        // A model without an autoregressive prior says so and how to get one, before any weights load.
        let tiny = Self.parity.appendingPathComponent("tiny_diffusers")
        XCTAssertThrowsError(try run(["generate", "x", "--model", tiny.path, "--prior", "ar", "-o", temporaryFile("x.png").path, "--quiet"])) {
            XCTAssertTrue("\($0)".contains("train ar-prior"), "\($0)")
        }
        // The GLIDE-style decoder: a model without one says how to train it; it runs no prior, so prior options
        // are refused; guidance scales must be numbers.
        XCTAssertThrowsError(try run(["generate", "x", "--model", tiny.path, "--decoder", "glide", "-o", temporaryFile("x.png").path, "--quiet"])) {
            XCTAssertTrue("\($0)".contains("--conditioning caption"), "\($0)")
        }
        XCTAssertThrowsError(try UnCLIPCommand.parseAsRoot(["generate", "x", "--decoder", "glide", "--prior", "ar"])) {
            XCTAssertTrue(UnCLIPCommand.message(for: $0).contains("runs no prior"), UnCLIPCommand.message(for: $0))
        }
        XCTAssertThrowsError(try UnCLIPCommand.parseAsRoot(["generate", "x", "--decoder", "dalle"]))
        for bad in ["1,x", "1,1", "-1", "", "inf"] {
            XCTAssertThrowsError(try UnCLIPCommand.parseAsRoot(["evaluate", "--task", "guidance", "--scales", bad]), bad) {
                XCTAssertTrue(UnCLIPCommand.message(for: $0).contains("--scales"), UnCLIPCommand.message(for: $0))
            }
        }
        XCTAssertThrowsError(try run(["evaluate", "--task", "guidance", "--model", tiny.path, "--prompts", "1", "-n", "1"])) {
            XCTAssertTrue("\($0)".contains("glide_decoder"), "\($0)")
        }
    }

    func testGenerateWithTheEmbeddedModelsAutoregressivePriorAndTheTwoSampleTrick() throws {
        for extra in [["--prior", "ar"], ["--prior-candidates", "2"], ["--decoder", "glide"]] {
            let out = temporaryFile("ar.png")
            try run(["generate", "a red circle", "--decoder-steps", "5", "--super-res-steps", "2", "-o", out.path, "--quiet"] + extra)
            XCTAssertEqual(try RGBImage(contentsOf: out).width, 128, "\(extra)")
        }
    }

    func testInspectAndDataShapes() throws {
        try run(["inspect", Self.parity.appendingPathComponent("tiny_diffusers").path])
        let out = temporaryFile("shapes")
        try run(["data", "shapes", "--count", "3", "--out", out.path])
        for name in ["000000.png", "000000.txt", "000002.png", "scenes.jsonl"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(name).path), name)
        }
    }
}

extension CLITests {
    func testSelfTestPassesAndWritesItsImage() throws {
        let out = temporaryFile("selftest.png")
        try run(["selftest", "-o", out.path])
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.path))
    }

    /// `unclip train chart` draws two logs' windows as a PNG and prints their differences; `--precision` parses on
    /// every trainer.
    func testTrainChartDrawsAndCompares() throws {
        let logs = (0..<2).map { k -> URL in
            let url = temporaryFile("loss\(k).jsonl")
            let lines = (1...40).map { #"{"step":\#($0),"loss":\#(1.0 / Double($0) + 0.01 * Double(($0 * 7 + k) % 5)),"smoothed_loss":0}"# }
            try! lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
            return url
        }
        let out = temporaryFile("chart.png")
        try run(["train", "chart", logs[0].path, logs[1].path, "--labels", "fp32,bf16", "--window", "10", "--out", out.path])
        let image = try RGBImage(contentsOf: out)
        XCTAssertGreaterThan(image.width, 900)
        XCTAssertThrowsError(try run(["train", "chart", logs[0].path, "--labels", "a,b", "--out", out.path]))
        XCTAssertEqual(try Train.Decoder.parse(["--out", "unused", "--precision", "auto"]).args.precision, .auto)
        XCTAssertThrowsError(try Train.Decoder.parse(["--out", "unused", "--precision", "fp16"]))
    }

    func testTrainingOnShapesWorldNamesItsCaptionRecipeAndAFolderGetsNone() throws {
        let shapes = try Train.CLIP.parse(["--out", "unused"])
        XCTAssertEqual(shapes.args.clipConfiguration(CLIPTrainingConfiguration()).captionRecipe, .shapesWorld)
        let folder = try Train.CLIP.parse(["--out", "unused", "--data", "photos"])
        XCTAssertNil(folder.args.clipConfiguration(CLIPTrainingConfiguration()).captionRecipe)
        var asked = CLIPTrainingConfiguration()
        asked.captionRecipe = .shapesWorld
        XCTAssertEqual(folder.args.clipConfiguration(asked).captionRecipe, .shapesWorld)
        asked.captionRecipe = CLIPCaptionRecipe.none
        XCTAssertEqual(shapes.args.clipConfiguration(asked).captionRecipe, CLIPCaptionRecipe.none)
    }
}

extension CLITests {
    func testEditRepaintsTheTransparentRegion() throws {
        let dir = Self.parity.appendingPathComponent("tiny_karlo_structure").path
        let side = 64
        var pixels = [UInt8](repeating: 0, count: side * side * 3)
        for i in 0..<(side * side) { pixels[3 * i] = UInt8(i % side * 4); pixels[3 * i + 1] = 120; pixels[3 * i + 2] = UInt8(i / side * 4) }
        let rgb = RGBImage(width: side, height: side, pixels: pixels)
        let rightHalfClear = (0..<(side * side)).map { $0 % side >= 32 ? UInt8(0) : 255 }
        let withAlpha = temporaryFile("input.png")
        try AlphaImage(image: rgb, alpha: rightHalfClear).writePNG(to: withAlpha)
        let fast = ["--model", dir, "--prior-steps", "2", "--decoder-steps", "4", "--super-res-steps", "2",
                    "--jump-length", "2", "--resampling", "2", "--quiet"]
        func leftHalfDifference(_ image: RGBImage) -> Int {
            var worst = 0
            for y in 0..<side { for x in 0..<32 { for c in 0..<3 {
                worst = max(worst, abs(Int(image.pixels[3 * (y * side + x) + c]) - Int(rgb.pixels[3 * (y * side + x) + c])))
            } } }
            return worst
        }
        // The image's own alpha marks the region.
        let out = temporaryFile("edit.png")
        try run(["edit", withAlpha.path, "a frog on a leaf", "-o", out.path] + fast)
        let edited = try RGBImage(contentsOf: out)
        XCTAssertEqual([edited.width, edited.height], [side, side])
        XCTAssertLessThanOrEqual(leftHalfDifference(edited), 1)
        // A separate mask for an opaque image; -n 2 writes numbered files and a grid with the input.
        let opaque = temporaryFile("opaque.png"), mask = temporaryFile("mask.png")
        try rgb.writePNG(to: opaque)
        try AlphaImage(image: RGBImage(width: side, height: side), alpha: rightHalfClear).writePNG(to: mask)
        let grid = temporaryFile("grid.png")
        try run(["edit", opaque.path, "--mask", mask.path, "a frog on a leaf", "-n", "2", "--seed", "3", "-o", grid.path] + fast)
        let stem = grid.deletingPathExtension().path
        addTeardownBlock { for i in 1...2 { try? FileManager.default.removeItem(atPath: "\(stem)-\(i).png") } }
        for i in 1...2 { XCTAssertLessThanOrEqual(leftHalfDifference(try RGBImage(contentsOf: URL(fileURLWithPath: "\(stem)-\(i).png"))), 1) }
        XCTAssertGreaterThan(try RGBImage(contentsOf: grid).width, 3 * side)
        // Without a region to repaint, or with a mask that cannot be one, the command says what to do.
        XCTAssertThrowsError(try run(["edit", opaque.path, "a frog", "-o", out.path] + fast)) {
            XCTAssertTrue("\($0)".contains("no alpha channel") && "\($0)".contains("--mask"), "\($0)")
        }
        XCTAssertThrowsError(try run(["edit", opaque.path, "--mask", opaque.path, "a frog", "-o", out.path] + fast)) {
            XCTAssertTrue("\($0)".contains("the mask") && "\($0)".contains("alpha 0"), "\($0)")
        }
        let smallMask = temporaryFile("small-mask.png")
        try AlphaImage(image: RGBImage(width: 8, height: 8), alpha: Array(repeating: 0, count: 64)).writePNG(to: smallMask)
        XCTAssertThrowsError(try run(["edit", opaque.path, "--mask", smallMask.path, "a frog", "-o", out.path] + fast)) {
            XCTAssertTrue("\($0)".contains("8×8") && "\($0)".contains("same size"), "\($0)")
        }
        XCTAssertThrowsError(try UnCLIPCommand.parseAsRoot(["edit", opaque.path, "x", "--resampling", "0"])) {
            XCTAssertTrue(UnCLIPCommand.message(for: $0).contains("resampling"))
        }
        XCTAssertThrowsError(try UnCLIPCommand.parseAsRoot(["edit", opaque.path, "x", "--upsampler-known-region", "maybe"])) {
            XCTAssertTrue(UnCLIPCommand.message(for: $0).contains("replace"))
        }
    }
}
