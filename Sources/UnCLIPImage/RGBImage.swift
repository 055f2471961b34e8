import Foundation
import CPNG
import UnCLIPTensor
#if canImport(CJPEGDecode)
import CJPEGDecode
#endif

/// An 8-bit RGB image: `height` rows of `width` pixels, each pixel three bytes R, G, B, top row first.
public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    /// Interleaved RGB bytes, `width · height · 3` of them, row-major.
    public var pixels: [UInt8]

    /// The largest image accepted from a file (16384 × 16384); guards against absurd allocations from a
    /// corrupt or hostile header.
    public static let maxPixelCount = 1 << 28

    /// An image from existing RGB bytes; `pixels.count` must be `width · height · 3`.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height * 3,
                     "RGBImage: \(pixels.count) bytes for \(width)x\(height) RGB")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// An image of one colour.
    public init(width: Int, height: Int, red: UInt8 = 0, green: UInt8 = 0, blue: UInt8 = 0) {
        var p = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) { p[3 * i] = red; p[3 * i + 1] = green; p[3 * i + 2] = blue }
        self.init(width: width, height: height, pixels: p)
    }

    /// The (r, g, b) of the pixel in column `x`, row `y`.
    public subscript(x x: Int, y y: Int) -> (UInt8, UInt8, UInt8) {
        let i = (y * width + x) * 3
        return (pixels[i], pixels[i + 1], pixels[i + 2])
    }

    /// The image mirrored left ↔ right (`horizontally`) or top ↔ bottom.
    public func flipped(horizontally: Bool) -> RGBImage {
        remapped { x, y in horizontally ? (width - 1 - x, y) : (x, height - 1 - y) }
    }

    /// The image moved right by `dx` and down by `dy` pixels, the edge pixels repeated into the uncovered border.
    public func shifted(dx: Int, dy: Int) -> RGBImage {
        remapped { x, y in (Swift.min(Swift.max(x - dx, 0), width - 1), Swift.min(Swift.max(y - dy, 0), height - 1)) }
    }

    /// Each pixel (x, y) taken from `source(x, y)`, which must lie inside the image.
    private func remapped(_ source: (Int, Int) -> (Int, Int)) -> RGBImage {
        var out = [UInt8](repeating: 0, count: pixels.count)
        for y in 0..<height {
            for x in 0..<width {
                let (sx, sy) = source(x, y)
                let d = (y * width + x) * 3, s = (sy * width + sx) * 3
                out[d] = pixels[s]; out[d + 1] = pixels[s + 1]; out[d + 2] = pixels[s + 2]
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }
}

/// A reason an image could not be read, written or converted.
public enum ImageError: Error, CustomStringConvertible, Equatable {
    /// The file could not be read at all.
    case io(file: String, reason: String)
    /// The input file does not exist.
    case missing(file: String)
    /// The output file cannot be created or written.
    case cannotCreate(file: String, reason: String)
    /// The bytes are neither PNG nor JPEG.
    case unrecognizedFormat(file: String, detail: String)
    /// The codec rejected the data (truncated, corrupt, unsupported variant).
    case decodeFailed(file: String, format: String, reason: String)
    /// The image is too large to load.
    case tooLarge(file: String, width: Int, height: Int)
    /// Encoding failed.
    case encodeFailed(file: String, reason: String)
    /// A tensor does not have an image's shape.
    case invalidTensor(detail: String)

    public var description: String {
        switch self {
        case let .io(file, reason): return "image \(file): \(reason)"
        case let .missing(file): return "image \(file): no such file"
        case let .cannotCreate(file, reason): return "cannot write the image \(file): \(reason)"
        case let .unrecognizedFormat(file, detail): return "image \(file): not a PNG or JPEG file (\(detail))"
        case let .decodeFailed(file, format, reason): return "image \(file): cannot decode \(format): \(reason)"
        case let .tooLarge(file, width, height):
            return "image \(file): \(width)x\(height) pixels is more than the limit of \(RGBImage.maxPixelCount) (16384x16384), checked before decoding"
        case let .encodeFailed(file, reason): return "image \(file): cannot encode PNG: \(reason)"
        case let .invalidTensor(detail): return "image tensor: \(detail)"
        }
    }
}

// MARK: - Reading

extension RGBImage {
    /// The container formats recognised by their first bytes.
    public enum FileFormat: String, Sendable {
        case png = "PNG", jpeg = "JPEG"

        /// The format whose signature starts `bytes`, if any.
        public static func detect(_ bytes: some Collection<UInt8>) -> FileFormat? {
            let head = Array(bytes.prefix(8))
            if head == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] { return .png }
            if head.count >= 3, head[0] == 0xFF, head[1] == 0xD8, head[2] == 0xFF { return .jpeg }
            return nil
        }
    }

    /// Reads a PNG or JPEG file, recognised by its first bytes (not its extension).
    ///
    /// Grayscale becomes RGB; an alpha channel is composited over white; 16-bit PNG samples are scaled to 8 bits.
    public init(contentsOf url: URL) throws {
        try self.init(data: try ImageFiles.read(url), name: url.path)
    }

    /// Decodes PNG or JPEG bytes; `name` is used in error messages.
    public init(data: Data, name: String = "<memory>") throws {
        guard !data.isEmpty else { throw ImageError.unrecognizedFormat(file: name, detail: "the file is empty") }
        switch FileFormat.detect(data) {
        case .png?: self = try Self.decodePNG(data, name: name)
        case .jpeg?: self = try Self.decodeJPEG(data, name: name)
        case nil:
            let head = data.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw ImageError.unrecognizedFormat(file: name, detail: "it starts with bytes \(head)")
        }
    }

    // libpng's simplified API runs every libpng call under its own setjmp inside C and reports failure as a
    // status and a message, so no longjmp ever crosses a Swift frame.
    static let pngFormatFlagAlpha: UInt32 = 0x01
    static let pngFormatFlagColor: UInt32 = 0x02

    private static func decodePNG(_ data: Data, name: String) throws -> RGBImage {
        let decoded = try decodePNGPixels(data, name: name)
        guard decoded.hasAlpha else { return RGBImage(width: decoded.width, height: decoded.height, pixels: decoded.bytes) }
        return RGBImage(width: decoded.width, height: decoded.height, pixels: compositeOverWhite(rgba: decoded.bytes))
    }

    /// A PNG's pixels as 8-bit RGB, or RGBA (straight, not premultiplied) when the file has an alpha channel (an
    /// alpha sample or a tRNS chunk); grayscale and palette images become RGB, 16-bit samples are scaled to 8 bits.
    /// The dimensions are checked against `maxPixelCount` before anything is allocated.
    static func decodePNGPixels(_ data: Data, name: String) throws -> (width: Int, height: Int, bytes: [UInt8], hasAlpha: Bool) {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        defer { png_image_free(&image) }
        let begun = data.withUnsafeBytes { png_image_begin_read_from_memory(&image, $0.baseAddress, $0.count) }
        guard begun != 0 else { throw ImageError.decodeFailed(file: name, format: "PNG", reason: pngMessage(image)) }
        let width = Int(image.width), height = Int(image.height)
        guard width > 0, height > 0, width * height <= maxPixelCount else {
            throw ImageError.tooLarge(file: name, width: width, height: height)
        }
        // Most 16-bit PNGs in the wild hold sRGB-encoded samples (as Pillow assumes); without this flag libpng
        // would treat them as linear light and re-encode them.
        image.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB)
        let hasAlpha = image.format & pngFormatFlagAlpha != 0
        let channels = hasAlpha ? 4 : 3
        image.format = pngFormatFlagColor | (hasAlpha ? pngFormatFlagAlpha : 0)
        var buffer = [UInt8](repeating: 0, count: width * height * channels)
        let finished = buffer.withUnsafeMutableBytes {
            png_image_finish_read(&image, nil, $0.baseAddress, Int32(width * channels), nil)
        }
        guard finished != 0 else { throw ImageError.decodeFailed(file: name, format: "PNG", reason: pngMessage(image)) }
        return (width, height, buffer, hasAlpha)
    }

    static func pngMessage(_ image: png_image) -> String {
        var message = image.message
        let text = withUnsafeBytes(of: &message) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return text.isEmpty ? "libpng reported an error" : text
    }

    /// RGBA bytes flattened onto an opaque white background.
    ///
    /// Matches Pillow's `Image.alpha_composite(white, image)` (what transformers' `convert_to_rgb` does): its
    /// integer arithmetic with 7 extra bits of precision and rounded divisions by 255, in sRGB-encoded values.
    static func compositeOverWhite(rgba: [UInt8]) -> [UInt8] {
        let n = rgba.count / 4
        var out = [UInt8](repeating: 255, count: n * 3)
        let precisionBits: UInt32 = 7
        @inline(__always) func shiftForDiv255(_ a: UInt32) -> UInt32 { ((a >> 8) + a) >> 8 }
        for i in 0..<n {
            let sa = UInt32(rgba[4 * i + 3])
            if sa == 0 { continue }
            let da: UInt32 = 255, dc: UInt32 = 255
            let blend = da * (255 - sa)
            let outa255 = sa * 255 + blend
            let coef1 = sa * 255 * 255 * (1 << precisionBits) / outa255
            let coef2 = 255 * (1 << precisionBits) - coef1
            for c in 0..<3 {
                let t = UInt32(rgba[4 * i + c]) * coef1 + dc * coef2
                out[3 * i + c] = UInt8(truncatingIfNeeded: shiftForDiv255(t + (0x80 << precisionBits)) >> precisionBits)
            }
        }
        return out
    }

    private static func decodeJPEG(_ data: Data, name: String) throws -> RGBImage {
        #if canImport(CJPEGDecode)
        var pixels: UnsafeMutablePointer<UInt8>?
        var width: Int32 = 0, height: Int32 = 0, components: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = data.withUnsafeBytes { raw in
            unclip_jpeg_decode(raw.bindMemory(to: UInt8.self).baseAddress, raw.count, maxPixelCount,
                               &pixels, &width, &height, &components, &message, message.count)
        }
        guard status == 0, let pixels else {
            let reason = String(decoding: message.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw ImageError.decodeFailed(file: name, format: "JPEG", reason: reason.isEmpty ? "libjpeg reported an error" : reason)
        }
        defer { unclip_jpeg_free(pixels) }
        let w = Int(width), h = Int(height)
        if components == 3 {
            return RGBImage(width: w, height: h, pixels: Array(UnsafeBufferPointer(start: pixels, count: w * h * 3)))
        }
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        for i in 0..<(w * h) { rgb[3 * i] = pixels[i]; rgb[3 * i + 1] = pixels[i]; rgb[3 * i + 2] = pixels[i] }
        return RGBImage(width: w, height: h, pixels: rgb)
        #else
        // libjpeg reports fatal errors by longjmp (or exit), which must never cross Swift frames; decoding needs the
        // small C target CJPEGDecode that holds the setjmp.
        throw ImageError.decodeFailed(file: name, format: "JPEG", reason: "this build has no JPEG decoder (the CJPEGDecode target is missing)")
        #endif
    }
}

