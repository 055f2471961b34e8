import UnCLIPImage

/// A reason a ShapesWorld image or data set could not be made.
public enum ShapesWorldError: Error, CustomStringConvertible, Equatable {
    /// A resolution that is not the canvas divided by a whole factor.
    case unsupportedResolution(Int)
    /// An image whose sides are not divisible by the downsampling factor.
    case notDivisible(width: Int, height: Int, factor: Int)
    /// A negative or otherwise unusable count.
    case invalidCount(Int)
    /// The output could not be written.
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unsupportedResolution(r):
            return "ShapesWorld resolution \(r) is neither 128 divided by a whole number (128, 64, 32, 16, ...) nor 128 times 2, 4 or 8 (256, 512, 1024)"
        case let .notDivisible(w, h, f): return "cannot box-downsample a \(w)x\(h) image by \(f): the sides must be multiples of \(f)"
        case let .invalidCount(n): return "ShapesWorld count \(n) must be at least 1"
        case let .io(path, reason): return "\(path): \(reason)"
        }
    }
}

/// Anti-aliased coverage of one shape on a pixel grid.
public enum ShapeRaster {
    /// Covered sample counts (each out of `samples²`) of the pixels `xs` × `ys` (row-major) of an image whose pixel
    /// (x, y) spans the canvas region [x·scaleX, (x+1)·scaleX) × [y·scaleY, (y+1)·scaleY).
    ///
    /// Samples sit at the centres of a `samples` × `samples` grid inside each pixel.
    public static func coverage(shape: ShapeKind, size s: Double, cx: Double, cy: Double,
                                xs: Range<Int>, ys: Range<Int>, scaleX: Double = 1, scaleY: Double = 1,
                                samples: Int = 4) -> [Int] {
        var out = [Int](repeating: 0, count: xs.count * ys.count)
        let step = 1.0 / Double(samples)
        // Sample offsets relative to the centre along each axis, hoisted out of the pixel loop.
        var dxs = [Double](repeating: 0, count: xs.count * samples)
        for (i, x) in xs.enumerated() {
            for k in 0..<samples { dxs[i * samples + k] = (Double(x) + (Double(k) + 0.5) * step) * scaleX - cx }
        }
        var i = 0
        for y in ys {
            for j in 0..<xs.count {
                var hits = 0
                for ky in 0..<samples {
                    let dy = (Double(y) + (Double(ky) + 0.5) * step) * scaleY - cy
                    for kx in 0..<samples where shape.contains(dx: dxs[j * samples + kx], dy: dy, size: s) { hits += 1 }
                }
                out[i] = hits
                i += 1
            }
        }
        return out
    }
}

extension ShapesWorld {
    /// The scene drawn on the 128 × 128 canvas: white background, each object's fill blended by its coverage
    /// (4 × 4 supersampling).
    public static func render(_ scene: Scene) -> RGBImage { render(scene, scale: 1) }

    /// The scene drawn at `scale` pixels per canvas unit (1: the 128 × 128 canvas; 4: 512 × 512, each pixel's
    /// coverage sampled 4 × 4 within the pixel, so edges stay one pixel wide at every scale).
    static func render(_ scene: Scene, scale k: Int) -> RGBImage {
        let n = canvasSize * k, step = 1 / Double(k)
        var pixels = [UInt8](repeating: 255, count: n * n * 3)
        for object in scene.objects {
            let h = object.s / 2
            // Pixels touched by the bounding box; the box lies in [4, 124] canvas units, so these ranges stay on the image.
            let x0 = max(0, Int(((object.cx - h) * Double(k)).rounded(.down))), x1 = min(n, Int(((object.cx + h) * Double(k)).rounded(.up)))
            let y0 = max(0, Int(((object.cy - h) * Double(k)).rounded(.down))), y1 = min(n, Int(((object.cy + h) * Double(k)).rounded(.up)))
            let hits = ShapeRaster.coverage(shape: object.shape, size: object.s, cx: object.cx, cy: object.cy,
                                            xs: x0..<x1, ys: y0..<y1, scaleX: step, scaleY: step, samples: 4)
            let fill = object.color.rgb
            let rgb = [Int(fill.r), Int(fill.g), Int(fill.b)]
            var i = 0
            for y in y0..<y1 {
                for x in x0..<x1 {
                    let c = hits[i]
                    i += 1
                    guard c > 0 else { continue }
                    // Objects never share a pixel (≥ 6 px apart), so blending over white is blending over the canvas.
                    let p = (y * n + x) * 3
                    for ch in 0..<3 { pixels[p + ch] = UInt8((255 * (16 - c) + rgb[ch] * c + 8) / 16) }
                }
            }
        }
        return RGBImage(width: n, height: n, pixels: pixels)
    }

    /// The sides `render(_:size:)` draws: 128 divided by a whole number (the 128 × 128 render, box-downsampled, as
    /// the spec prescribes for lower resolutions), or 128 times 2, 4 or 8 (drawn at that scale).
    public static func supportsResolution(_ size: Int) -> Bool {
        size > 0 && (size <= canvasSize ? canvasSize % size == 0 : size % canvasSize == 0 && [2, 4, 8].contains(size / canvasSize))
    }

    /// The scene at `size` × `size`: the 128 × 128 render, box-downsampled when `size` is smaller; drawn directly at
    /// 256, 512 or 1024 (the upsamplers' targets).
    public static func render(_ scene: Scene, size: Int) throws -> RGBImage {
        guard supportsResolution(size) else { throw ShapesWorldError.unsupportedResolution(size) }
        if size > canvasSize { return render(scene, scale: size / canvasSize) }
        let full = render(scene)
        return size == canvasSize ? full : try full.boxDownsampled(factor: canvasSize / size)
    }
}

extension RGBImage {
    /// The image shrunk by a whole `factor` with a box filter: each output pixel is the rounded mean of its
    /// `factor` × `factor` input block (area averaging, as spec §"Canvas" prescribes for lower resolutions).
    public func boxDownsampled(factor: Int) throws -> RGBImage {
        guard factor >= 1, width % factor == 0, height % factor == 0 else {
            throw ShapesWorldError.notDivisible(width: width, height: height, factor: factor)
        }
        if factor == 1 { return self }
        let ow = width / factor, oh = height / factor, area = factor * factor
        var out = [UInt8](repeating: 0, count: ow * oh * 3)
        pixels.withUnsafeBufferPointer { src in
            var sums = [Int](repeating: 0, count: ow * 3)
            for oy in 0..<oh {
                for i in sums.indices { sums[i] = 0 }
                for y in (oy * factor)..<((oy + 1) * factor) {
                    let row = y * width * 3
                    for x in 0..<width {
                        let o = (x / factor) * 3, p = row + x * 3
                        sums[o] += Int(src[p]); sums[o + 1] += Int(src[p + 1]); sums[o + 2] += Int(src[p + 2])
                    }
                }
                for i in 0..<(ow * 3) { out[oy * ow * 3 + i] = UInt8((sums[i] + area / 2) / area) }
            }
        }
        return RGBImage(width: ow, height: oh, pixels: out)
    }
}
