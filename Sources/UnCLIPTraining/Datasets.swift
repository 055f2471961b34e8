import Foundation
import UnCLIPImage
import UnCLIPShapesWorld

/// An image with its caption: one training example.
public struct CaptionedImage: Equatable, Sendable {
    public var image: RGBImage
    public var caption: String

    public init(image: RGBImage, caption: String) {
        self.image = image
        self.caption = caption
    }
}

/// A finite, indexable collection of captioned images that trainers draw examples from.
///
/// `sample` may throw for one bad entry (a folder's unreadable file); trainers report the error, which names the
/// file, and move on.
public protocol CaptionedImageDataset {
    /// The number of entries (valid or not).
    var count: Int { get }
    /// Entry `index` (0 ..< count).
    func sample(_ index: Int) throws -> CaptionedImage
    /// Entry `index` with its image `side` × `side`: by default the stored image box-downsampled to `side` (an error
    /// when it is smaller or not a multiple of it); a data set that can draw its images at any size (ShapesWorld)
    /// draws them at `side`, so an upsampler can be trained at a resolution above the others'.
    func sample(_ index: Int, side: Int) throws -> CaptionedImage
}

extension CaptionedImageDataset {
    public func sample(_ index: Int, side: Int) throws -> CaptionedImage {
        var entry = try sample(index)
        entry.image = try downsampled(entry.image, to: side)
        return entry
    }
}

/// A reason a data-set entry or a data set could not be used.
public enum DatasetError: Error, CustomStringConvertible, Equatable {
    /// An index outside 0 ..< count.
    case indexOutOfRange(index: Int, count: Int)
    /// The image file exists but could not be decoded.
    case unreadableImage(file: String, reason: String)
    /// No caption file beside the image.
    case missingCaption(file: String)
    /// The caption file could not be read as UTF-8 text.
    case unreadableCaption(file: String, reason: String)
    /// The caption file holds only white space.
    case emptyCaption(file: String)
    /// The data-set folder does not exist or is not a folder.
    case notADirectory(path: String)
    /// The folder holds no `.png`/`.jpg`/`.jpeg` images.
    case noImages(path: String)
    /// A resolution the data set cannot produce.
    case invalidResolution(Int)
    /// Every entry of the folder was skipped (each reported on its own).
    case noUsableEntries(path: String, skipped: Int)

    public var description: String {
        switch self {
        case let .indexOutOfRange(index, count): return "data-set index \(index) is outside 0..<\(count)"
        case let .unreadableImage(file, reason): return "\(file): unreadable image (\(reason))"
        case let .missingCaption(file): return "\(file): no caption file beside the image"
        case let .unreadableCaption(file, reason): return "\(file): unreadable caption (\(reason))"
        case let .emptyCaption(file): return "\(file): the caption is empty"
        case let .notADirectory(path): return "\(path): not a directory"
        case let .noImages(path): return "\(path): no .png, .jpg or .jpeg images"
        case let .invalidResolution(r): return "resolution \(r) is not supported"
        case let .noUsableEntries(path, skipped): return "\(path): none of its \(skipped) images can be used (each skipped entry is reported above)"
        }
    }
}

/// ShapesWorld scenes 0 ..< count of one seed, rendered at 128 × 128 or box-downsampled to a divisor of 128 (and, for
/// `sample(_:side:)`, drawn at 256, 512 or 1024 as well).
public struct ShapesWorldDataset: CaptionedImageDataset, Sendable {
    public let world: ShapesWorld
    public let count: Int
    /// The image side in pixels.
    public let resolution: Int

    /// The first `count` scenes of `ShapesWorld(seed:)` at `resolution` (128 / k for a whole k, or 256, 512, 1024).
    public init(seed: UInt64, count: Int, resolution: Int = 128) throws {
        guard count >= 0 else { throw ShapesWorldError.invalidCount(count) }
        guard ShapesWorld.supportsResolution(resolution) else {
            throw ShapesWorldError.unsupportedResolution(resolution)
        }
        self.world = ShapesWorld(seed: seed)
        self.count = count
        self.resolution = resolution
    }

    /// The scene behind entry `index`.
    public func scene(_ index: Int) throws -> Scene {
        guard index >= 0, index < count else { throw DatasetError.indexOutOfRange(index: index, count: count) }
        return world.scene(at: index)
    }