// MARK: - Writing

extension RGBImage {
    /// Encodes the image as an 8-bit RGB PNG.
    public func pngData() throws -> Data {
        try Self.encodePNG(pixels, width: width, height: height, alpha: false)
    }

    /// Encodes interleaved 8-bit RGB (or RGBA, straight alpha) bytes as a PNG.
    static func encodePNG(_ bytes: [UInt8], width: Int, height: Int, alpha: Bool) throws -> Data {
        guard width > 0, height > 0 else { throw ImageError.encodeFailed(file: "<memory>", reason: "the image is \(width)x\(height)") }
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = pngFormatFlagColor | (alpha ? pngFormatFlagAlpha : 0)
        defer { png_image_free(&image) }
        var size = 0
        // First pass measures, second pass writes.
        let measured = bytes.withUnsafeBytes {
            png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, 0, nil)
        }
        guard measured != 0, size > 0 else { throw ImageError.encodeFailed(file: "<memory>", reason: pngMessage(image)) }
        var out = Data(count: size)
        let written = out.withUnsafeMutableBytes { dst in
            bytes.withUnsafeBytes { png_image_write_to_memory(&image, dst.baseAddress, &size, 0, $0.baseAddress, 0, nil) }
        }
        guard written != 0 else { throw ImageError.encodeFailed(file: "<memory>", reason: pngMessage(image)) }
        return out.prefix(size)
    }

    /// Encodes the image as a baseline JPEG at `quality` (1 … 100, libjpeg's scale; 4:2:0 chroma subsampling, as
    /// libjpeg's defaults): the super-resolution trainers' compression artefacts, not a file format this project writes.
    public func jpegData(quality: Int) throws -> Data {
        #if canImport(CJPEGDecode)
        var data: UnsafeMutablePointer<UInt8>?
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = pixels.withUnsafeBufferPointer {
            unclip_jpeg_encode($0.baseAddress, Int32(clamping: width), Int32(clamping: height), Int32(clamping: quality),
                               &data, &size, &message, message.count)
        }
        guard status == 0, let data else {
            let reason = String(decoding: message.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw ImageError.encodeFailed(file: "<memory>", reason: reason.isEmpty ? "libjpeg reported an error" : reason)
        }
        defer { unclip_jpeg_free(data) }
        return Data(bytes: data, count: size)
        #else
        throw ImageError.encodeFailed(file: "<memory>", reason: "this build has no JPEG codec (the CJPEGDecode target is missing)")
        #endif
    }

    /// Writes PNG bytes to a file, atomically unless it is a FIFO or a device (`ImageFiles.write`).
    static func writePNG(_ encode: () throws -> Data, to url: URL) throws {
        let data: Data
        do { data = try encode() } catch let ImageError.encodeFailed(_, reason) {
            throw ImageError.encodeFailed(file: url.path, reason: reason)
        }
        try ImageFiles.write(data, to: url)
    }

    /// Writes the image as a PNG file, atomically (a temporary file, then a rename; `ImageFiles.write`).
    public func writePNG(to url: URL) throws {
        try Self.writePNG({ try pngData() }, to: url)
    }
}
