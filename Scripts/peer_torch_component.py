#!/usr/bin/env python3
"""Runs one component of `peer_torch.py karlo` in its own process, on one peer backend, and adds its peak RSS.

  peer_torch_component.py PEER COMPONENT [--threads N] [--backend torch-fp32|torch-bf16|openvino-f32|openvino-bf16]

PEER is the path of peer_torch.py (unchanged, read-only); COMPONENT one of text_encoder, image_encoder, prior,
decoder, super_res_first. The configs, inputs and timing code are peer_torch.py's own: its source is executed
without its final dispatch and `karlo_configs` is narrowed to COMPONENT. Backends:

  torch-fp32     peer_torch.py's `models("karlo")` as it is (eager fp32, no_grad)
  torch-bf16     the same step under torch.autocast("cpu", dtype=torch.bfloat16)
  openvino-f32   diffusers' / transformers' module converted by openvino.convert_model, saved as IR, then read and
  openvino-bf16  compiled in a fresh process with INFERENCE_PRECISION_HINT f32 / bf16 (so the peak RSS is the
                 compiled model's, not the conversion's) and timed with peer_torch.py's timeit; an all-ones
                 attention mask is left out of the converted decoder, which is the same computation there

Each JSON line it prints gains "peak_rss_gb" (VmHWM of the timing process) and "backend".
"""
import json
import os
import subprocess
import sys
import tempfile

BACKENDS = ["torch-fp32", "torch-bf16", "openvino-f32", "openvino-bf16"]


def vm_hwm_gb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 2**30
    return float("nan")


def peer_namespace(peer, component, rest):
    """peer_torch.py's functions, its arguments parsed from `rest`, `karlo_configs` narrowed to `component`."""
    source = open(peer).read()
    marker = '\nif a.what == "ops":'
    if marker not in source:
        sys.exit(f"{peer}: cannot find its dispatch ({marker.strip()!r}); the wrapper needs updating")
    sys.argv = [peer, "karlo"] + rest
    ns = {"__name__": "peer_torch", "__file__": peer}
    exec(compile(source[: source.index(marker)], peer, "exec"), ns)
    configs = ns["karlo_configs"]()
    if component not in configs:
        sys.exit(f"unknown component {component!r} (expected one of {', '.join(configs)})")
    ns["karlo_configs"] = lambda: {component: configs[component]}
    return ns


def add_to_printed_lines(ns, **fields):
    """peer_torch prints through print(json.dumps(...)); add the peak and `fields` to each line it prints."""
    import builtins
    real_print = builtins.print

    def print_with_peak(*args, **kw):
        if len(args) == 1 and isinstance(args[0], str) and args[0].startswith("{"):
            d = json.loads(args[0]); d.update(fields); d["peak_rss_gb"] = vm_hwm_gb()
            args = (json.dumps(d),)
        real_print(*args, **kw)

    ns["print"] = print_with_peak


def main_output(out):
    """The output a step is about: the first element of a tuple (return_dict=False)."""
    return out[0] if isinstance(out, (tuple, list)) else out


def convert(ns, component, ir_dir):
    """Converts the component (random weights, peer_torch's config) and its step inputs to OpenVINO IR in `ir_dir`."""
    import inspect
    import numpy as np
    import openvino as ov
    import torch

    kind, cfg, folder = next(iter(ns["components"]("karlo")))
    m = ns["load_component"](kind, cfg, folder)
    args, kw = ns["step_inputs"](kind, m, 2)  # batch 2, as peer_torch.py times it
    names = list(inspect.signature(m.forward).parameters)
    call = dict(zip(names, args)); call.update(kw)
    tensors = {k: v for k, v in call.items() if isinstance(v, torch.Tensor)}
    # peer_torch.py's decoder mask is all ones (attend everywhere), the same as no mask; OpenVINO 2026.4 fails to
    # compile the traced mask's broadcast inside the decoder's attention, so the converted model is given none.
    # (Only the decoder's: the prior's mask also switches its causal mask on.)
    if kind == "decoder" and "attention_mask" in tensors and bool(tensors["attention_mask"].all()):
        del tensors["attention_mask"]
    constants = {k: v for k, v in call.items() if not isinstance(v, torch.Tensor)}  # the timestep 500

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__(); self.m = m

        def forward(self, *values):
            return main_output(self.m(**dict(zip(tensors, values)), **constants, return_dict=False))

    with torch.no_grad():
        model = ov.convert_model(Step().eval(), example_input=tuple(tensors.values()))
    ov.save_model(model, os.path.join(ir_dir, "model.xml"), compress_to_fp16=False)
    np.savez(os.path.join(ir_dir, "inputs.npz"), *[t.numpy() for t in tensors.values()])
    json.dump(dict(kind=kind, params=sum(p.numel() for p in m.parameters())), open(os.path.join(ir_dir, "meta.json"), "w"))


def time_openvino(ns, ir_dir, precision, threads):
    import numpy as np
    import openvino as ov

    meta = json.load(open(os.path.join(ir_dir, "meta.json")))
    inputs = np.load(os.path.join(ir_dir, "inputs.npz"))
    values = [inputs[f"arr_{i}"] for i in range(len(inputs.files))]
    core = ov.Core()
    compiled = core.compile_model(core.read_model(os.path.join(ir_dir, "model.xml")), "CPU", {
        "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    add_to_printed_lines(ns, backend=f"openvino-{precision}")
    ns["timeit"](f"{meta['kind']}_step", lambda: request.infer(values), reps=3, params=meta["params"])


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    peer, component, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    backend = "torch-fp32"
    if "--backend" in rest:
        i = rest.index("--backend")
        backend = rest[i + 1] if i + 1 < len(rest) else ""
        rest = rest[:i] + rest[i + 2:]
        if backend not in BACKENDS:
            sys.exit(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    threads = int(rest[rest.index("--threads") + 1]) if "--threads" in rest else 2

    if os.environ.get("PEER_OPENVINO_STEP"):  # the timing process of an OpenVINO backend
        ns = peer_namespace(peer, component, rest)
        time_openvino(ns, os.environ["PEER_OPENVINO_STEP"], backend.split("-")[1], threads)
        return
    if backend.startswith("openvino"):
        with tempfile.TemporaryDirectory() as ir_dir:
            convert(peer_namespace(peer, component, rest), component, ir_dir)
            env = dict(os.environ, PEER_OPENVINO_STEP=ir_dir)
            sys.exit(subprocess.call([sys.executable, __file__, peer, component, "--backend", backend] + rest, env=env))

    ns = peer_namespace(peer, component, rest)
    add_to_printed_lines(ns, backend=backend)
    if backend == "torch-bf16":
        import torch
        timeit = ns["timeit"]

        def autocast_timeit(name, fn, **kw):
            def step():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return fn()
            timeit(name, step, **kw)

        ns["timeit"] = autocast_timeit
    ns["models"]("karlo")


main()
