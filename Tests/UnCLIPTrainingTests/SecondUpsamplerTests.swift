import Foundation
import UnCLIPImage
import UnCLIPModels
import UnCLIPShapesWorld
import UnCLIPTensor
import XCTest
@testable import UnCLIPTraining

/// The 128 → 512 stage's training pieces: ShapesWorld drawn at 512, the BSR-style degradations, JPEG in memory, and
/// one trainer configured for either stage.
final class SecondUpsamplerTests: XCTestCase {
    private static let scene = ShapesWorld(seed: 3).scene(at: 1)

    func testShapesWorldDrawsAt512AndItsAreaReductionIsThe128Render() throws {
        let big = try ShapesWorld.render(Self.scene, size: 512), small = ShapesWorld.render(Self.scene)
        XCTAssertEqual(big.width, 512)
        let shrunk = try big.boxDownsampled(factor: 4)
        let diffs = zip(shrunk.pixels, small.pixels).map { abs(Int($0) - Int($1)) }
        // 64 coverage samples per 128-px pixel against 16: edge pixels differ by at most an eighth of a fill step.
        XCTAssertLessThanOrEqual(diffs.max()!, 32)
        XCTAssertLessThan(Double(diffs.reduce(0, +)) / Double(diffs.count), 0.2)
        XCTAssertEqual(diffs.filter { $0 > 0 }.count * 20 < diffs.count, true, "only edge pixels differ")
        // Edges stay about a pixel wide at 512: a vertical edge of a square steps in at most two pixels.
        XCTAssertEqual(try ShapesWorld.render(Self.scene, size: 256).width, 256)
        for bad in [0, 96, 384, 2048, -128] {
            XCTAssertThrowsError(try ShapesWorld.render(Self.scene, size: bad)) { XCTAssertTrue("\($0)".contains("\(bad)"), "\($0)") }
        }
        XCTAssertThrowsError(try ShapesWorldDataset(seed: 0, count: 4, resolution: 384))
        let data = try ShapesWorldDataset(seed: 0, count: 4)
        XCTAssertEqual(try data.sample(2, side: 512).image, try ShapesWorld.render(data.scene(2), size: 512))
        XCTAssertEqual(try data.sample(2, side: 32).image, try data.sample(2).image.boxDownsampled(factor: 4))
    }

    func testAFolderImageTooSmallForTheStageIsAnError() throws {
        struct Small: CaptionedImageDataset {
            var count: Int { 1 }
            func sample(_ index: Int) throws -> CaptionedImage { CaptionedImage(image: ShapesWorld.render(SecondUpsamplerTests.scene), caption: "x") }
        }
        XCTAssertThrowsError(try Small().sample(0, side: 512)) { XCTAssertTrue("\($0)".contains("128x128"), "\($0)") }
        XCTAssertEqual(try Small().sample(0, side: 64).image.width, 64)
    }

    func testJPEGInMemoryRoundTrips() throws {
        let image = ShapesWorld.render(Self.scene)
        let good = try RGBImage(data: try image.jpegData(quality: 95)), poor = try RGBImage(data: try image.jpegData(quality: 20))
        func meanError(_ a: RGBImage) -> Double {
            Double(zip(a.pixels, image.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +)) / Double(image.pixels.count)
        }
        XCTAssertEqual(good.width, 128)
        XCTAssertGreaterThan(meanError(good), 0, "JPEG is lossy")
        XCTAssertLessThan(meanError(good), 1.5)
        XCTAssertGreaterThan(meanError(poor), meanError(good))
        XCTAssertThrowsError(try image.jpegData(quality: 0)) { XCTAssertTrue("\($0)".contains("quality 0"), "\($0)") }
    }

    func testTheDegradationsCorruptWithinRangeAndReproducibly() throws {
        var c = SuperResTrainingConfiguration.secondStage
        let clean = ShapesWorld.render(Self.scene).tensor()
        func run(_ c: SuperResTrainingConfiguration, seed: UInt64 = 1) throws -> Tensor {
            var a = Philox(seed: seed, stream: 1), b = Philox(seed: seed, stream: 2)
            return try c.degraded(clean, using: &a, &b)
        }
        for part in ["blur", "resize", "noise", "jpeg"] {
            var only = c
            only.blurProbability = part == "blur" ? 1 : 0
            only.resizeProbability = part == "resize" ? 1 : 0
            only.noiseProbability = part == "noise" ? 1 : 0
            only.jpegProbability = part == "jpeg" ? 1 : 0
            let out = try run(only).toArray(), x = clean.toArray()
            let change = zip(out, x).map { Double(abs($0 - $1)) }.reduce(0, +) / Double(x.count)
            XCTAssertGreaterThan(change, 1e-4, part)
            XCTAssertLessThan(change, 0.1, "\(part) keeps the picture")
            XCTAssertTrue(out.allSatisfy { $0 >= -1 && $0 <= 1 }, part)
            XCTAssertEqual(try run(only).toArray(), out, "\(part): same streams, same corruption")
        }
        c.blurProbability = 0; c.resizeProbability = 0; c.noiseProbability = 0; c.jpegProbability = 0
        XCTAssertEqual(try run(c).toArray(), clean.toArray(), "no corruption asked, none made")
        // The first stage's blur and noise draw from one stream as they always have: the extra degradations' draws
        // (their own stream) never shift them.
        var first = SuperResTrainingConfiguration()
        first.blurProbability = 1
        var a1 = Philox(seed: 4, stream: 1), b1 = Philox(seed: 4, stream: 2), a2 = Philox(seed: 4, stream: 1), b2 = Philox(seed: 9, stream: 7)
        XCTAssertEqual(try first.degraded(clean, using: &a1, &b1).toArray(), try first.degraded(clean, using: &a2, &b2).toArray())
    }

