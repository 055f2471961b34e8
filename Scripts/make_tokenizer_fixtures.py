#!/usr/bin/env python3
"""Writes the CLIP tokenizer fixtures used by Tests/UnCLIPModelsTests/CLIPTokenizerTests.swift.

Reference: transformers' `CLIPTokenizer`. In transformers 5 that is the only CLIP tokenizer class and it is backed by
the Rust `tokenizers` library (the former "fast" tokenizer); the Python "slow" class no longer exists. The version used
is recorded in cases.json.

Outputs (under Tests/UnCLIPModelsTests/Fixtures/tokenizer/):
  karlo/        vocab.json + merges.txt + tokenizer_config.json + special_tokens_map.json, laid out like
                kakaobrain/karlo-v1-alpha/tokenizer (the real 49 408-token CLIP vocabulary, pad "!" = id 0).
  small/        tokenizer.json + tokenizer_config.json: a derived vocabulary (the first 3 000 CLIP merges) saved in the
                HF tokenizers format, with pad = eos and a "huge sentinel" model_max_length.
  cases.json    for every test string, the ids transformers produces with each fixture tokenizer.
  unicode.json  the pre-tokeniser class (space / letter / number / other) of every code point, as runs, and every
                code point whose normalisation (NFC, whitespace, lowercase) is not itself.

The real CLIP merges come from `bpe_simple_vocab_16e6.txt.gz`, which ships inside the open_clip_torch wheel (nothing
else is downloaded). Get it with `pip download open_clip_torch --no-deps` and pass the wheel or the .gz:

    python3 Scripts/make_tokenizer_fixtures.py --bpe open_clip_torch-3.3.0-py3-none-any.whl
"""

import argparse
import gzip
import io
import json
import os
import random
import zipfile

import tokenizers
import transformers
from tokenizers import Regex, pre_tokenizers
from transformers import CLIPTokenizer

from clip_bytes import bytes_to_unicode  # Scripts/, the script's own folder

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "UnCLIPModelsTests", "Fixtures",
                    "tokenizer")
SMALL_MERGES = 3000


def read_bpe(path):
    """Returns the merges file text (bpe_simple_vocab_16e6.txt) from a .gz or an open_clip wheel."""
    if path.endswith(".whl"):
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("bpe_simple_vocab_16e6.txt.gz"))
            data = z.read(name)
        return gzip.decompress(data).decode("utf-8")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read()


def clip_vocab(merges):
    """The CLIP vocabulary layout: 256 byte symbols, the same with </w>, one token per merge, then BOS and EOS."""
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}


def added_token(content):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False,
            "single_word": False}


