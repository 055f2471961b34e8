#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets that take composite inputs (docs/reliability.md, "Fuzzing"):

  FuzzModelDirectory  the model directories in the repo (the embedded model, the parity fixtures), each packed as
                      its files' contents separated by NUL bytes, plus variants with one file left out;
  FuzzRequest         a valid body for every job route (JSON and multipart with small PNGs) and some near misses;
  FuzzArguments       every `unclip ...` command line the docs show, as NUL-separated argument lists.

FuzzCheckpoint writes its own (`FuzzCheckpoint --write-seeds DIR`: it needs the trainer's checkpoint writer); this
script adds the checkpoint inputs that once crashed, made from those seeds, and the request that once crashed.
Run from the repository root: python3 Fuzz/make-seeds.py. Seeds are named by their content's hash, as libFuzzer does.
"""
import hashlib
import json
import pathlib
import re
import shlex
import struct
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "Fuzz" / "Corpus"

# The files of FuzzModelDirectory's input, in order: read from the target's own list, so the two cannot drift.
_TARGET = (ROOT / "Fuzz/Sources/FuzzModelDirectory/FuzzModelDirectory.swift").read_text()
MODEL_FILES = re.findall(r'"([^"]+)"', _TARGET[_TARGET.index("let files = ["):_TARGET.index("]", _TARGET.index("let files = ["))])
# (Fixtures with the real CLIP vocabulary, 1.6 MB, are left out: every execution writes its input's files.)
MODEL_DIRS = [ROOT / "Sources/UnCLIPShapesModel/shapes-unclip"] + sorted(
    p.parent for p in (ROOT / "Tests/UnCLIPModelsTests/Fixtures/parity").glob("*/model_index.json")
    if (p.parent / "tokenizer/vocab.json").stat().st_size < 100_000)

ROUTES = ["generations", "variations", "edits", "interpolations", "text-diffs"]


def save(target, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def model_seeds():
    for folder in MODEL_DIRS:
        parts = [(folder / f).read_bytes() if (folder / f).exists() else b"" for f in MODEL_FILES]
        save("FuzzModelDirectory", b"\0".join(parts))
        for left_out in (0, 2, 6, 9, 10, 13):
            save("FuzzModelDirectory", b"\0".join(b"" if i == left_out else p for i, p in enumerate(parts)))


def png(side, channels):
    """A small PNG: 8-bit gray (1), RGB (3) or RGBA (4), with a transparent left half when it has alpha."""
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = b""
    for y in range(side):
        row = b"\0"
        for x in range(side):
            pixel = [(x * 37 + y * 11) % 256, (x * 5) % 256, (y * 9) % 256][:max(1, min(channels, 3))]
            if channels == 4:
                pixel.append(0 if x < side // 2 else 255)
            row += bytes(pixel)
        rows += row

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", side, side, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def multipart(fields, files, boundary="fuzzboundary"):
    body = b""
    for name, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, data in files.items():
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
                 f'Content-Type: image/png\r\n\r\n').encode() + data + b"\r\n"
    return f"multipart/form-data; boundary={boundary}".encode(), body + f"--{boundary}--\r\n".encode()


def request(route, content_type, body, chunking=0):
    save("FuzzRequest", bytes([ROUTES.index(route), chunking]) + content_type + b"\n" + body)


def request_seeds():
    for body in [
        {"prompt": "a red circle above a blue square"},
        {"prompt": "a green triangle", "n": 2, "size": "256x256", "response_format": "b64_json", "model": "dall-e-2"},
        {"prompt": "a red circle", "seed": 7, "steps": 10, "prior_guidance_scale": 4, "decoder_guidance_scale": 8.5,
         "eta": 0.5, "quality": "standard", "user": "fuzz"},
        {"prompt": "", "n": 11}, {"prompt": 3}, {"n": "2"}, [1, 2],
    ]:
        request("generations", b"application/json", json.dumps(body).encode())
    request("generations", b"application/json", b'{"prompt": "a blue square", "size": "1024x1024"}', chunking=1)
    rgb, rgba, gray = png(8, 3), png(8, 4), png(8, 1)
    for route, fields, files in [
        ("variations", {"n": "2", "size": "256x256"}, {"image": rgb}),
        ("variations", {"response_format": "b64_json", "eta": "0.3", "seed": "3"}, {"image": gray}),
        ("edits", {"prompt": "a red circle", "n": "1"}, {"image": rgba}),
        ("edits", {"prompt": "a blue square"}, {"image": rgb, "mask": rgba}),
        ("interpolations", {"n": "3", "latent": "shared"}, {"image": rgb, "image2": rgba}),
        ("text-diffs", {"from": "a red circle", "to": "a blue circle", "theta": "0.5", "n": "2"}, {"image": rgb}),
        ("variations", {}, {"image": png(9, 3)[:40]}),
    ]:
        content_type, body = multipart(fields, files)
        request(route, content_type, body)
        request(route, content_type, body, chunking=2)
    # Found by FuzzRequest: MultipartKit 4.7.1 trapped on a header name with a byte >= 0x80 (docs/reliability.md).
    content_type, body = multipart({"n": "1"}, {"image": rgb})
    request("variations", content_type, body.replace(b"Content-Disposition", b"Cont\xc3\xa9nt-Disposition", 1))


def checkpoint_regressions():
    """Found by FuzzCheckpoint: AdamW's step stored as NaN, infinity or 1.5 trapped converting it to an integer.
    Made from the committed checkpoint seed (`FuzzCheckpoint --write-seeds`) by overwriting its `.step` values."""
    folder = CORPUS / "FuzzCheckpoint"
    def header(data):
        length = struct.unpack("<Q", data[:8])[0]
        return length, json.loads(data[8:8 + length])
    seeds = [f.read_bytes() for f in sorted(folder.iterdir())]
    data = next((d for d in seeds if header(d)[1].get("__metadata__", {}).get("stage") == "prior"
                 and any(k.endswith(".step") for k in header(d)[1])), None)
    if data is None:
        return
    length, header = header(data)
    for value in (float("nan"), float("inf"), 1.5, -2.0):
        patched = bytearray(data)
        for key, entry in header.items():
            if key.endswith(".step"):
                start = 8 + length + entry["data_offsets"][0]
                patched[start:start + 4] = struct.pack("<f", value)
        save("FuzzCheckpoint", bytes(patched))


def argument_seeds():
    commands = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for command in re.findall(r"`unclip ([^`]+)`", doc.read_text()):
            if "$(" in command:
                continue
            try:
                commands.add(tuple(shlex.split(command.replace("\\|", "|"))))
            except ValueError:
                pass
    for arguments in sorted(commands):
        save("FuzzArguments", "\0".join(arguments).encode())


if __name__ == "__main__":
    model_seeds()
    request_seeds()
    argument_seeds()
    checkpoint_regressions()
    for target in ("FuzzModelDirectory", "FuzzRequest", "FuzzArguments", "FuzzCheckpoint"):
        print(target, len(list((CORPUS / target).iterdir())), "seeds")
