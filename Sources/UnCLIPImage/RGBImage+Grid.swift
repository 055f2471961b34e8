extension RGBImage {
    /// Images laid out in rows of `columns`, each in a cell as large as the largest image, separated and
    /// surrounded by `padding` pixels of `background` grey.
    public static func grid(_ images: [RGBImage], columns: Int, padding: Int = 0, background: UInt8 = 255) -> RGBImage {
        precondition(columns > 0 && padding >= 0, "grid: columns \(columns), padding \(padding)")
        guard !images.isEmpty else { return RGBImage(width: 1, height: 1, red: background, green: background, blue: background) }
        let cellW = images.map(\.width).max()!, cellH = images.map(\.height).max()!
        let cols = min(columns, images.count)
        let rows = (images.count + cols - 1) / cols
        let width = cols * cellW + (cols + 1) * padding
        let height = rows * cellH + (rows + 1) * padding
        var out = RGBImage(width: width, height: height, red: background, green: background, blue: background)
        out.pixels.withUnsafeMutableBufferPointer { dst in
            for (k, image) in images.enumerated() {
                let left = padding + (k % cols) * (cellW + padding)
                let top = padding + (k / cols) * (cellH + padding)
                image.pixels.withUnsafeBufferPointer { src in
                    for y in 0..<image.height {
                        let d = ((top + y) * width + left) * 3
                        let s = y * image.width * 3
                        for i in 0..<(image.width * 3) { dst[d + i] = src[s + i] }
                    }
                }
            }
        }
        return out
    }
}
