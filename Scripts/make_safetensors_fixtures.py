#!/usr/bin/env python3
"""Writes the small reference safetensors files used by Tests/UnCLIPNNTests/SafeTensorsTests.swift.

Every file is produced by the `safetensors` PyPI package from torch tensors, so the Swift reader is checked
against the reference writer, and the Swift writer's fp16/bf16 output is checked byte for byte against
torch's conversions (`.half()`, `.bfloat16()`, both round-to-nearest-even).

    python3 Scripts/make_safetensors_fixtures.py   # writes Tests/UnCLIPNNTests/Fixtures/safetensors/
"""
import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "UnCLIPNNTests", "Fixtures", "safetensors")


def finite_or_text(values):
    """JSON has no inf/nan literals; spell them as strings (Swift's JSONDecoder converts them back)."""
    return [v if np.isfinite(v) else ("NaN" if np.isnan(v) else ("Infinity" if v > 0 else "-Infinity")) for v in values]


def main():
    os.makedirs(os.path.join(OUT, "sharded"), exist_ok=True)
    expected = {}

    # F32: a matrix, a vector, a scalar, plus string metadata.
    f32 = {
        "a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4 - 0.5,
        "b.bias": torch.tensor([1.5, -2.25, 3e-8, 1e30], dtype=torch.float32),
        "scalar": torch.tensor(7.0, dtype=torch.float32),
    }
    save_file(f32, os.path.join(OUT, "f32.safetensors"), metadata={"format": "pt", "note": "fixture \"quoted\""})
    expected["f32.safetensors"] = {k: {"shape": list(v.shape), "values": finite_or_text(v.flatten().tolist())} for k, v in f32.items()}

    # Other dtypes. The reader converts every float and integer type to Float32; integers also read exactly.
    g = torch.Generator().manual_seed(0)
    mixed = {
        "half": (torch.randn(3, 4, generator=g) * 3).half(),
        "half_special": torch.tensor([65504.0, -0.0, 6e-8, 1e-5, float("inf"), -float("inf")], dtype=torch.float16),
        "bf16": (torch.randn(5, generator=g) * 100).bfloat16(),
        "f64": torch.tensor([1.0 / 3.0, -2.5], dtype=torch.float64),
        "position_ids": torch.arange(77, dtype=torch.int64).reshape(1, 77),
        "big_i64": torch.tensor([-(2**40), 2**40 + 1, -1], dtype=torch.int64),
        "i32": torch.tensor([-3, 0, 2**31 - 1], dtype=torch.int32),
        "u8": torch.tensor([0, 1, 254, 255], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
    }
    save_file(mixed, os.path.join(OUT, "mixed.safetensors"))
    expected["mixed.safetensors"] = {
        k: {"shape": list(v.shape), "values": finite_or_text(v.double().flatten().tolist()),
            "dtype": {torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64", torch.int64: "I64",
                      torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL", torch.float32: "F32"}[v.dtype]}
        for k, v in mixed.items()
    }
    # Exact integers for the I64 tensors (JSON doubles would lose nothing here, but keep them as ints anyway).
    expected["mixed.safetensors"]["big_i64"]["ints"] = mixed["big_i64"].tolist()

    # Conversion parity: the Swift writer must produce these exact bytes from conversion_input.safetensors.
    bits = np.array([
        0x3F808000,  # 1.00390625: a bf16 tie, rounds to even (down)
        0x3F818000,  # a bf16 tie that rounds up
        0x3F80FFFF, 0x7F7FFFFF,  # rounds up; largest float rounds to bf16 inf
        0x00000001, 0x80000001,  # smallest subnormals
        0x7FC00000, 0xFFC00000, 0x7F800000, 0xFF800000,  # NaN, -NaN, inf, -inf
        0x3F802000,  # 1 + 2^-10 ... an fp16 tie
        0x477FF000,  # 65520: fp16 overflow to inf
        0x33800000,  # 2^-24: smallest fp16 subnormal
        0x33000000,  # 2^-25: fp16 tie to zero
    ], dtype=np.uint32)
    special = torch.from_numpy(bits.view(np.float32).copy())
    conv = {
        "special": special,
        "random": torch.randn(4, 33, generator=g) * 10,
        "tiny": torch.randn(2, 2, 2, generator=g) * 1e-6,
    }
    save_file(conv, os.path.join(OUT, "conversion_input.safetensors"))
    save_file({k: v.half() for k, v in conv.items()}, os.path.join(OUT, "conversion_f16.safetensors"))
    save_file({k: v.bfloat16() for k, v in conv.items()}, os.path.join(OUT, "conversion_bf16.safetensors"))

    # A sharded pair with an index, the layout transformers/diffusers write for large checkpoints.
    shard1 = {"layer.0.weight": torch.ones(2, 2), "layer.0.bias": torch.tensor([0.5, -0.5])}
    shard2 = {"layer.1.weight": torch.full((3,), 2.0), "layer.1.steps": torch.arange(4, dtype=torch.int64)}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    save_file(shard1, os.path.join(OUT, "sharded", names[0]))
    save_file(shard2, os.path.join(OUT, "sharded", names[1]))
    index = {
        "metadata": {"total_size": sum(v.numel() * v.element_size() for v in [*shard1.values(), *shard2.values()])},
        "weight_map": {**{k: names[0] for k in shard1}, **{k: names[1] for k in shard2}},
    }
    with open(os.path.join(OUT, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
