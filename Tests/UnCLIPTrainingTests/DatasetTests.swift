import Foundation
import XCTest
import UnCLIPImage
import UnCLIPShapesWorld
@testable import UnCLIPTraining

private func temporaryDirectory(_ name: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("datasets-\(name)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// The trainers' data sets: ShapesWorld scenes rendered on the fly, and a folder of captioned images.
final class DatasetTests: XCTestCase {
    func testShapesWorldDataset() throws {
        let dataset = try ShapesWorldDataset(seed: 11, count: 10, resolution: 32)
        XCTAssertEqual(dataset.count, 10)
        let sample = try dataset.sample(4)
        let scene = ShapesWorld(seed: 11).scene(at: 4)
        XCTAssertEqual(sample.caption, scene.caption)
        XCTAssertEqual(sample.image, try ShapesWorld.render(scene).boxDownsampled(factor: 4))
        XCTAssertThrowsError(try dataset.sample(10)) { XCTAssertEqual($0 as? DatasetError, .indexOutOfRange(index: 10, count: 10)) }
        XCTAssertThrowsError(try ShapesWorldDataset(seed: 1, count: 5, resolution: 100))
        XCTAssertEqual(try ShapesWorldDataset(seed: 11, count: 10).sample(4).image.width, 128)
    }

    func testFolderDatasetReportsAndSkipsBadFiles() throws {
        let dir = try temporaryDirectory("folder")
        defer { try? FileManager.default.removeItem(at: dir) }
        let scene = ShapesWorld(seed: 1).scene(at: 0)
        let image = ShapesWorld.render(scene)
        func write(_ name: String, _ text: String) throws { try Data(text.utf8).write(to: dir.appendingPathComponent(name)) }
        try image.writePNG(to: dir.appendingPathComponent("a_good.png"))
        try write("a_good.txt", scene.caption + "\n")
        try Data([0x89, 0x50, 0x4E, 0x47, 1, 2, 3]).write(to: dir.appendingPathComponent("b_corrupt.png"))
        try write("b_corrupt.txt", "a red circle")
        try image.writePNG(to: dir.appendingPathComponent("c_empty.png"))
        try write("c_empty.txt", "  \n")
        try image.writePNG(to: dir.appendingPathComponent("d_uncaptioned.png"))
        try write("e_orphan.txt", "a caption without an image")
        try image.writePNG(to: dir.appendingPathComponent("f_big.png"))
        try write("f_big.txt", "a   blue\nsquare")

        let dataset = try FolderDataset(directory: dir, resolution: 64)
        XCTAssertEqual(dataset.files.map(\.lastPathComponent), ["a_good.png", "b_corrupt.png", "c_empty.png", "d_uncaptioned.png", "f_big.png"])
        let good = try dataset.sample(0)
        XCTAssertEqual(good.caption, scene.caption)
        XCTAssertEqual([good.image.width, good.image.height], [64, 64])
        XCTAssertEqual(try dataset.sample(4).caption, "a blue square")
        XCTAssertThrowsError(try dataset.sample(1)) { error in
            guard case let .unreadableImage(file, _)? = error as? DatasetError else { return XCTFail("\(error)") }
            XCTAssertTrue(file.hasSuffix("b_corrupt.png"))
        }
        XCTAssertThrowsError(try dataset.sample(2)) { XCTAssertTrue("\($0)".contains("c_empty.txt")) }
        XCTAssertThrowsError(try dataset.sample(3)) { XCTAssertTrue("\($0)".contains("d_uncaptioned.png")) }

        let scan = dataset.validEntries()
        XCTAssertEqual(scan.valid, [0, 4])
        XCTAssertEqual(scan.skipped.count, 3)
        for (message, name) in zip(scan.skipped, ["b_corrupt.png", "c_empty.txt", "d_uncaptioned.png"]) {
            XCTAssertTrue(message.contains(name), message)
        }
        XCTAssertEqual(try dataset.keeping(scan.valid).sample(1).caption, "a blue square")

        XCTAssertThrowsError(try FolderDataset(directory: dir.appendingPathComponent("missing")))
        let empty = try temporaryDirectory("empty")
        defer { try? FileManager.default.removeItem(at: empty) }
        XCTAssertThrowsError(try FolderDataset(directory: empty)) { XCTAssertEqual($0 as? DatasetError, .noImages(path: empty.path)) }
    }
}
