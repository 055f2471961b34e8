#!/usr/bin/env python3
"""Writes the small reference images and expected values used by Tests/UnCLIPImageTests.

* PNG files in every colour type Pillow writes (gray, gray+alpha, RGB, RGBA, palette with transparency) plus a
  hand-encoded 16-bit RGB PNG, with the RGB bytes Pillow gives after compositing alpha over white the way
  transformers' `convert_to_rgb` does (`Image.alpha_composite` on a white RGBA background).
* JPEG files (baseline RGB, progressive, grayscale, CMYK) with Pillow's decoded pixels.
* Pillow BICUBIC resizes of one RGB image to several sizes (spec §5.3).
* torch `F.interpolate(mode="bicubic", antialias=True, align_corners=False)` of one float tensor to several
  sizes (spec §12.1 step 8).

    python3 Scripts/make_image_fixtures.py   # writes Tests/UnCLIPImageTests/Fixtures/
"""
import json
import os
import struct
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "UnCLIPImageTests", "Fixtures")


def to_rgb_over_white(im):
    """transformers.image_transforms.convert_to_rgb for PIL images."""
    if im.mode == "RGB":
        return im
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def pixels(im):
    return list(np.asarray(im, dtype=np.uint8).reshape(-1).tolist())


def write_png16_rgb(path, arr):
    """A minimal 16-bit RGB PNG encoder (Pillow cannot write 16-bit colour)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(0)
    expected = {"decode": {}, "pillow_resize": {}, "torch_aa": {}}

    # PNG colour types.
    rgb = Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8), "RGB")
    gray = Image.fromarray(rng.integers(0, 256, (5, 7), dtype=np.uint8), "L")
    gray_alpha = Image.fromarray(rng.integers(0, 256, (6, 4, 2), dtype=np.uint8), "LA")
    rgba_arr = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    rgba_arr[..., 3] = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every alpha value once
    rgba = Image.fromarray(rgba_arr, "RGBA")
    palette = Image.fromarray(rng.integers(0, 4, (5, 6), dtype=np.uint8), "P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30])
    palette.info["transparency"] = bytes([255, 128, 0, 255])
    bilevel = gray.convert("1")  # 1-bit grayscale PNG
    for name, im in [("rgb", rgb), ("gray", gray), ("gray_alpha", gray_alpha), ("rgba", rgba), ("palette", palette),
                     ("bilevel", bilevel)]:
        path = os.path.join(OUT, name + ".png")
        if im.mode == "P":
            im.save(path, transparency=im.info["transparency"])
        else:
            im.save(path)
        back = to_rgb_over_white(Image.open(path))
        expected["decode"][name + ".png"] = {"width": back.width, "height": back.height, "pixels": pixels(back)}

    # 16-bit RGB: samples 257·k decode to k whether a decoder rounds (libpng) or truncates (Pillow).
    k = rng.integers(0, 256, (3, 5, 3)).astype(np.uint16)
    write_png16_rgb(os.path.join(OUT, "rgb16.png"), k * 257)
    expected["decode"]["rgb16.png"] = {"width": 5, "height": 3, "pixels": k.reshape(-1).tolist()}

    # JPEG: smooth content so the decode is meaningful; Pillow decodes with libjpeg(-turbo) ISLOW + fancy upsampling.
    yy, xx = np.mgrid[0:24, 0:32]
    smooth = np.stack([xx * 8, yy * 10, (xx + yy) * 4], axis=-1).clip(0, 255).astype(np.uint8)
    jpeg_rgb = Image.fromarray(smooth, "RGB")
    jpeg_rgb.save(os.path.join(OUT, "rgb.jpg"), quality=90)
    jpeg_rgb.save(os.path.join(OUT, "progressive.jpg"), quality=75, progressive=True, subsampling=2)
    jpeg_rgb.convert("L").save(os.path.join(OUT, "gray.jpg"), quality=90)
    jpeg_rgb.convert("CMYK").save(os.path.join(OUT, "cmyk.jpg"), quality=90)
    for name in ["rgb.jpg", "progressive.jpg", "gray.jpg"]:
        back = Image.open(os.path.join(OUT, name)).convert("RGB")
        expected["decode"][name] = {"width": back.width, "height": back.height, "pixels": pixels(back)}

    # Pillow BICUBIC resize: down, up, one axis only, large reduction, odd sizes.
    source = Image.fromarray(rng.integers(0, 256, (23, 37, 3), dtype=np.uint8), "RGB")
    source.save(os.path.join(OUT, "resize_source.png"))
    for w, h in [(16, 16), (48, 30), (37, 11), (60, 23), (7, 5), (1, 1), (38, 24)]:
        out = source.resize((w, h), Image.BICUBIC)
        expected["pillow_resize"][f"{w}x{h}"] = pixels(out)

    # torch antialiased bicubic on a float tensor.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 8, 10, generator=g) * 2 - 1
    expected["torch_aa"]["input"] = {"shape": list(x.shape), "values": x.flatten().tolist()}
    for h, w in [(32, 40), (5, 7), (8, 23), (3, 10), (17, 4), (1, 1)]:
        y = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        expected["torch_aa"][f"{h}x{w}"] = y.flatten().tolist()
    # The pipeline's case, 64 → 256 (spec §12.1 step 8), checked on the example weights quoted there.
    z = torch.zeros(1, 1, 64, 64)
    z[0, 0, :, 0] = 1
    expected["torch_aa"]["column0_64to256"] = F.interpolate(z, size=(256, 256), mode="bicubic", align_corners=False,
                                                            antialias=True)[0, 0, 0, :8].tolist()

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, sort_keys=True)


if __name__ == "__main__":
    main()