def write_karlo(merges, out):
    """Karlo's tokenizer folder: openai/clip-vit-large-patch14's files with pad_token "!"."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(clip_vocab(merges), f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    config = {
        "add_prefix_space": False, "bos_token": added_token("<|startoftext|>"), "do_lower_case": True,
        "eos_token": added_token("<|endoftext|>"), "errors": "replace", "model_max_length": 77,
        "name_or_path": "openai/clip-vit-large-patch14", "pad_token": "!", "tokenizer_class": "CLIPTokenizer",
        "unk_token": added_token("<|endoftext|>"),
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    special = {k: ({kk: vv for kk, vv in v.items() if kk != "__type"} if isinstance(v, dict) else v)
               for k, v in config.items() if k.endswith("_token")}
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=2)


def write_small(merges, out):
    """A derived vocabulary (first SMALL_MERGES merges) saved by transformers in tokenizer.json format."""
    merges = merges[:SMALL_MERGES]
    tok = CLIPTokenizer(vocab=clip_vocab(merges), merges=list(merges))
    os.makedirs(out, exist_ok=True)
    tok.save_pretrained(out)
    # Keep only what the Swift loader reads; transformers' "no limit" sentinel must be read as 77.
    for name in os.listdir(out):
        if name not in ("tokenizer.json", "tokenizer_config.json"):
            os.remove(os.path.join(out, name))
    # Rewrite tokenizer.json compactly (same content) to keep the fixture small.
    path = os.path.join(out, "tokenizer.json")
    with open(path, encoding="utf-8") as f:
        content = json.load(f)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f, ensure_ascii=False, separators=(",", ":"))
    path = os.path.join(out, "tokenizer_config.json")
    with open(path) as f:
        config = json.load(f)
    config["model_max_length"] = int(1e30)
    with open(path, "w") as f:
        json.dump(config, f, indent=2)


def test_strings():
    fixed = [
        "", " ", "   ", "\t\n", "horse", "A  Photo of a CAT!",
        "a high-resolution photograph of a big red frog on a green leaf.",
        "horse " * 100, "a " * 75, "a " * 76, "a " * 74, "ab" * 200, "!" * 80, "1234567890" * 9,
        "It's", "IT'S", "it'S", "don't", "DON'T", "we're", "WE'RE", "they've", "THEY'VE", "I'm", "I'M", "we'll",
        "WE'LL", "he'd", "HE'D", "'s", "'sa", "''s", "'''", "'tis", "rock'n'roll", "o'clock", "x'y", "'", "'ll'll",
        "don’t",  # typographic apostrophe is punctuation, not a contraction
        "hello!!! world", "cat!!", "!hello!", "what?!?", "...", "a...b", "--", "a-b-c", "(parenthesised)", "[x]{y}<z>",
        "#hashtag @mention", "e-mail: foo@bar.com", "http://example.com/path?q=1&r=2", "C++ and C#", "50%", "$100",
        "3.14159", "1,000,000", "2023-01-01", "v1.2.3", "x86_64", "abc123def", "٣٤٥", "Ⅻ", "½ ¾", "²³", "①②",
        "multiple   spaces", "tabs\tand\ttabs", "new\nlines\n\n", "mixed \t\n\r whitespace", "  leading", "trailing  ",
        "\u00a0nbsp\u00a0", "ideographic\u3000space", "zero\u200bwidth", "line\u2028separator", "fs\x1cgs\x1drs\x1e",
        "nel\x85char", "café", "cafe\u0301", "CAFÉ", "naïve résumé", "Ångström", "\u212bngstr\u00f6m", "Straße",
        "STRASSE", "ﬁne ﬂow", "İstanbul", "ΟΔΟΣ", "Σίσυφος", "ǅemal", "Привет, мир!", "ПРИВЕТ", "こんにちは世界",
        "東京タワー", "漢字かなカナ", "한국어 텍스트", "中文，标点。", "العربية", "עִבְרִית", "हिन्दी", "ภาษาไทย", "Ελληνικά",
        "😀", "😀😀😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇩🇪", "I ❤️ NY", "★☆✓✗", "→←↑↓", "©®™", "€£¥₹", "∑∫√∞", "a😀b",
        "<|startoftext|>", "<|endoftext|>", "<|ENDOFTEXT|>", "<|ENDOFTEXT|>!!", "!!<|endoftext|>", "x<|endoftext|>y",
        "<|startoftext|>hello<|endoftext|>", "< |endoftext| >", "<|endoftext", "<|Startoftext|>a",
        "&amp; &lt;b&gt;", "&#39;quoted&#39;", "Ã©tÃ©", "â€™", "\x00\x01", "\x7f", "\ufeffbom", "\ufffd",
        "a\u0300\u0301\u0302", "\u0301", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟏𝟐𝟑", "ｆｕｌｌｗｉｄｔｈ", "ＡＢＣ",
        "an astronaut riding a horse on the moon, digital art, 4k, trending on artstation",
        "A painting of a fox sitting in a field at sunrise in the style of Claude Monet",
        "oil painting of a cat wearing a tiny hat",
        "photo of an old man's face, 85mm, f/1.8, bokeh",
        "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
        "The quick brown fox jumps over the lazy dog. " * 4,
    ]
    pieces = [
        "a", "the", "cat", "CAT", "Photo", "painting", "of", "astronaut", "supercalifragilisticexpialidocious",
        "'s", "'S", "'t", "'T", "'re", "'RE", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'d", "'D", "'", "''",
        "0", "7", "42", "2024", "3.5", "!", "!!", "?", "...", ",", ".", "-", "_", "/", "&", "*", "#", "@", "~",
        " ", "  ", "\t", "\n", "\r\n", " \t ", "\u00a0", "\u3000",
        "é", "e\u0301", "ñ", "ü", "Ø", "ß", "ç", "日本", "中", "한", "ä", "ы", "Ж", "λ", "Ω", "ア", "ー",
        "😀", "🎨", "🐱", "👍🏽", "❤️", "✨", "🇯🇵", "<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>",
    ]
    rng = random.Random(1234)
    generated = []
    for _ in range(220):
        k = rng.randint(1, 14)
        generated.append("".join(rng.choice(pieces) for _ in range(k)))
    for _ in range(10):
        generated.append(" ".join(rng.choice(pieces) for _ in range(rng.randint(60, 120))))
    return fixed + generated


def unicode_tables(tok):
    """Pre-tokeniser class of every scalar (as runs) and every scalar the normaliser changes."""
    pattern = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
    split = pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True)
    runs, previous = [], None
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue  # surrogates are not scalars; the run simply continues past them
        c = chr(cp)
        words = [w for w, _ in split.pre_tokenize_str("x" + c + "!")]
        cls = {repr(["x" + c, "!"]): "L", repr(["x", c, "!"]): "N", repr(["x", "!"]): "S",
               repr(["x", c + "!"]): "O"}[repr(words)]
        if cls != previous:
            runs.append([cp, cls])
            previous = cls
    normalizer = tok.backend_tokenizer.normalizer
    changed = []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        out = normalizer.normalize_str(c)
        if out != c:
            changed.append([cp, [ord(x) for x in out]])
    return {"classRuns": runs, "normalized": changed}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bpe", required=True, help="open_clip_torch wheel or bpe_simple_vocab_16e6.txt.gz")
    args = parser.parse_args()

    lines = read_bpe(args.bpe).split("\n")
    # Matches openai/CLIP simple_tokenizer.py: merges are lines 1 … 49152 − 256 − 2 of the file (line 0 is #version).
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    assert len(merges) == 48894

    karlo_dir, small_dir = os.path.join(ROOT, "karlo"), os.path.join(ROOT, "small")
    write_karlo(merges, karlo_dir)
    write_small(merges, small_dir)

    karlo = CLIPTokenizer.from_pretrained(karlo_dir)
    small = CLIPTokenizer.from_pretrained(small_dir)
    assert karlo.pad_token_id == 0 and karlo.model_max_length == 77

    cases = []
    for text in test_strings():
        case = {"text": text}
        for name, tok in (("karlo", karlo), ("small", small)):
            full = tok(text).input_ids
            truncated = tok(text, truncation=True, max_length=77).input_ids
            case[name] = truncated
            if full != truncated:
                case[name + "Untruncated"] = full
        cases.append(case)
    batch = ["horse", "", "A  Photo of a CAT!", "horse " * 100]
    padded = karlo(batch, padding="max_length", max_length=77, truncation=True)
    result = {
        "reference": f"transformers {transformers.__version__} CLIPTokenizer (tokenizers {tokenizers.__version__})",
        "smallIDs": {"bos": small.bos_token_id, "eos": small.eos_token_id, "pad": small.pad_token_id},
        "cases": cases,
        "paddedBatch": {"texts": batch, "ids": padded.input_ids, "mask": padded.attention_mask},
    }
    with open(os.path.join(ROOT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=0)
    with open(os.path.join(ROOT, "unicode.json"), "w") as f:
        json.dump(unicode_tables(karlo), f, separators=(",", ":"))
    print(f"{len(cases)} cases written to {ROOT}")


if __name__ == "__main__":
    main()
