import Foundation

/// An 8-bit RGB image with its alpha channel, when the file has one: what an edit's input and mask are read as
/// (in the DALL·E edits API, alpha 0 marks the pixels to repaint).
///
/// The colour is straight (not premultiplied, nor composited over a background), so a transparent pixel keeps
/// whatever colour the file gives it.
public struct AlphaImage: Sendable, Equatable {
    public var image: RGBImage
    /// One byte per pixel, row-major; nil when the file has no alpha (RGB, grayscale without alpha, JPEG).
    public var alpha: [UInt8]?

    /// An image from its parts; `alpha` must have one value per pixel.
    public init(image: RGBImage, alpha: [UInt8]?) {
        precondition(alpha.map { $0.count == image.width * image.height } ?? true,
                     "AlphaImage: \(alpha?.count ?? 0) alpha values for \(image.width)x\(image.height)")
        self.image = image
        self.alpha = alpha
    }

    /// Reads a PNG (or JPEG, which has no alpha) file, recognised by its first bytes.
    public init(contentsOf url: URL) throws {
        try self.init(data: try ImageFiles.read(url), name: url.path)
    }

    /// Decodes PNG bytes keeping the alpha channel (grayscale and palette become RGB, 16-bit samples 8-bit, as
    /// `RGBImage` decodes them); JPEG bytes decode with no alpha. `name` is used in error messages.
    public init(data: Data, name: String = "<memory>") throws {
        guard RGBImage.FileFormat.detect(data) == .png else {
            self.init(image: try RGBImage(data: data, name: name), alpha: nil)
            return
        }
        let decoded = try RGBImage.decodePNGPixels(data, name: name)
        let n = decoded.width * decoded.height
        guard decoded.hasAlpha else {
            self.init(image: RGBImage(width: decoded.width, height: decoded.height, pixels: decoded.bytes), alpha: nil)
            return
        }
        var rgb = [UInt8](repeating: 0, count: n * 3), alpha = [UInt8](repeating: 0, count: n)
        decoded.bytes.withUnsafeBufferPointer { src in
            for i in 0..<n {
                rgb[3 * i] = src[4 * i]; rgb[3 * i + 1] = src[4 * i + 1]; rgb[3 * i + 2] = src[4 * i + 2]
                alpha[i] = src[4 * i + 3]
            }
        }
        self.init(image: RGBImage(width: decoded.width, height: decoded.height, pixels: rgb), alpha: alpha)
    }

    public var width: Int { image.width }
    public var height: Int { image.height }

    /// Encodes an 8-bit RGBA PNG, or RGB without alpha.
    public func pngData() throws -> Data {
        guard let alpha else { return try image.pngData() }
        let n = width * height
        var rgba = [UInt8](repeating: 0, count: n * 4)
        for i in 0..<n {
            rgba[4 * i] = image.pixels[3 * i]; rgba[4 * i + 1] = image.pixels[3 * i + 1]; rgba[4 * i + 2] = image.pixels[3 * i + 2]
            rgba[4 * i + 3] = alpha[i]
        }
        return try RGBImage.encodePNG(rgba, width: width, height: height, alpha: true)
    }

    /// Writes the PNG atomically (a temporary file, then a rename).
    public func writePNG(to url: URL) throws {
        try RGBImage.writePNG({ try pngData() }, to: url)
    }
}
