import Foundation
import UnCLIPImage

/// The API's rules for uploaded images: a PNG, less than 4 MB, square; checked on the header before decoding.
enum PNGInput {
    static let maxBytes = 4 << 20

    /// The PNG of form field `field`, decoded with its alpha channel.
    ///
    /// The width and height are read from the IHDR chunk and checked against `maxSide` before libpng allocates
    /// anything, so a "PNG bomb" (a small file declaring huge dimensions) costs nothing.
    static func decode(_ file: FormFile?, field: String, maxSide: Int) throws -> AlphaImage {
        guard let file else {
            throw APIError.invalid(field, "Missing required parameter: '\(field)'.", code: "missing_required_parameter")
        }
        let bytes = file.data
        guard bytes.count < maxBytes, RGBImage.FileFormat.detect(bytes) == .png else {
            throw APIError.invalid(field, "Uploaded image must be a PNG and less than 4 MB.", code: "invalid_image_format")
        }
        guard let (width, height) = dimensions(bytes) else {
            throw APIError.invalid(field, "Invalid input image - the PNG has no valid IHDR header.", code: "invalid_image")
        }
        guard width <= maxSide, height <= maxSide, width > 0, height > 0 else {
            throw APIError.invalid(field, "Invalid input image - \(width)x\(height) is larger than the limit of \(maxSide)x\(maxSide) pixels.", code: "image_too_large")
        }
        guard width == height else {
            throw APIError.invalid(field, "Invalid input image - image must be square, got \(width)x\(height).", code: "invalid_image_dimensions")
        }
        do { return try AlphaImage(data: Data(bytes), name: field) } catch {
            throw APIError.invalid(field, "Invalid input image - \(error).", code: "invalid_image")
        }
    }

    /// Width and height from the IHDR chunk, which the PNG specification puts first, right after the signature.
    static func dimensions(_ bytes: [UInt8]) -> (Int, Int)? {
        guard bytes.count >= 24, Array(bytes[12..<16]) == Array("IHDR".utf8) else { return nil }
        func u32(_ at: Int) -> Int { bytes[at..<at + 4].reduce(0) { $0 << 8 | Int($1) } }
        return (u32(16), u32(20))
    }
}
