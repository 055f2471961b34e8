import UnCLIPTensor

/// How pixel values map to tensor values.
public enum PixelRange: Sendable {
    /// byte/127.5 − 1: the diffusion models' convention.
    case minusOneToOne
    /// byte/255: the CLIP image processor's convention before normalisation.
    case zeroToOne
}

extension RGBImage {
    /// The image as a [1, 3, H, W] Float32 tensor (NCHW).
    public func tensor(range: PixelRange = .minusOneToOne) -> Tensor {
        let t = Tensor(uninitializedShape: [1, 3, height, width])
        writePlanes(to: t.data, range: range)
        return t
    }

    /// Images of one size stacked into a [N, 3, H, W] tensor.
    public static func batch(_ images: [RGBImage], range: PixelRange = .minusOneToOne) throws -> Tensor {
        guard let first = images.first else { throw ImageError.invalidTensor(detail: "cannot batch zero images") }
        for (i, image) in images.enumerated() where image.width != first.width || image.height != first.height {
            throw ImageError.invalidTensor(detail: "image \(i) is \(image.width)x\(image.height), image 0 is \(first.width)x\(first.height)")
        }
        let out = Tensor(uninitializedShape: [images.count, 3, first.height, first.width])
        let stride = 3 * first.height * first.width
        for (i, image) in images.enumerated() { image.writePlanes(to: out.data + i * stride, range: range) }
        return out
    }

    /// Writes the three channel planes [3, H, W] of the image to `dst`.
    private func writePlanes(to dst: UnsafeMutablePointer<Float>, range: PixelRange) {
        let plane = width * height
        pixels.withUnsafeBufferPointer { src in
            for c in 0..<3 {
                let base = dst + c * plane
                // Matches torchvision/diffusers: x / 127.5 − 1 and x / 255, each a separately rounded float op.
                switch range {
                case .minusOneToOne: for i in 0..<plane { base[i] = Float(src[3 * i + c]) / 127.5 - 1 }
                case .zeroToOne: for i in 0..<plane { base[i] = Float(src[3 * i + c]) / 255 }
                }
            }
        }
    }

    /// An image from a [1, 3, H, W] or [3, H, W] tensor.
    ///
    /// Matches diffusers' post-processing: clamp(x·0.5 + 0.5, 0, 1) (for `.minusOneToOne`), then
    /// round(v·255) with ties to even as NumPy's `round` does.
    public init(tensor: Tensor, range: PixelRange = .minusOneToOne) throws {
        let shape = tensor.shape
        guard (shape.count == 4 && shape[0] == 1 && shape[1] == 3) || (shape.count == 3 && shape[0] == 3) else {
            throw ImageError.invalidTensor(detail: "expected shape [1, 3, H, W] or [3, H, W], found \(shape)")
        }
        self = Self.fromPlanes(tensor.data, height: shape[shape.count - 2], width: shape[shape.count - 1], range: range)
    }

    /// One image per batch entry of a [N, 3, H, W] tensor.
    public static func images(from tensor: Tensor, range: PixelRange = .minusOneToOne) throws -> [RGBImage] {
        let shape = tensor.shape
        guard shape.count == 4, shape[1] == 3 else {
            throw ImageError.invalidTensor(detail: "expected shape [N, 3, H, W], found \(shape)")
        }
        let (h, w) = (shape[2], shape[3])
        return (0..<shape[0]).map { fromPlanes(tensor.data + $0 * 3 * h * w, height: h, width: w, range: range) }
    }

    private static func fromPlanes(_ src: UnsafeMutablePointer<Float>, height: Int, width: Int, range: PixelRange) -> RGBImage {
        let plane = width * height
        var out = [UInt8](repeating: 0, count: plane * 3)
        for i in 0..<plane {
            for c in 0..<3 {
                var v = src[c * plane + i]
                if range == .minusOneToOne { v = v * 0.5 + 0.5 }
                // NaN has no defined byte in the reference (NumPy's cast of NaN is undefined); map it to 0.
                v = v.isNaN ? 0 : min(max(v, 0), 1)
                out[3 * i + c] = UInt8((v * 255).rounded(.toNearestOrEven))
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }
}
