extension RGBImage {
    /// Pixels between a picture and the line of text under it.
    static let labelGap = 2
    /// Pixels of background around a caption's text.
    static let captionMargin = 2

    /// Images in a grid, as `grid(_:columns:padding:background:)` lays them out, each with its label centred
    /// under it in the standard bitmap font, and an optional title line across the top.
    ///
    /// Every cell is as wide as the widest image and as tall as the tallest plus, when any label is non-empty,
    /// `labelGap + BitmapFont.standard.cellHeight` (2 + 13) pixels for one line of label; images sit at the top of
    /// their cell, centred across it. A label longer than the cell is cut and ended with "…" (one line keeps
    /// every row of the grid the same height); an empty label leaves its strip blank. A non-empty title adds
    /// `padding + cellHeight` pixels at the top and is centred, cut the same way to the grid's width less the
    /// padding. Text is black on a light `background` (128 or more) and white on a dark one.
    ///
    /// - Precondition: `labels.count == images.count`, `columns > 0`, `padding >= 0`.
    public static func labelledGrid(_ images: [RGBImage], labels: [String], columns: Int, padding: Int = 4,
                                    title: String? = nil, background: UInt8 = 255) -> RGBImage {
        precondition(labels.count == images.count, "labelledGrid: \(labels.count) labels for \(images.count) images")
        precondition(columns > 0 && padding >= 0, "labelledGrid: columns \(columns), padding \(padding)")
        let font = BitmapFont.standard
        let ink = textColor(on: background)
        var cells: [RGBImage] = []
        if !images.isEmpty {
            let cellW = images.map(\.width).max()!, cellH = images.map(\.height).max()!
            let labelH = labels.contains(where: { !$0.isEmpty }) ? labelGap + font.cellHeight : 0
            for (image, label) in zip(images, labels) {
                var cell = RGBImage(width: cellW, height: cellH + labelH, red: background, green: background, blue: background)
                cell.paste(image, x: (cellW - image.width) / 2, y: 0)
                let text = font.truncated(label, toWidth: cellW)
                cell.draw(text: text, x: (cellW - font.width(of: text)) / 2, y: cellH + labelGap, color: ink, font: font)
                cells.append(cell)
            }
        }
        let body = grid(cells, columns: columns, padding: padding, background: background)
        guard let title, !title.isEmpty else { return body }

        let titleH = padding + font.cellHeight
        var out = RGBImage(width: body.width, height: titleH + body.height, red: background, green: background, blue: background)
        out.paste(body, x: 0, y: titleH)
        let text = font.truncated(title, toWidth: body.width - 2 * padding)
        out.draw(text: text, x: (body.width - font.width(of: text)) / 2, y: padding, color: ink, font: font)
        return out
    }

    /// The image with a strip of `background` under it holding `text` in the standard bitmap font, centred,
    /// wrapped at spaces to the image's width (less a 2-pixel margin each side); the strip is as tall as the
    /// lines need plus the margins. Empty text gives the image unchanged.
    public func withCaption(_ text: String, background: UInt8 = 255) -> RGBImage {
        guard !text.isEmpty else { return self }
        let font = BitmapFont.standard
        let margin = Self.captionMargin
        let lines = font.wrapped(text, toWidth: width - 2 * margin)
        var out = RGBImage(width: width, height: height + lines.count * font.cellHeight + 2 * margin,
                           red: background, green: background, blue: background)
        out.paste(self, x: 0, y: 0)
        let ink = Self.textColor(on: background)
        for (k, line) in lines.enumerated() {
            out.draw(text: line, x: (width - font.width(of: line)) / 2, y: height + margin + k * font.cellHeight,
                     color: ink, font: font)
        }
        return out
    }

    /// Black text on a light background, white on a dark one.
    static func textColor(on background: UInt8) -> (red: UInt8, green: UInt8, blue: UInt8) {
        background >= 128 ? (0, 0, 0) : (255, 255, 255)
    }

    /// Copies `image` into this one with its top-left corner at (`x`, `y`), clipped to this image.
    mutating func paste(_ image: RGBImage, x: Int, y: Int) {
        let x0 = max(0, x), x1 = min(width, x + image.width)
        let y0 = max(0, y), y1 = min(height, y + image.height)
        guard x0 < x1, y0 < y1 else { return }
        let (dstWidth, srcWidth) = (width, image.width)
        pixels.withUnsafeMutableBufferPointer { dst in
            image.pixels.withUnsafeBufferPointer { src in
                for row in y0..<y1 {
                    let d = (row * dstWidth + x0) * 3
                    let s = ((row - y) * srcWidth + (x0 - x)) * 3
                    for i in 0..<((x1 - x0) * 3) { dst[d + i] = src[s + i] }
                }
            }
        }
    }
}
