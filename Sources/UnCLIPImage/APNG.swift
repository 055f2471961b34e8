import CZlib
import Foundation

// An animated PNG (APNG, https://wiki.mozilla.org/APNG_Specification) is a PNG whose default image is frame 0:
// signature, IHDR, acTL (frame count, loop count), then per frame an fcTL (size, offset, delay) followed by its
// pixels — IDAT for frame 0, so that any PNG reader shows it, fdAT (IDAT data behind a sequence number) for the
// rest — and IEND. fcTL and fdAT share one sequence counter starting at 0. libpng (without the APNG patch) cannot
// write these chunks, so they are written here and only deflate and CRC-32 come from zlib.

extension RGBImage {
    /// Encodes `frames` as an animated PNG (8-bit RGB), each frame shown for `frameDelay` seconds, the whole
    /// animation played `loops` times (0: forever). Readers without APNG support show the first frame.
    ///
    /// The delay is stored as the closest fraction with 16-bit numerator and denominator (1/30 s exactly).
    /// Throws `ImageError.encodeFailed` for no frames, frames of different sizes, an empty frame, a delay that is
    /// negative, not finite or over 65535 s, or a negative loop count.
    public static func animatedPNGData(_ frames: [RGBImage], frameDelay: Double, loops: Int = 0) throws -> Data {
        try animatedPNGBytes(frames, frameDelay: frameDelay, loops: loops, name: "<memory>")
    }

    /// Writes `frames` as an animated PNG file, atomically (a temporary file, then a rename); see
    /// `animatedPNGData(_:frameDelay:loops:)`.
    public static func writeAnimatedPNG(_ frames: [RGBImage], to url: URL, frameDelay: Double, loops: Int = 0) throws {
        let data = try animatedPNGBytes(frames, frameDelay: frameDelay, loops: loops, name: url.path)
        try ImageFiles.write(data, to: url)
    }

    private static func animatedPNGBytes(_ frames: [RGBImage], frameDelay: Double, loops: Int, name: String) throws -> Data {
        func fail(_ reason: String) -> ImageError { .encodeFailed(file: name, reason: reason) }
        guard let first = frames.first else { throw fail("an animation needs at least one frame, got none") }
        guard first.width > 0, first.height > 0 else { throw fail("frame 0 is \(first.width)x\(first.height)") }
        if let k = frames.firstIndex(where: { $0.width != first.width || $0.height != first.height }) {
            throw fail("frame \(k) is \(frames[k].width)x\(frames[k].height) but frame 0 is \(first.width)x\(first.height); "
                       + "all frames must be the same size")
        }
        guard frameDelay.isFinite, frameDelay >= 0, frameDelay <= 65535 else {
            throw fail("frame delay \(frameDelay) s is not between 0 and 65535 seconds")
        }
        guard loops >= 0, loops <= Int(UInt32.max) else { throw fail("loop count \(loops) is not between 0 and \(UInt32.max)") }
        guard frames.count <= Int(UInt32.max) else { throw fail("\(frames.count) frames is more than APNG allows") }
        let (delayNumerator, delayDenominator) = delayFraction(seconds: frameDelay)

        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var header = ByteWriter()
        header.u32(first.width); header.u32(first.height)
        header.bytes([8, 2, 0, 0, 0])  // bit depth 8, colour type 2 (RGB), deflate, adaptive filtering, no interlace
        try appendChunk("IHDR", header.data, to: &png, name: name)

        var control = ByteWriter()
        control.u32(frames.count); control.u32(loops)
        try appendChunk("acTL", control.data, to: &png, name: name)

        var sequence = 0
        for (k, frame) in frames.enumerated() {
            var fcTL = ByteWriter()
            fcTL.u32(sequence); sequence += 1
            fcTL.u32(frame.width); fcTL.u32(frame.height)
            fcTL.u32(0); fcTL.u32(0)  // x, y offset: every frame covers the whole canvas
            fcTL.u16(delayNumerator); fcTL.u16(delayDenominator)
            fcTL.bytes([0, 0])  // dispose_op NONE, blend_op SOURCE: each frame replaces the last outright
            try appendChunk("fcTL", fcTL.data, to: &png, name: name)

            let compressed = try deflate(filteredScanlines(frame), name: name)
            if k == 0 {
                try appendChunk("IDAT", compressed, to: &png, name: name)
            } else {
                var fdAT = ByteWriter()
                fdAT.u32(sequence); sequence += 1
                fdAT.bytes(compressed)
                try appendChunk("fdAT", fdAT.data, to: &png, name: name)
            }
        }
        try appendChunk("IEND", [], to: &png, name: name)
        return Data(png)
    }

