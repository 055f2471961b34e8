#!/usr/bin/env python3
"""Writes PyTorch reference values for the GEMM, convolution and attention ops of UnCLIPTensor.

Usage: python3 Scripts/make_op_fixtures_gemm.py   (needs torch; a fixture tool, never a runtime dependency)

Each case stores its inputs, an upstream gradient `g`, the forward output and the gradient of sum(output * g)
with respect to every input, as {"shape": [...], "data": [...]} objects, in
Tests/UnCLIPTensorTests/Fixtures/{gemm,conv,attention}.json.
"""
import json, os
import torch
import torch.nn.functional as F

torch.manual_seed(1234)
OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "UnCLIPTensorTests", "Fixtures")


def enc(t):
    t = t.detach().to(torch.float32).contiguous()
    return {"shape": list(t.shape), "data": [round(float(x), 7) for x in t.flatten()]}


def case(fn, inputs, grad_names=None, **params):
    """Runs fn(**inputs) in float64 for exact references, then stores float32 values."""
    leaves = {k: v.double().requires_grad_(grad_names is None or k in grad_names) for k, v in inputs.items()}
    y = fn(**leaves)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    grads = {k: enc(v.grad) for k, v in leaves.items() if v.grad is not None}
    return {"inputs": {k: enc(v) for k, v in inputs.items()}, "params": params, "g": enc(g), "output": enc(y), "grads": grads}


def write(name, cases):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(cases, f, separators=(",", ":"))
    print(name, len(cases), "cases")


r = torch.randn
gemm = {
    "matmul_2d": case(lambda a, b: a @ b, dict(a=r(4, 5), b=r(5, 3))),
    "matmul_batched_shared_b": case(lambda a, b: a @ b, dict(a=r(2, 3, 4, 5), b=r(5, 6))),
    "matmul_broadcast_batch": case(lambda a, b: a @ b, dict(a=r(2, 1, 4, 5), b=r(3, 5, 6))),
    "matmul_batched_both": case(lambda a, b: a @ b, dict(a=r(3, 7, 6), b=r(3, 6, 2))),
    "linear_bias": case(lambda x, w, b: F.linear(x, w, b), dict(x=r(2, 3, 8), w=r(5, 8), b=r(5))),
    "linear_nobias": case(lambda x, w: F.linear(x, w), dict(x=r(6, 16), w=r(9, 16))),
}
write("gemm.json", gemm)

conv = {}
for name, (n, c, h, w, o, k, s, p, bias) in {
    "conv3x3_s1_p1": (2, 3, 7, 7, 4, 3, 1, 1, True),
    "conv3x3_s2_p1": (2, 5, 8, 8, 6, 3, 2, 1, True),
    "conv3x3_s1_p0_nobias": (1, 4, 6, 5, 3, 3, 1, 0, False),
    "conv3x3_s2_p0": (1, 3, 9, 9, 2, 3, 2, 0, True),
    "conv1x1": (2, 16, 5, 5, 8, 1, 1, 0, True),
    "conv_patch_k4_s4": (2, 3, 8, 12, 5, 4, 4, 0, False),
    "conv3x3_c32": (1, 32, 6, 6, 32, 3, 1, 1, True),
}.items():
    ins = dict(x=r(n, c, h, w), w=r(o, c, k, k) / (c * k * k) ** 0.5)
    if bias:
        ins["b"] = r(o)
        conv[name] = case(lambda x, w, b: F.conv2d(x, w, b, stride=s, padding=p), ins, stride=s, padding=p)
    else:
        conv[name] = case(lambda x, w: F.conv2d(x, w, None, stride=s, padding=p), ins, stride=s, padding=p)
write("conv.json", conv)


def attn(q, k, v, bias=None, scale=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)


att = {}
B, H, Lq, Lk, dh = 2, 3, 5, 6, 4
att["attention_nobias"] = case(lambda q, k, v: attn(q, k, v), dict(q=r(B, H, Lq, dh), k=r(B, H, Lk, dh), v=r(B, H, Lk, dh)))
att["attention_full_bias"] = case(lambda q, k, v, bias: attn(q, k, v, bias),
                                  dict(q=r(B, H, Lq, dh), k=r(B, H, Lk, dh), v=r(B, H, Lk, 3), bias=r(B, H, Lq, Lk)))
pad = torch.zeros(B, 1, 1, Lk)
pad[0, 0, 0, 4:] = -10000.0
pad[1, 0, 0, 5:] = -10000.0
att["attention_key_padding"] = case(lambda q, k, v, bias: attn(q, k, v, bias),
                                    dict(q=r(B, H, Lq, dh), k=r(B, H, Lk, dh), v=r(B, H, Lk, dh), bias=pad),
                                    grad_names={"q", "k", "v"})
causal = torch.triu(torch.full((Lq, Lq), -10000.0), diagonal=1)
att["attention_causal_scale"] = case(lambda q, k, v, bias: attn(q, k, v, bias, scale=0.3),
                                     dict(q=r(1, 2, Lq, dh), k=r(1, 2, Lq, dh), v=r(1, 2, Lq, dh), bias=causal),
                                     grad_names={"q", "k", "v"}, scale=0.3)
# Long enough rows that the query axis splits into several blocks (block = 131072 / Lk rows, at most 128).
att["attention_blocked"] = case(lambda q, k, v, bias: attn(q, k, v, bias),
                                dict(q=r(1, 1, 260, 4), k=r(1, 1, 1100, 4), v=r(1, 1, 1100, 4), bias=r(1, 1, 1, 1100)))
write("attention.json", att)
