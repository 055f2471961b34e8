import UnCLIPTensor

// Two bicubic resamplers that reproduce the reference libraries exactly:
//   * Pillow's uint8 BICUBIC (used by CLIP image preprocessing, spec §5.3), bit-exact;
//   * PyTorch's float antialiased bicubic `F.interpolate(..., mode="bicubic", antialias=True)` (used to upsample
//     the decoder output before super-resolution, spec §12.1 step 8), to float rounding.
// Both are separable with the Keys cubic (a = −0.5), stretched by the scale factor when downsampling.

/// Taps of one output index along one axis: the first input index and its weights.
struct ResampleTaps<Weight> {
    var first: [Int]
    var count: [Int]
    /// `maxTaps` weights per output index (unused ones are zero).
    var weights: [Weight]
    var maxTaps: Int
}

// MARK: - Pillow BICUBIC on uint8

/// Pillow's `bicubic_filter` (Keys, a = −0.5), in double.
@inline(__always)
private func pillowBicubic(_ t: Double) -> Double {
    let a = -0.5
    let x = abs(t)
    if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
    if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
    return 0
}

/// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc` (22-bit fixed point).
private func pillowTaps(inSize: Int, outSize: Int) -> ResampleTaps<Int32> {
    let precisionBits = 22
    let scale = Double(inSize) / Double(outSize)
    let filterScale = max(scale, 1)
    let support = 2.0 * filterScale
    let maxTaps = Int(support.rounded(.up)) * 2 + 1
    var taps = ResampleTaps<Int32>(first: [], count: [], weights: [Int32](repeating: 0, count: outSize * maxTaps), maxTaps: maxTaps)
    var k = [Double](repeating: 0, count: maxTaps)
    for i in 0..<outSize {
        let center = (Double(i) + 0.5) * scale
        let ss = 1.0 / filterScale
        // Matches Pillow: C `(int)` truncation toward zero, then clamping.
        let xmin = max(Int(center - support + 0.5), 0)
        let xmax = min(Int(center + support + 0.5), inSize) - xmin
        var total = 0.0
        for x in 0..<xmax {
            let w = pillowBicubic((Double(x + xmin) - center + 0.5) * ss)
            k[x] = w
            total += w
        }
        for x in 0..<xmax {
            let w = total != 0 ? k[x] / total : k[x]
            let fixed = w * Double(1 << precisionBits)
            taps.weights[i * maxTaps + x] = Int32(w < 0 ? (-0.5 + fixed).rounded(.towardZero) : (0.5 + fixed).rounded(.towardZero))
        }
        taps.first.append(xmin)
        taps.count.append(xmax)
    }
    return taps
}

/// Pillow's horizontal pass (`ImagingResampleHorizontal_8bpc`) over a 3-channel image of `rows` rows.
private func pillowHorizontal(_ src: [UInt8], rows: Int, inWidth: Int, outWidth: Int) -> [UInt8] {
    let taps = pillowTaps(inSize: inWidth, outSize: outWidth)
    var out = [UInt8](repeating: 0, count: rows * outWidth * 3)
    src.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { o in
            taps.weights.withUnsafeBufferPointer { k in
                let sp = s.baseAddress!, op = o.baseAddress!, kp = k.baseAddress!
                let firsts = taps.first, counts = taps.count, maxTaps = taps.maxTaps
                parallelFor(rows, grain: max(1, 16_384 / max(outWidth, 1))) { range in
                    for y in range {
                        let line = sp + y * inWidth * 3
                        for x in 0..<outWidth {
                            let first = firsts[x], n = counts[x], w = kp + x * maxTaps
                            var r = 1 << 21, g = 1 << 21, b = 1 << 21
                            for j in 0..<n {
                                let p = line + (first + j) * 3, weight = Int(w[j])
                                r += Int(p[0]) * weight; g += Int(p[1]) * weight; b += Int(p[2]) * weight
                            }
                            let d = op + (y * outWidth + x) * 3
                            d[0] = clip8(r); d[1] = clip8(g); d[2] = clip8(b)
                        }
                    }
                }
            }
        }
    }
    return out
}

