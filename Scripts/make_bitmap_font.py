#!/usr/bin/env python3
"""Writes Sources/UnCLIPImage/BitmapFont+Glyphs.swift: the glyphs of `BitmapFont.standard`.

Rasterises printable ASCII (32…126), the Greek θ and η (for labels such as "η = 0" or "θ") and the ellipsis "…"
(which marks truncated labels) from DejaVu Sans Mono with Pillow, anti-aliased, at 11 pixels: every glyph then
fits a 7 × 13 cell. Coverage is kept at 16 levels, one hexadecimal digit per pixel ("." for none), one line of
the generated file per glyph, so the table stays small and a diff of a regenerated file stays readable.

Licence: DejaVu fonts are under the Bitstream Vera licence (DejaVu changes are in the public domain), which
permits reproducing and distributing the Font Software, modified or not, as long as the copyright and permission
notice travels with it and a modified font is not called "Bitstream" or "Vera". The generated file carries the
notice verbatim.

    python3 Scripts/make_bitmap_font.py   # needs Pillow and fonts-dejavu-core
"""
import os

import PIL
from PIL import Image, ImageDraw, ImageFont, features

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
PIXEL_SIZE = 11
CELL_WIDTH = 7
CELL_HEIGHT = 13
OUT = os.path.join(os.path.dirname(__file__), "..", "Sources", "UnCLIPImage", "BitmapFont+Glyphs.swift")

CHARACTERS = [chr(c) for c in range(32, 127)] + ["θ", "η", "…"]

NOTICE = """\
Copyright (c) 2003 by Bitstream, Inc. All Rights Reserved.
Bitstream Vera is a trademark of Bitstream, Inc.
DejaVu changes are in public domain.

Permission is hereby granted, free of charge, to any person obtaining a copy
of the fonts accompanying this license ("Fonts") and associated
documentation files (the "Font Software"), to reproduce and distribute the
Font Software, including without limitation the rights to use, copy, merge,
publish, distribute, and/or sell copies of the Font Software, and to permit
persons to whom the Font Software is furnished to do so, subject to the
following conditions:

The above copyright and trademark notices and this permission notice shall
be included in all copies of one or more of the Font Software typefaces.

The Font Software may be modified, altered, or added to, and in particular
the designs of glyphs or characters in the Fonts may be modified and
additional glyphs or characters may be added to the Fonts, only if the fonts
are renamed to names not containing either the words "Bitstream" or the word
"Vera".

This License becomes null and void to the extent applicable to Fonts or Font
Software that has been modified and is distributed under the "Bitstream
Vera" names.

The Font Software may be sold as part of a larger software package but no
copy of one or more of the Font Software typefaces may be sold by itself.

THE FONT SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS
OR IMPLIED, INCLUDING BUT NOT LIMITED TO ANY WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT OF COPYRIGHT, PATENT,
TRADEMARK, OR OTHER RIGHT. IN NO EVENT SHALL BITSTREAM OR THE GNOME
FOUNDATION BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, INCLUDING
ANY GENERAL, SPECIAL, INDIRECT, INCIDENTAL, OR CONSEQUENTIAL DAMAGES,
WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF
THE USE OR INABILITY TO USE THE FONT SOFTWARE OR FROM OTHER DEALINGS IN THE
FONT SOFTWARE.

Except as contained in this notice, the names of Gnome, the Gnome
Foundation, and Bitstream Inc., shall not be used in advertising or
otherwise to promote the sale, use or other dealings in this Font Software
without prior written authorization from the Gnome Foundation or Bitstream
Inc., respectively. For further information, contact: fonts at gnome dot
org."""


def render(font, ch, canvas=(CELL_WIDTH + 4, CELL_HEIGHT + 6)):
    """The glyph's 8-bit coverage, drawn with its ascender line at row 0 and its origin at column 0."""
    image = Image.new("L", canvas, 0)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "L"  # anti-aliased
    draw.text((0, 0), ch, font=font, fill=255)
    return image


def main():
    font = ImageFont.truetype(FONT, PIXEL_SIZE)
    ascent, _ = font.getmetrics()
    images = {ch: render(font, ch) for ch in CHARACTERS}

    # The rows and columns any glyph inks; the cell starts one row above the tallest ink so lines stay apart.
    inked = [(x, y) for im in images.values() for y in range(im.height) for x in range(im.width) if im.getpixel((x, y))]
    top = min(y for _, y in inked) - 1
    bottom = max(y for _, y in inked)
    right = max(x for x, _ in inked)
    assert min(x for x, _ in inked) >= 0 and right < CELL_WIDTH, f"ink in columns up to {right}"
    assert bottom - top < CELL_HEIGHT, f"ink in rows {top + 1}…{bottom} does not fit {CELL_HEIGHT} rows"
    baseline = ascent - top  # the row, within the cell, that the baseline runs under

    lines = []
    for ch in CHARACTERS:
        im = images[ch]
        rows = []
        for y in range(top, top + CELL_HEIGHT):
            digits = ""
            for x in range(CELL_WIDTH):
                level = (im.getpixel((x, y)) * 15 + 127) // 255  # 0…255 → 0…15, rounded
                digits += "." if level == 0 else "0123456789abcdef"[level]
            rows.append(digits)
        literal = ch.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'        ("{literal}", "{" ".join(rows)}"),')

    notice = "\n".join(("// " + line).rstrip() for line in NOTICE.splitlines())
    swift = f"""\
// Generated by Scripts/make_bitmap_font.py — do not edit by hand. Regenerate with:
//
//     python3 Scripts/make_bitmap_font.py
//
// The glyphs are DejaVu Sans Mono ({os.path.basename(FONT)}) rasterised at {PIXEL_SIZE} pixels, anti-aliased,
// by Pillow {PIL.__version__} with FreeType {features.version("freetype2")}. DejaVu is distributed under the Bitstream
// Vera licence, which allows embedding its glyphs in software; its notice follows, as the licence asks.
//
{notice}

extension BitmapFont {{
    /// The glyphs of `BitmapFont.standard`: each character with {CELL_HEIGHT} rows of {CELL_WIDTH} coverage digits, top row
    /// first, rows separated by spaces; a digit is hexadecimal ink coverage (f full), "." none.
    static let standardGlyphs: [(Character, String)] = [
{chr(10).join(lines)}
    ]

    /// Cell size and baseline of the standard glyphs, in pixels.
    static let standardCellWidth = {CELL_WIDTH}
    static let standardCellHeight = {CELL_HEIGHT}
    static let standardBaseline = {baseline}
}}
"""
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(swift)
    print(f"wrote {os.path.normpath(OUT)}: {len(CHARACTERS)} glyphs, {CELL_WIDTH}x{CELL_HEIGHT}, baseline {baseline}")


if __name__ == "__main__":
    main()
