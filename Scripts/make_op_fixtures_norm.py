#!/usr/bin/env python3
"""Writes PyTorch reference values for the normalisation, softmax and resampling ops.

Needs: pip install torch   (fixture generation only, never a runtime dependency)

  python3 Scripts/make_op_fixtures_norm.py

Writes Tests/UnCLIPTensorTests/Fixtures/{norm,softmax,resample}.json. Each file holds {"cases": [...]}, one
case per op call: the input "x" (and "weight", "bias", "targets" where used), the upstream gradient "gout",
PyTorch's output "y" and gradients "gx" ("gw", "gb"). Inputs are rounded to 3 decimals so they are exact in
Float32 on both sides; outputs are written as the shortest decimal that round-trips their Float32 value.
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(0)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "UnCLIPTensorTests", "Fixtures")


def q(t):
    """Rounds to 3 decimals, as float32: short exact inputs."""
    return (torch.round(t.double() * 1000) / 1000).float()


def flat(t):
    """Float32 values as the shortest decimals that round-trip."""
    return [float(str(np.float32(v))) for v in t.detach().reshape(-1).tolist()]


def run(name, fn, x, params=(), gout=None, **extra):
    """Calls fn(x, *params), backpropagates gout, returns the case dict."""
    x = x.clone().requires_grad_(True)
    params = [p.clone().requires_grad_(True) for p in params]
    y = fn(x, *params)
    if gout is None:
        gout = q(torch.randn(y.shape))
    y.backward(gout)
    case = dict(name=name, shape=list(x.shape), x=flat(x), gout=flat(gout), y=flat(y), gx=flat(x.grad), **extra)
    for key, p in zip(["weight", "bias"], params):
        case[key] = flat(p)
        case["g" + key[0]] = flat(p.grad)
    return case


def norm_cases():
    cases = []
    # Layer norm: a zero row (variance 0), an ordinary row, a row with a large offset (stability).
    x = q(torch.randn(3, 7))
    x[1] = 0
    x[2] = q(1000 + 3 * torch.randn(7))
    w, b = q(1 + 0.3 * torch.randn(7)), q(0.2 * torch.randn(7))
    cases.append(run("layer_norm_3x7", lambda x, w, b: F.layer_norm(x, [7], w, b, 1e-5), x, [w, b],
                     op="layer_norm", eps=1e-5))
    # Width 21: SIMD body plus a tail; eps 1e-6 as in CLIP.
    x = q(torch.randn(2, 21) * 2 + 0.5)
    w, b = q(1 + 0.3 * torch.randn(21)), q(0.2 * torch.randn(21))
    cases.append(run("layer_norm_2x21", lambda x, w, b: F.layer_norm(x, [21], w, b, 1e-6), x, [w, b],
                     op="layer_norm", eps=1e-6))
    x = q(torch.randn(2, 3, 5))
    cases.append(run("layer_norm_2x3x5_no_affine", lambda x: F.layer_norm(x, [5], None, None, 1e-5), x,
                     op="layer_norm", eps=1e-5))
    # Group norm: C=6 in 3 groups over 5×7; two samples of C=4 in 2 groups with a large offset; a [N, C] input.
    x = q(torch.randn(1, 6, 5, 7))
    w, b = q(1 + 0.3 * torch.randn(6)), q(0.2 * torch.randn(6))
    cases.append(run("group_norm_1x6x5x7_g3", lambda x, w, b: F.group_norm(x, 3, w, b, 1e-5), x, [w, b],
                     op="group_norm", groups=3, eps=1e-5))
    # PyTorch's float32 kernel loses ~1e-4 to the offset here, so the case also carries a float64 reference "y64".
    x = q(500 + torch.randn(2, 4, 3, 2))
    w, b = q(1 + 0.3 * torch.randn(4)), q(0.2 * torch.randn(4))
    y64 = F.group_norm(x.double(), 2, w.double(), b.double(), 1e-6)
    cases.append(run("group_norm_2x4x3x2_g2_offset", lambda x, w, b: F.group_norm(x, 2, w, b, 1e-6), x, [w, b],
                     op="group_norm", groups=2, eps=1e-6, y64=flat(y64.float())))
    x = q(torch.randn(3, 8))
    cases.append(run("group_norm_3x8_g4_no_affine", lambda x: F.group_norm(x, 4, None, None, 1e-5), x,
                     op="group_norm", groups=4, eps=1e-5))
    return cases


def softmax_cases():
    cases = []
    x = q(torch.randn(4, 21))
    x[1] = q(1000 + 30 * torch.randn(21))  # large values: only a stable kernel survives
    x[2] = q(-500 + 10 * torch.randn(21))
    cases.append(run("softmax_4x21", lambda x: torch.softmax(x, -1), x, op="softmax", axis=-1))
    x = q(torch.randn(2, 5, 3) * 3)
    cases.append(run("softmax_2x5x3_axis1", lambda x: torch.softmax(x, 1), x, op="softmax", axis=1))
    x = q(torch.randn(3, 19))
    x[0] = q(800 + 20 * torch.randn(19))
    cases.append(run("log_softmax_3x19", lambda x: torch.log_softmax(x, -1), x, op="log_softmax", axis=-1))
    x = q(torch.randn(4, 6) * 2)
    cases.append(run("log_softmax_4x6_axis0", lambda x: torch.log_softmax(x, 0), x, op="log_softmax", axis=0))
    x = q(torch.randn(5, 7) * 2)
    x[3] = q(300 + 5 * torch.randn(7))
    targets = [3, 0, 6, 2, 2]
    cases.append(run("cross_entropy_5x7", lambda x: F.cross_entropy(x, torch.tensor(targets)), x,
                     gout=torch.tensor(0.75), op="cross_entropy", targets=targets))
    return cases


def resample_cases():
    x = q(torch.randn(1, 2, 3, 5))
    up = run("upsample_1x2x3x5", lambda x: F.interpolate(x, scale_factor=2.0, mode="nearest"), x, op="upsample")
    x = q(torch.randn(1, 2, 5, 7))
    pool = run("avg_pool_1x2x5x7", lambda x: F.avg_pool2d(x, 2, 2), x, op="avg_pool")
    return [up, pool]


def main():
    os.makedirs(ROOT, exist_ok=True)
    for name, cases in [("norm", norm_cases()), ("softmax", softmax_cases()), ("resample", resample_cases())]:
        path = os.path.join(ROOT, name + ".json")
        with open(path, "w") as f:
            json.dump(dict(generator="Scripts/make_op_fixtures_norm.py", torch=torch.__version__, cases=cases),
                      f, separators=(",", ":"))
            f.write("\n")
        print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