/// Pillow's vertical pass (`ImagingResampleVertical_8bpc`) over a 3-channel image `width` pixels wide.
private func pillowVertical(_ src: [UInt8], width: Int, inHeight: Int, outHeight: Int) -> [UInt8] {
    let taps = pillowTaps(inSize: inHeight, outSize: outHeight)
    let rowBytes = width * 3
    var out = [UInt8](repeating: 0, count: outHeight * rowBytes)
    src.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { o in
            taps.weights.withUnsafeBufferPointer { k in
                let sp = s.baseAddress!, op = o.baseAddress!, kp = k.baseAddress!
                parallelFor(outHeight, grain: max(1, 16_384 / max(rowBytes, 1))) { range in
                    for y in range {
                        let first = taps.first[y], n = taps.count[y], w = kp + y * taps.maxTaps
                        let rowsIn = sp + first * rowBytes
                        let d = op + y * rowBytes
                        for i in 0..<rowBytes {
                            var acc = 1 << 21
                            for j in 0..<n { acc += Int(rowsIn[j * rowBytes + i]) * Int(w[j]) }
                            d[i] = clip8(acc)
                        }
                    }
                }
            }
        }
    }
    return out
}

/// Pillow's `clip8`: the 22-bit fixed-point accumulator shifted down and clamped to a byte.
@inline(__always)
private func clip8(_ acc: Int) -> UInt8 { UInt8(truncatingIfNeeded: min(max(acc >> 22, 0), 255)) }

extension RGBImage {
    /// The image resized with Pillow's BICUBIC filter, bit-exactly as `PIL.Image.resize(size, Image.BICUBIC)`.
    ///
    /// Matches Pillow (spec §5.3): a horizontal pass, then a vertical pass, each skipped when that dimension is
    /// unchanged; the intermediate is rounded and clipped to uint8; weights are 22-bit fixed point.
    public func resized(width newWidth: Int, height newHeight: Int) -> RGBImage {
        precondition(newWidth > 0 && newHeight > 0, "resized: target size \(newWidth)x\(newHeight)")
        var buffer = pixels
        var w = width
        if newWidth != width {
            buffer = pillowHorizontal(buffer, rows: height, inWidth: width, outWidth: newWidth)
            w = newWidth
        }
        if newHeight != height {
            buffer = pillowVertical(buffer, width: w, inHeight: height, outHeight: newHeight)
        }
        return RGBImage(width: newWidth, height: newHeight, pixels: buffer)
    }

    /// The image resized (Pillow BICUBIC) so its shorter side is `size`, keeping the aspect ratio.
    ///
    /// Matches transformers' `get_resize_output_image_size` with `shortest_edge`: the longer side becomes
    /// floor(size · long / short).
    public func resized(shorterSide size: Int) -> RGBImage {
        let short = min(width, height), long = max(width, height)
        let newLong = Int(Double(size * long) / Double(short))
        return width <= height ? resized(width: size, height: newLong) : resized(width: newLong, height: size)
    }

    /// The central `width` × `height` region; where the image is smaller, the missing area is black.
    ///
    /// Matches transformers' `center_crop`: top = (H − h) // 2, left = (W − w) // 2 (floor division), zero padding.
    public func centerCropped(width cropWidth: Int, height cropHeight: Int) -> RGBImage {
        let top = Self.floorDiv(height - cropHeight, 2), left = Self.floorDiv(width - cropWidth, 2)
        var out = [UInt8](repeating: 0, count: cropWidth * cropHeight * 3)
        for y in 0..<cropHeight {
            let sy = y + top
            guard sy >= 0, sy < height else { continue }
            for x in 0..<cropWidth {
                let sx = x + left
                guard sx >= 0, sx < width else { continue }
                for c in 0..<3 { out[(y * cropWidth + x) * 3 + c] = pixels[(sy * width + sx) * 3 + c] }
            }
        }
        return RGBImage(width: cropWidth, height: cropHeight, pixels: out)
    }

    private static func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
}

// MARK: - PyTorch antialiased bicubic on Float32