    /// The fraction closest to `seconds` with numerator and denominator in 1…65535 (numerator 0 for 0), the
    /// smallest denominator among equals, so 0.1 is 1/10 and 1/30 is 1/30.
    static func delayFraction(seconds: Double) -> (numerator: Int, denominator: Int) {
        if seconds == 0 { return (0, 1) }
        var best = (numerator: 0, denominator: 1), bestError = Double.infinity
        for denominator in 1...65535 {
            let numerator = (seconds * Double(denominator)).rounded()
            if numerator > 65535 { break }
            let error = abs(numerator / Double(denominator) - seconds)
            if error < bestError { best = (Int(numerator), denominator); bestError = error }
            if bestError <= seconds * 1e-12 { break }
        }
        return best
    }

    /// The image's rows, each behind its PNG filter-type byte, filtered with whichever of the five filters gives
    /// the smallest sum of absolute (signed) residuals: the heuristic the PNG specification recommends and
    /// libpng uses.
    static func filteredScanlines(_ image: RGBImage) -> [UInt8] {
        let stride = image.width * 3, bpp = 3
        var out = [UInt8](repeating: 0, count: image.height * (stride + 1))
        var candidate = [[UInt8]](repeating: [UInt8](repeating: 0, count: stride), count: 5)
        image.pixels.withUnsafeBufferPointer { px in
            for y in 0..<image.height {
                let row = px.baseAddress! + y * stride
                var bestFilter = 0, bestCost = Int.max
                for filter in 0..<5 {
                    var cost = 0
                    candidate[filter].withUnsafeMutableBufferPointer { c in
                        for i in 0..<stride {
                            let x = row[i]
                            let a = i >= bpp ? row[i - bpp] : 0
                            let b = y > 0 ? row[i - stride] : 0
                            let cc = i >= bpp && y > 0 ? row[i - stride - bpp] : 0
                            let predicted: UInt8
                            switch filter {
                            case 0: predicted = 0
                            case 1: predicted = a
                            case 2: predicted = b
                            case 3: predicted = UInt8((Int(a) + Int(b)) / 2)
                            default: predicted = paeth(a, b, cc)
                            }
                            let r = x &- predicted
                            c[i] = r
                            cost += r < 128 ? Int(r) : 256 - Int(r)
                        }
                    }
                    if cost < bestCost { bestCost = cost; bestFilter = filter }
                }
                let o = y * (stride + 1)
                out[o] = UInt8(bestFilter)
                for i in 0..<stride { out[o + 1 + i] = candidate[bestFilter][i] }
            }
        }
        return out
    }

    /// The PNG Paeth predictor: whichever of left, up and up-left is nearest to left + up − up-left.
    @inline(__always)
    static func paeth(_ a: UInt8, _ b: UInt8, _ c: UInt8) -> UInt8 {
        let p = Int(a) + Int(b) - Int(c)
        let pa = abs(p - Int(a)), pb = abs(p - Int(b)), pc = abs(p - Int(c))
        if pa <= pb && pa <= pc { return a }
        return pb <= pc ? b : c
    }

    /// A zlib stream of `bytes` (what IDAT and fdAT hold).
    private static func deflate(_ bytes: [UInt8], name: String) throws -> [UInt8] {
        var size = compressBound(uLong(bytes.count))
        var out = [UInt8](repeating: 0, count: Int(size))
        let status = out.withUnsafeMutableBufferPointer { dst in
            bytes.withUnsafeBufferPointer { src in
                compress2(dst.baseAddress, &size, src.baseAddress, uLong(bytes.count), Z_DEFAULT_COMPRESSION)
            }
        }
        guard status == Z_OK else { throw ImageError.encodeFailed(file: name, reason: "zlib compress2 returned \(status)") }
        return Array(out.prefix(Int(size)))
    }

    /// Appends one chunk: length, type, data, CRC-32 of type and data.
    private static func appendChunk(_ type: String, _ data: [UInt8], to png: inout [UInt8], name: String) throws {
        guard data.count <= Int(Int32.max) else {
            throw ImageError.encodeFailed(file: name, reason: "a \(type) chunk of \(data.count) bytes is over PNG's limit")
        }
        var chunk = ByteWriter()
        chunk.u32(data.count)
        let typeAndData = Array(type.utf8) + data
        chunk.bytes(typeAndData)
        let crc = typeAndData.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
        chunk.u32(Int(crc))
        png += chunk.data
    }
}

/// Big-endian bytes, as PNG stores its integers.
private struct ByteWriter {
    var data: [UInt8] = []
    mutating func u32(_ v: Int) { data += [UInt8(truncatingIfNeeded: v >> 24), UInt8(truncatingIfNeeded: v >> 16),
                                           UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
    mutating func u16(_ v: Int) { data += [UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)] }
    mutating func bytes(_ b: [UInt8]) { data += b }
}