    func testOneTrainerConfiguredForEitherStage() throws {
        let second = try JSONDecoder().decode(SuperResTrainingConfiguration.self, from: Data(#"{"stage": 2, "crop_size": 64}"#.utf8))
        XCTAssertEqual(second.cascadeStage, .superResolution(1))
        XCTAssertEqual(second.highResolution, 512)
        XCTAssertEqual(second.lowResolution, 128)
        XCTAssertEqual(second.cropSize, 64)
        XCTAssertEqual(second.jpegProbability, SuperResTrainingConfiguration.secondStage.jpegProbability)
        XCTAssertEqual(try JSONDecoder().decode(SuperResTrainingConfiguration.self, from: Data("{}".utf8)).highResolution, 128)
        // A decoder told the default stage (`unclip train super_res --stage 2`) reads a file without "stage" as stage 2.
        let decoder = JSONDecoder()
        decoder.userInfo = [SuperResTrainingConfiguration.defaultStageKey: 2]
        XCTAssertEqual(try decoder.decode(SuperResTrainingConfiguration.self, from: Data(#"{"training": {"steps": 5}}"#.utf8)).stage, 2)
        XCTAssertThrowsError(try JSONDecoder().decode(SuperResTrainingConfiguration.self, from: Data(#"{"stage": 3}"#.utf8))) {
            XCTAssertTrue("\($0)".contains("stage 3"), "\($0)")
        }
        // A train-all file: "super_res_2" is stage 2, null leaves it out, a contradicting "stage" is an error.
        let all = try JSONDecoder().decode(TrainAllConfiguration.self, from: Data(#"{"super_res_2": {"training": {"steps": 9}}}"#.utf8))
        XCTAssertEqual(all.superRes2?.stage, 2)
        XCTAssertEqual(all.superRes2?.training.steps, 9)
        XCTAssertEqual(all.superRes.stage, 1)
        XCTAssertNil(try JSONDecoder().decode(TrainAllConfiguration.self, from: Data(#"{"super_res_2": null}"#.utf8)).superRes2)
        XCTAssertEqual(try JSONDecoder().decode(TrainAllConfiguration.self, from: Data("{}".utf8)).superRes2?.highResolution, 512)
        XCTAssertThrowsError(try JSONDecoder().decode(TrainAllConfiguration.self, from: Data(#"{"super_res_2": {"stage": 1}}"#.utf8))) {
            XCTAssertTrue("\($0)".contains("contradicts"), "\($0)")
        }
        // The round trip keeps a left-out second stage left out.
        var none = TrainAllConfiguration()
        none.superRes2 = nil
        XCTAssertNil(try JSONDecoder().decode(TrainAllConfiguration.self, from: JSONEncoder().encode(none)).superRes2)
        // Impossible settings are named before anything is built.
        for (edit, option) in [({ (c: inout SuperResTrainingConfiguration) in c.jpegQualityMax = 101 }, "jpeg_quality_min"),
                               ({ $0.resizeProbability = 1.5 }, "resize_probability"),
                               ({ $0.highResolution = 100 }, "high_resolution"),
                               ({ $0.resizeScaleMin = 0 }, "resize_scale_min")] {
            var c = SuperResTrainingConfiguration.secondStage
            edit(&c)
            XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains(option), "\($0)") }
        }
    }

    func testTheSecondStageTrainsAndWritesItsComponents() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-sr2-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: out) }
        var c = SuperResTrainingConfiguration.secondStage
        c.highResolution = 256; c.cropSize = 32; c.blockOutChannels = [8, 8]
        c.training.steps = 3; c.training.batchSize = 2; c.training.warmupSteps = 1; c.training.checkpointEvery = 3
        let outcome = try c.run(dataset: try ShapesWorldDataset(seed: 1, count: 8), out: out)
        XCTAssertEqual(outcome.stage, .superResolution(1))
        for name in ["super_res_2_first", "super_res_2_last", "super_res_2_scheduler"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(name).path), name)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("checkpoints/super_res_2/loss.jsonl").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("super_res_first").path))
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("super_res_2_first/config.json"))) as! [String: Any]
        XCTAssertEqual(config["sample_size"] as? Int, 256)
    }
}