/// PyTorch's `aa_filter` for bicubic: Keys cubic with a = −0.5, in float.
@inline(__always)
private func torchAABicubic(_ t: Float) -> Float {
    let a: Float = -0.5
    let x = abs(t)
    if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
    if x < 2 { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
    return 0
}

/// PyTorch's `_compute_indices_min_size_weights_aa`, including its float/double mix.
private func torchAATaps(inSize: Int, outSize: Int) -> ResampleTaps<Float> {
    // Matches ATen: scale = (float)in / out; support = 2·scale when downsampling, else 2; the centre is computed as
    // float·double and stored as float; the tap bounds are truncated from double.
    let scale = Float(inSize) / Float(outSize)
    let support: Float = scale >= 1 ? 2 * scale : 2
    let invScale: Float = scale >= 1 ? Float(1.0 / Double(scale)) : 1
    let maxTaps = Int(support.rounded(.up)) * 2 + 1
    var taps = ResampleTaps<Float>(first: [], count: [], weights: [Float](repeating: 0, count: outSize * maxTaps), maxTaps: maxTaps)
    for i in 0..<outSize {
        let center = Float(Double(scale) * (Double(i) + 0.5))
        let xmin = max(Int(Double(center - support) + 0.5), 0)
        let xsize = min(max(min(Int(Double(center + support) + 0.5), inSize) - xmin, 0), maxTaps)
        var total: Float = 0
        for j in 0..<xsize {
            let w = torchAABicubic(Float((Double(Float(j + xmin) - center) + 0.5) * Double(invScale)))
            taps.weights[i * maxTaps + j] = w
            total += w
        }
        if total != 0 {
            for j in 0..<xsize { taps.weights[i * maxTaps + j] /= total }
        }
        taps.first.append(xmin)
        taps.count.append(xsize)
    }
    return taps
}

extension Tensor {
    /// The last two axes resized with antialiased bicubic interpolation (forward only, no gradient).
    ///
    /// Matches PyTorch `F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False,
    /// antialias=True)` (spec §12.1 step 8): separable, width pass then height pass, Keys a = −0.5, weights
    /// normalised to sum 1 with out-of-range taps dropped (not clamped). Input NCHW (any rank ≥ 2).
    public func resizedBicubicAntialiased(height outH: Int, width outW: Int) -> Tensor {
        precondition(rank >= 2 && outH > 0 && outW > 0, "resizedBicubicAntialiased: shape \(shape) to \(outH)x\(outW)")
        let inH = shape[rank - 2], inW = shape[rank - 1]
        let planes = count / Swift.max(inH * inW, 1)
        // Width pass: [planes, inH, inW] → [planes, inH, outW].
        let mid = Tensor(uninitializedShape: [planes, inH, outW])
        let tw = torchAATaps(inSize: inW, outSize: outW)
        let src = data, m = mid.data
        // Plain arrays captured by the parallel closure are slow to index; hoist them to locals and pointers.
        let (wFirst, wCount, wMax) = (tw.first, tw.count, tw.maxTaps)
        tw.weights.withUnsafeBufferPointer { weights in
            let k = weights.baseAddress!
            parallelFor(planes * inH, grain: Swift.max(1, 16_384 / Swift.max(outW, 1))) { rows in
                for row in rows {
                    let s = src + row * inW, d = m + row * outW
                    for i in 0..<outW {
                        let first = wFirst[i], n = wCount[i], w = k + i * wMax
                        guard n > 0 else { d[i] = 0; continue }
                        var acc = s[first] * w[0]
                        for j in 1..<n { acc += s[first + j] * w[j] }
                        d[i] = acc
                    }
                }
            }
        }
        // Height pass: [planes, inH, outW] → [planes, outH, outW].
        var outShape = shape
        outShape[rank - 2] = outH
        outShape[rank - 1] = outW
        let out = Tensor(uninitializedShape: outShape)
        let th = torchAATaps(inSize: inH, outSize: outH)
        let o = out.data
        let (hFirst, hCount, hMax) = (th.first, th.count, th.maxTaps)
        th.weights.withUnsafeBufferPointer { weights in
            let k = weights.baseAddress!
            parallelFor(planes * outH, grain: Swift.max(1, 16_384 / Swift.max(outW, 1))) { rows in
                for row in rows {
                    let p = row / outH, i = row % outH
                    let first = hFirst[i], n = hCount[i], w = k + i * hMax
                    let d = o + row * outW
                    let base = m + p * inH * outW
                    guard n > 0 else { d.update(repeating: 0, count: outW); continue }
                    let s0 = base + first * outW
                    for x in 0..<outW { d[x] = s0[x] * w[0] }
                    for j in 1..<n {
                        let weight = w[j]
                        let s = base + (first + j) * outW
                        for x in 0..<outW { d[x] += s[x] * weight }
                    }
                }
            }
        }
        return out
    }
}
