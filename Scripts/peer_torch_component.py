#!/usr/bin/env python3
"""Runs one component of `peer_torch.py karlo` in its own process and adds its peak RSS.

  peer_torch_component.py PEER COMPONENT [--threads N]

PEER is the path of peer_torch.py (unchanged, read-only); COMPONENT one of text_encoder, image_encoder, prior,
decoder, super_res_first. The timing code, configs and inputs are peer_torch.py's own: its source is executed
without its final dispatch, `karlo_configs` is narrowed to COMPONENT, and `models("karlo")` runs as usual. Each
JSON line it prints gains "peak_rss_gb" (VmHWM of this process), so the peak belongs to that component alone.
"""
import sys


def vm_hwm_gb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 2**30
    return float("nan")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    peer, component, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
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

    # peer_torch prints through print(json.dumps(...)); add the peak to each line it prints.
    import builtins, json
    real_print = builtins.print

    def print_with_peak(*args, **kw):
        if len(args) == 1 and isinstance(args[0], str) and args[0].startswith("{"):
            d = json.loads(args[0]); d["peak_rss_gb"] = vm_hwm_gb()
            args = (json.dumps(d),)
        real_print(*args, **kw)

    ns["print"] = print_with_peak
    ns["models"]("karlo")


main()
