#!/usr/bin/env python3
"""Reference values for the UnCLIPNN tests (layers and AdamW), computed with PyTorch.

Writes Tests/UnCLIPNNTests/Fixtures/{layers,adamw}.json. Tensors are stored as {"shape": [...], "data": [...]}
(row-major float32 values). Run from the repository root: python3 Scripts/make_nn_fixtures.py
"""
import json
import os

import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "UnCLIPNNTests", "Fixtures")


def t(x):
    x = x.detach().to(torch.float32).contiguous()
    return {"shape": list(x.shape), "data": [float(v) for v in x.reshape(-1).tolist()]}


def layers():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)
    out = {}

    lin = torch.nn.Linear(5, 3)
    x = r(2, 4, 5)
    out["linear"] = {"weight": t(lin.weight), "bias": t(lin.bias), "input": t(x), "output": t(lin(x))}

    conv = torch.nn.Conv2d(3, 4, kernel_size=3, stride=2, padding=1)
    x = r(2, 3, 7, 6)
    out["conv2d"] = {"weight": t(conv.weight), "bias": t(conv.bias), "input": t(x), "output": t(conv(x)),
                     "stride": 2, "padding": 1}

    emb = torch.nn.Embedding(10, 4)
    ids = torch.tensor([[1, 3, 0], [9, 2, 2]])
    out["embedding"] = {"weight": t(emb.weight), "ids": ids.tolist(), "output": t(emb(ids))}

    gn = torch.nn.GroupNorm(2, 6, eps=1e-5)
    with torch.no_grad():
        gn.weight.copy_(r(6)); gn.bias.copy_(r(6))
    x = r(2, 6, 3, 4) * 3 + 1
    out["group_norm"] = {"weight": t(gn.weight), "bias": t(gn.bias), "input": t(x), "output": t(gn(x)), "groups": 2}

    ln = torch.nn.LayerNorm(8, eps=1e-5)
    with torch.no_grad():
        ln.weight.copy_(r(8)); ln.bias.copy_(r(8))
    x = r(3, 5, 8) * 2 - 1
    out["layer_norm"] = {"weight": t(ln.weight), "bias": t(ln.bias), "input": t(x), "output": t(ln(x))}
    return out


def adamw():
    """Three AdamW steps on two parameters; p1 has no gradient at step 2 (its step count must not advance)."""
    cases = []
    for cfg in [dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
                dict(lr=0.1, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.0)]:
        g = torch.Generator().manual_seed(1)
        p0 = torch.nn.Parameter(torch.randn(3, 4, generator=g))
        p1 = torch.nn.Parameter(torch.randn(5, generator=g))
        init = [t(p0), t(p1)]
        opt = torch.optim.AdamW([p0, p1], foreach=False, **cfg)
        steps = []
        for s in range(3):
            g0 = torch.randn(3, 4, generator=g)
            g1 = torch.randn(5, generator=g) * 0.01
            p0.grad = g0.clone()
            p1.grad = None if s == 1 else g1.clone()
            opt.step()
            steps.append({"grads": [t(g0), None if s == 1 else t(g1)], "params": [t(p0), t(p1)]})
        st = opt.state[p0]
        cases.append({"config": {"lr": cfg["lr"], "beta1": cfg["betas"][0], "beta2": cfg["betas"][1],
                                 "eps": cfg["eps"], "weight_decay": cfg["weight_decay"]},
                      "initial": init, "steps": steps,
                      "final_state_p0": {"step": int(st["step"]), "exp_avg": t(st["exp_avg"]),
                                         "exp_avg_sq": t(st["exp_avg_sq"])},
                      "final_step_p1": int(opt.state[p1]["step"])})
    return {"torch_version": torch.__version__, "cases": cases}


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, data in [("layers", layers()), ("adamw", adamw())]:
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(data, f)
        print("wrote", os.path.join(OUT, name + ".json"))