    public func sample(_ index: Int) throws -> CaptionedImage {
        let scene = try scene(index)
        return CaptionedImage(image: try ShapesWorld.render(scene, size: resolution), caption: scene.caption)
    }

    public func sample(_ index: Int, side: Int) throws -> CaptionedImage {
        let scene = try scene(index)
        return CaptionedImage(image: try ShapesWorld.render(scene, size: side), caption: scene.caption)
    }
}

/// The outcome of checking every entry of a folder data set.
public struct FolderScan: Sendable {
    /// Indices of entries that load.
    public var valid: [Int]
    /// One message per skipped entry, naming its file and the reason.
    public var skipped: [String]
}

/// Images in a folder, each `name.png` / `name.jpg` / `name.jpeg` captioned by `name.txt` beside it.
///
/// Entries are validated lazily: `sample` throws a `DatasetError` naming the bad file (unreadable image, missing or
/// empty caption), so one bad file costs one example, not the run; `validEntries()` checks them all up front.
public struct FolderDataset: CaptionedImageDataset, Sendable {
    /// The image files, sorted by name.
    public let files: [URL]
    /// If set, images are resized (Pillow bicubic) so the shorter side is `resolution`, then centre-cropped square.
    public let resolution: Int?

    public var count: Int { files.count }

    /// Lists the images in `directory` (not recursive).
    public init(directory: URL, resolution: Int? = nil) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw DatasetError.notADirectory(path: directory.path)
        }
        if let resolution, resolution <= 0 { throw DatasetError.invalidResolution(resolution) }
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory.path) } catch {
            throw DatasetError.notADirectory(path: directory.path)
        }
        let imageExtensions: Set<String> = ["png", "jpg", "jpeg"]
        let images = names.filter { imageExtensions.contains(($0 as NSString).pathExtension.lowercased()) }.sorted()
        guard !images.isEmpty else { throw DatasetError.noImages(path: directory.path) }
        self.init(files: images.map { directory.appendingPathComponent($0) }, resolution: resolution)
    }

    /// A data set over the given image files (their captions beside them).
    public init(files: [URL], resolution: Int? = nil) {
        self.files = files
        self.resolution = resolution
    }

    /// The same data set restricted to `indices` (for example `validEntries().valid`).
    public func keeping(_ indices: [Int]) -> FolderDataset {
        FolderDataset(files: indices.map { files[$0] }, resolution: resolution)
    }

    public func sample(_ index: Int) throws -> CaptionedImage {
        guard index >= 0, index < count else { throw DatasetError.indexOutOfRange(index: index, count: count) }
        let file = files[index]
        let captionURL = file.deletingPathExtension().appendingPathExtension("txt")
        guard FileManager.default.fileExists(atPath: captionURL.path) else { throw DatasetError.missingCaption(file: file.path) }
        let text: String
        do {
            let data = try Data(contentsOf: captionURL)
            guard let decoded = String(data: data, encoding: .utf8) else {
                throw DatasetError.unreadableCaption(file: captionURL.path, reason: "not UTF-8 text")
            }
            text = decoded
        } catch let error as DatasetError { throw error } catch {
            throw DatasetError.unreadableCaption(file: captionURL.path, reason: error.localizedDescription)
        }
        // A caption is one line; stray line breaks and runs of spaces become single spaces.
        let caption = text.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
        guard !caption.isEmpty else { throw DatasetError.emptyCaption(file: captionURL.path) }

        var image: RGBImage
        do { image = try RGBImage(contentsOf: file) } catch {
            throw DatasetError.unreadableImage(file: file.path, reason: "\(error)")
        }
        if let resolution, image.width != resolution || image.height != resolution {
            image = image.resized(shorterSide: resolution).centerCropped(width: resolution, height: resolution)
        }
        return CaptionedImage(image: image, caption: caption)
    }

    /// Loads every entry once and reports which load and why the others do not.
    public func validEntries() -> FolderScan {
        var scan = FolderScan(valid: [], skipped: [])
        for index in 0..<count {
            do {
                _ = try sample(index)
                scan.valid.append(index)
            } catch {
                scan.skipped.append("\(error)")
            }
        }
        return scan
    }
}
