import Foundation
import UnCLIPModels
import UnCLIPShapesWorld
import UnCLIPImage
import UnCLIPNN
import XCTest
@testable import UnCLIPTraining

/// The ShapesWorld caption recipe (mirror pairs; hard, attribute and binding negatives) must train exactly as it did
/// before it moved out of the CLIP trainer's defaults.
final class CLIPRecipeTests: XCTestCase {
    private func temporaryDirectory(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-recipe-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// FNV-1a (64 bit) over every parameter's name and Float bit patterns, in name order.
    private func checksum(_ module: Module) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        for (key, t) in module.namedParameters().sorted(by: { $0.0 < $1.0 }) {
            key.utf8.forEach(mix)
            for v in t.toArray() { withUnsafeBytes(of: v.bitPattern.littleEndian) { $0.forEach(mix) } }
        }
        return h
    }

    /// Six CLIP steps of the tiny smoke-test towers on 16 ShapesWorld scenes, every recipe part on; returns the
    /// logged losses and gradient norms (as Float bit patterns) and the exported towers' checksums.
    private func runShapesWorldRecipe(_ clip: CLIPTrainingConfiguration) throws -> (losses: [UInt32], norms: [UInt32], text: UInt64, vision: UInt64) {
        let out = try temporaryDirectory("clip")
        let data = try ShapesWorldDataset(seed: 3, count: 16)
        var c = TrainAllConfiguration.smokeTest
        try c.tokenizer.run(dataset: data, out: out)
        c.clip = clip
        c.clip.embeddingDim = 32; c.clip.textLayers = 1; c.clip.textHeads = 2; c.clip.textIntermediateSize = 64
        c.clip.visionWidth = 32; c.clip.visionLayers = 1; c.clip.visionHeads = 2; c.clip.visionIntermediateSize = 64
        c.clip.patchSize = 8
        c.clip.precision = .fp32
        c.clip.training.steps = 6
        c.clip.training.batchSize = 8
        c.clip.training.warmupSteps = 2
        c.clip.training.checkpointEvery = 6
        XCTAssertTrue(try c.clip.run(dataset: data, out: out).exported)
        let log = try String(contentsOf: out.appendingPathComponent("checkpoints/clip/loss.jsonl"), encoding: .utf8)
        var losses: [UInt32] = [], norms: [UInt32] = []
        for line in log.split(separator: "\n") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            losses.append(Float("\(object["loss"]!)")!.bitPattern)
            norms.append(Float("\(object["grad_norm"]!)")!.bitPattern)
        }
        let directory = try PipelineDirectory(out)
        return (losses, norms, checksum(try directory.loadTextEncoder()), checksum(try directory.loadImageEncoder()))
    }

    /// FNV-1a (64 bit) of a CLIP batch: its captions, its negatives and its images' bytes.
    private func checksum(captions: [String], negatives: [String], images: [RGBImage]) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        for text in captions + ["|"] + negatives { text.utf8.forEach(mix); mix(0) }
        for image in images { image.pixels.forEach(mix) }
        return h
    }

    /// The checksum of the CLIP trainer's batch at `step` (the run's own batch order).
    private func batchChecksum(_ c: CLIPTrainingConfiguration, _ dataset: some CaptionedImageDataset, step: Int) -> UInt64 {
        var sampler = BatchSampler(count: dataset.count, batchSize: c.training.batchSize, seed: c.training.seed)
        let (images, captions, negatives) = c.batch(dataset, indices: sampler.indices(step: step), step: step, progress: { _ in })
        return checksum(captions: captions, negatives: negatives, images: images)
    }

    /// Recorded on main at b450419 (the recipe still the CLIP trainer's default) by this test's first version (commit
    /// 3375695; the batches from a copy of the trainer's batch assembly as it then was), on the project's x86-64 build
    /// machine: the batches (captions, negatives, pixels) are integer and string work and hold on any machine; the
    /// losses, gradient norms and weights are the engine's floating point on that machine.
    private static let recordedBatches: [UInt64] = [0x848f57de8fb84881, 0x7ff5221df3bf7116, 0x019087459b6cef8d,
                                                     0x38eb5cfdacf316ae, 0xff1f687f24ea9557, 0xf84c913f82e5ab50]
    private static let recordedLosses: [UInt32] = [0x40a75e55, 0x40a3c9d2, 0x40a1fd84, 0x40a1e18f, 0x409bb104, 0x409e2c45]
    private static let recordedNorms: [UInt32] = [0x41b3868b, 0x41f5df8b, 0x41e33b8e, 0x4154e48e, 0x41a91a05, 0x4199b6c2]
    private static let recordedText: UInt64 = 0x5600ab2e07b05c56
    private static let recordedVision: UInt64 = 0xb69935d54ceb4fa3

    /// The configuration `unclip train clip` uses on ShapesWorld with no `--config`: the defaults, and ShapesWorld's
    /// caption recipe because none is named.
    private var shapesWorldDefaults: CLIPTrainingConfiguration {
        CLIPTrainingConfiguration().defaultingCaptionRecipe(to: .shapesWorld)
    }

    func testShapesWorldRecipeTrainsBitIdenticallyToTheFormerDefaults() throws {
        var c = shapesWorldDefaults
        XCTAssertEqual(c.captionRecipe, .shapesWorld)
        c.training.batchSize = 8
        let data = try ShapesWorldDataset(seed: 3, count: 16)
        XCTAssertEqual((0..<6).map { batchChecksum(c, data, step: $0) }, Self.recordedBatches)
        let result = try runShapesWorldRecipe(shapesWorldDefaults)
        XCTAssertEqual(result.losses, Self.recordedLosses)
        XCTAssertEqual(result.norms, Self.recordedNorms)
        XCTAssertEqual(result.text, Self.recordedText)
        XCTAssertEqual(result.vision, Self.recordedVision)

        // The figures pin the recipe: without it the same run trains differently.
        var plain = shapesWorldDefaults
        plain.captionRecipe = CLIPCaptionRecipe.none
        XCTAssertNotEqual(try runShapesWorldRecipe(plain).losses, Self.recordedLosses)
    }

    func testAFolderDatasetGetsNoCaptionRewritesUnlessAsked() throws {
        // A folder of relation captions, as `unclip train clip --data DIR` sees it: no recipe named.
        let dir = try temporaryDirectory("folder")
        let world = ShapesWorld(seed: 3)
        let scenes = (0..<200).map { world.scene(at: $0) }.filter { $0.relation == .above || $0.relation == .leftOf }.prefix(4)
        XCTAssertEqual(scenes.count, 4)
        for (k, scene) in scenes.enumerated() {
            try ShapesWorld.render(scene).writePNG(to: dir.appendingPathComponent("\(k).png"))
            try Data(scene.caption.utf8).write(to: dir.appendingPathComponent("\(k).txt"))
        }
        let folder = try FolderDataset(directory: dir)
        let originals = try (0..<4).map { try folder.sample($0) }
        XCTAssertTrue(originals.contains { $0.caption.contains(" above ") })
        var c = try JSONDecoder().decode(CLIPTrainingConfiguration.self, from: Data("{}".utf8))
        c.training.batchSize = 4
        XCTAssertNil(c.captionRecipe)
        let plain = c.batch(folder, indices: [0, 1, 2, 3], step: 0, progress: { _ in })
        XCTAssertEqual(plain.captions, originals.map(\.caption), "no caption is mirrored")
        XCTAssertEqual(plain.images, try originals.map { try $0.image.boxDownsampled(factor: 4) }, "no image is flipped")
        XCTAssertEqual(plain.negatives, [])

        // Asked for by the config key, the same folder gets ShapesWorld's rewrites.
        let asked = try JSONDecoder().decode(CLIPTrainingConfiguration.self, from: Data(#"{"caption_recipe": "shapesworld"}"#.utf8))
        let rewritten = asked.batch(folder, indices: [0, 1, 2, 3], step: 0, progress: { _ in })
        XCTAssertEqual(rewritten.captions.count, 4)
        XCTAssertEqual(Array(rewritten.captions.prefix(2)), Array(originals.prefix(2).map(\.caption)))
        for k in 0..<2 {
            let (mirror, caption) = CaptionNegatives.mirrorPair(image: rewritten.images[k], caption: originals[k].caption)
            XCTAssertEqual(rewritten.captions[2 + k], caption)
            XCTAssertEqual(rewritten.images[2 + k], mirror)
            XCTAssertNotEqual(caption, originals[k].caption, "a relation caption is mirrored")
        }
        XCTAssertFalse(rewritten.negatives.isEmpty)
    }
}
