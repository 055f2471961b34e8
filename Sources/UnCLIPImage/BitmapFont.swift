/// A fixed-width bitmap font: anti-aliased glyphs in cells of one size, for labels drawn onto images.
///
/// Every character advances by `cellWidth` pixels and a line is `cellHeight` pixels tall, so text measures by
/// counting characters. A character the font lacks is drawn as "?".
public struct BitmapFont: Sendable {
    /// Horizontal advance of every character, in pixels at scale 1.
    public let cellWidth: Int
    /// Height of one line of text, in pixels at scale 1 (blank rows above and below the ink included).
    public let cellHeight: Int
    /// The row within a cell just below the baseline: letters without descenders end above it.
    public let baseline: Int
    /// Ink coverage 0…255 of each glyph: `cellWidth · cellHeight` bytes, top row first.
    private let glyphs: [Character: [UInt8]]

    /// DejaVu Sans Mono at 11 pixels, 7 × 13 cells: printable ASCII, θ, η and "…"
    /// (made by Scripts/make_bitmap_font.py).
    public static let standard = BitmapFont(cellWidth: standardCellWidth, cellHeight: standardCellHeight,
                                            baseline: standardBaseline, table: standardGlyphs)

    /// A font from rows of hexadecimal coverage digits ("." for none), as written by Scripts/make_bitmap_font.py;
    /// the table is compiled in, so a malformed entry is a programming error.
    init(cellWidth: Int, cellHeight: Int, baseline: Int, table: [(Character, String)]) {
        self.cellWidth = cellWidth
        self.cellHeight = cellHeight
        self.baseline = baseline
        var glyphs: [Character: [UInt8]] = [:]
        for (character, rows) in table {
            let digits = rows.filter { $0 != " " }
            precondition(digits.count == cellWidth * cellHeight, "BitmapFont: glyph \(character) has \(digits.count) pixels")
            glyphs[character] = digits.map { $0 == "." ? 0 : UInt8($0.hexDigitValue!) * 17 }  // 0…15 → 0…255
        }
        precondition(glyphs["?"] != nil, "BitmapFont: the table needs a '?' for missing characters")
        self.glyphs = glyphs
    }

    /// The characters the font draws (others are drawn as "?").
    public var characters: Set<Character> { Set(glyphs.keys) }

    /// Whether the font has a glyph for `character`.
    public func contains(_ character: Character) -> Bool { glyphs[character] != nil }

    /// The coverage of the glyph drawn for `character` ("?"'s when the font lacks it), `cellWidth · cellHeight`
    /// bytes 0…255, top row first.
    public func coverage(of character: Character) -> [UInt8] { glyphs[character] ?? glyphs["?"]! }

    /// The width in pixels of `text` drawn at `scale`: its longest line's character count times the advance.
    public func width(of text: String, scale: Int = 1) -> Int {
        let longest = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map(\.count).max() ?? 0
        return longest * cellWidth * scale
    }

    /// The height in pixels of `text` drawn at `scale`: one line per line break plus one.
    public func height(of text: String, scale: Int = 1) -> Int {
        (text.filter(\.isNewline).count + 1) * cellHeight * scale
    }

    /// `text` as one line (line breaks become spaces) that fits `maxWidth` pixels at `scale`: unchanged when it
    /// fits, otherwise cut and ended with "…"; empty when not even one character fits.
    public func truncated(_ text: String, toWidth maxWidth: Int, scale: Int = 1) -> String {
        let line = String(text.map { $0.isNewline ? " " : $0 })
        let fit = max(0, maxWidth / (cellWidth * scale))
        if line.count <= fit { return line }
        if fit == 0 { return "" }
        var kept = line.prefix(fit - 1)
        while kept.last == " " { kept = kept.dropLast() }  // "a red …" reads worse than "a red…"
        return String(kept) + "…"
    }

    /// `text` broken into lines that fit `maxWidth` pixels at `scale`: greedily at spaces, a word longer than a
    /// line split across lines, existing line breaks kept. At least one character goes on each line, even when
    /// `maxWidth` is narrower than one cell.
    public func wrapped(_ text: String, toWidth maxWidth: Int, scale: Int = 1) -> [String] {
        let fit = max(1, maxWidth / (cellWidth * scale))
        var lines: [String] = []
        for paragraph in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            var line = ""
            for word in paragraph.split(separator: " ") {
                var word = word
                if !line.isEmpty {
                    if line.count + 1 + word.count <= fit { line += " " + word; continue }
                    lines.append(line)
                    line = ""
                }
                while word.count > fit {
                    lines.append(String(word.prefix(fit)))
                    word = word.dropFirst(fit)
                }
                line = String(word)
            }
            lines.append(line)
        }
        return lines
    }
}

extension RGBImage {
    /// Draws `text` with its first cell's top-left corner at (`x`, `y`), each font pixel a `scale` × `scale`
    /// block blended into the image by its coverage; a line break starts a new line below. Pixels that fall
    /// outside the image are skipped, and only pixels inside the text's box
    /// (`font.width(of: text, scale:)` × `font.height(of: text, scale:)`) change.
    public mutating func draw(text: String, x: Int, y: Int, color: (red: UInt8, green: UInt8, blue: UInt8) = (0, 0, 0),
                              scale: Int = 1, font: BitmapFont = .standard) {
        precondition(scale > 0, "draw(text:): scale \(scale)")
        let ink = [UInt16(color.red), UInt16(color.green), UInt16(color.blue)]
        let (imageWidth, imageHeight) = (width, height)
        var left = x, top = y
        pixels.withUnsafeMutableBufferPointer { dst in
            for character in text {
                if character.isNewline { left = x; top += font.cellHeight * scale; continue }
                let glyph = font.coverage(of: character)
                defer { left += font.cellWidth * scale }
                // Skip cells wholly outside the image.
                if left >= imageWidth || top >= imageHeight || left + font.cellWidth * scale <= 0
                    || top + font.cellHeight * scale <= 0 { continue }
                for gy in 0..<font.cellHeight {
                    for gx in 0..<font.cellWidth {
                        let a = UInt16(glyph[gy * font.cellWidth + gx])
                        if a == 0 { continue }
                        for py in (top + gy * scale)..<(top + (gy + 1) * scale) where py >= 0 && py < imageHeight {
                            for px in (left + gx * scale)..<(left + (gx + 1) * scale) where px >= 0 && px < imageWidth {
                                let i = (py * imageWidth + px) * 3
                                for c in 0..<3 {
                                    // Rounded (background · (255 − a) + ink · a) / 255.
                                    let blended = (UInt16(dst[i + c]) * (255 - a) + ink[c] * a + 127) / 255
                                    dst[i + c] = UInt8(blended)
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
