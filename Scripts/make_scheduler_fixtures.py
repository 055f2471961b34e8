#!/usr/bin/env python3
"""Writes Tests/UnCLIPModelsTests/Fixtures/scheduler/unclip_scheduler.json from diffusers' UnCLIPScheduler.

Recorded: the float32 betas and alphas_cumprod, set_timesteps for a few step counts, and step() inputs and outputs
for the three Karlo scheduler configurations (prior: fixed_small_log + sample + clip 5; decoder: learned_range +
epsilon + clip 1; super-res: fixed_small_log + epsilon + clip 1). The noise each step draws is recorded too: step()
draws it with `randn_tensor(model_output.shape, generator=...)`, which on the CPU is `torch.randn` with that generator,
so a generator seeded the same way reproduces it. All values are float32, written as exact decimal doubles.

    python3 Scripts/make_scheduler_fixtures.py
"""

import json
import os

import diffusers
import torch
from diffusers import UnCLIPScheduler

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "UnCLIPModelsTests", "Fixtures",
                   "scheduler", "unclip_scheduler.json")

CONFIGS = {
    "prior": dict(variance_type="fixed_small_log", prediction_type="sample", clip_sample=True, clip_sample_range=5.0),
    "decoder": dict(variance_type="learned_range", prediction_type="epsilon", clip_sample=True, clip_sample_range=1.0),
    "super_res": dict(variance_type="fixed_small_log", prediction_type="epsilon", clip_sample=True,
                      clip_sample_range=1.0),
}


def floats(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def main():
    torch.manual_seed(0)
    base = UnCLIPScheduler(**CONFIGS["prior"])
    result = {
        "reference": f"diffusers {diffusers.__version__}, torch {torch.__version__}",
        "betas": floats(base.betas),
        "alphasCumprod": floats(base.alphas_cumprod),
        "timesteps": {},
        "steps": [],
    }
    for n in (2, 3, 7, 10, 25, 64, 1000):
        base.set_timesteps(n)
        result["timesteps"][str(n)] = [int(t) for t in base.timesteps]

    # (config, sample shape, model-output channel factor, [(t, prev_timestep)])
    plans = [
        ("prior", [2, 8], 1, [(999, 957), (957, 916), (500, 458), (42, 0), (0, None), (500, None)]),
        ("decoder", [2, 3, 4, 4], 2, [(999, 957), (500, 458), (42, 0), (0, None), (500, None), (1, 0)]),
        ("super_res", [1, 3, 4, 4], 1, [(999, 832), (666, 500), (166, 0), (0, None)]),
    ]
    seed = 100
    for name, shape, factor, pairs in plans:
        scheduler = UnCLIPScheduler(**CONFIGS[name])
        for t, prev in pairs:
            seed += 1
            sample = torch.randn(shape) * 1.5
            out_shape = [shape[0], shape[1] * factor] + shape[2:]
            model_output = torch.randn(out_shape) * 3.0  # large enough that the x0 clamp is exercised
            if factor == 2:
                # The variance channels are the model's v in [-1, 1] (any value works; keep it realistic).
                model_output[:, shape[1]:] = torch.tanh(model_output[:, shape[1]:])
            noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
            prev_sample = scheduler.step(model_output, t, sample, prev_timestep=prev,
                                         generator=torch.Generator().manual_seed(seed)).prev_sample
            result["steps"].append({
                "config": name, "timestep": t, "prevTimestep": prev, "sampleShape": shape,
                "modelOutputShape": out_shape, "sample": floats(sample), "modelOutput": floats(model_output),
                "noise": floats(noise) if t > 0 else None, "prevSample": floats(prev_sample),
            })
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(result, f, separators=(",", ":"))
    print(f"{len(result['steps'])} steps written to {OUT}")


if __name__ == "__main__":
    main()
