import Foundation
import UnCLIPNN
import UnCLIPImage

/// transformers' `CLIPImageProcessor` (`feature_extractor/preprocessor_config.json`): image → pixel_values.
///
/// Matches the Pillow backend (spec §5.3): Pillow-exact bicubic resize of the shorter side on uint8, centre crop,
/// rescale by 1/255 and per-channel normalisation.
public struct CLIPImageProcessor: Sendable {
    public var shortestEdge = 224
    public var cropHeight = 224
    public var cropWidth = 224
    public var mean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    public var std: [Float] = [0.26862954, 0.26130258, 0.27577711]
    public var rescaleFactor: Float = 1 / 255

    public init() {}

    /// Reads `preprocessor_config.json`; absent keys keep the CLIP defaults.
    public init(configURL url: URL) throws {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any] else {
            throw ConfigurationFileError(path: url.path, reason: "not a readable JSON object")
        }
        func int(_ v: Any?) -> Int? { (v as? NSNumber)?.intValue }
        if let size = object["size"] as? [String: Any] {
            if let s = int(size["shortest_edge"]) { shortestEdge = s }
        } else if let s = int(object["size"]) { shortestEdge = s }
        if let crop = object["crop_size"] as? [String: Any] {
            cropHeight = int(crop["height"]) ?? cropHeight
            cropWidth = int(crop["width"]) ?? cropWidth
        } else if let c = int(object["crop_size"]) { cropHeight = c; cropWidth = c }
        if let m = object["image_mean"] as? [NSNumber], m.count == 3 { mean = m.map(\.floatValue) }
        if let s = object["image_std"] as? [NSNumber], s.count == 3 { std = s.map(\.floatValue) }
        if let r = object["rescale_factor"] as? NSNumber { rescaleFactor = r.floatValue }
        if let resample = int(object["resample"]), resample != 3 {
            throw UnsupportedConfiguration(component: "CLIPImageProcessor", option: "resample", value: "\(resample)", supported: ["3 (bicubic)"])
        }
        do { try validate() } catch { throw ConfigurationFileError(path: url.path, reason: "\(error)") }
    }

    /// Sizes an image can be resized and cropped to, and a normalisation that cannot divide by zero.
    public func validate() throws {
        let check = ConfigurationChecks(component: "CLIPImageProcessor")
        try check.size(shortestEdge, "size.shortest_edge", max: ConfigurationLimits.sampleSize)
        try check.require((1...shortestEdge).contains(cropHeight), "crop_size.height", cropHeight, "1 … size.shortest_edge (\(shortestEdge))")
        try check.require((1...shortestEdge).contains(cropWidth), "crop_size.width", cropWidth, "1 … size.shortest_edge (\(shortestEdge))")
        try check.require(std.allSatisfy { $0.isFinite && $0 != 0 }, "image_std", std, "finite, non-zero numbers")
        try check.require(mean.allSatisfy(\.isFinite), "image_mean", mean, "finite numbers")
        try check.require(rescaleFactor.isFinite && rescaleFactor > 0, "rescale_factor", rescaleFactor, "a finite number > 0")
    }

    /// Images → pixel_values [N, 3, cropHeight, cropWidth].
    public func callAsFunction(_ images: [RGBImage]) -> Tensor {
        let plane = cropHeight * cropWidth
        var values = [Float](repeating: 0, count: images.count * 3 * plane)
        for (n, image) in images.enumerated() {
            let prepared = image.resized(shorterSide: shortestEdge).centerCropped(width: cropWidth, height: cropHeight)
            for i in 0..<plane {
                for c in 0..<3 {
                    // Matches transformers: rescale in float32 first, then (x − mean) / std.
                    let x = Float(prepared.pixels[i * 3 + c]) * rescaleFactor
                    values[(n * 3 + c) * plane + i] = (x - mean[c]) / std[c]
                }
            }
        }
        return Tensor(shape: [images.count, 3, cropHeight, cropWidth], values)
    }
}
