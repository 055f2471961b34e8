#!/usr/bin/env bash
# One denoising step of every full-size Karlo component (random weights) on six backends in one sitting: PyTorch
# eager fp32 and bf16 autocast, OpenVINO f32 and bf16 (diffusers' own modules converted by openvino.convert_model;
# Scripts/peer_torch_component.py, one component and backend per process so each gets its own peak RSS), and
# swift-unclip fp32 and bf16 (`unclip bench karlo`, release build), alternating component by component so all see
# the same machine load; then a markdown table of times, ratios, peak memory, achieved GFLOP/s against the host's
# peak (`unclip bench peak`, run before and after the rounds) and bf16's error against fp32.
#
#   Scripts/bench_karlo.sh [--reps N] [--threads N] [--rounds N] [--peers torch-fp32,torch-bf16,...] [component ...]
#
# Components: text_encoder image_encoder prior decoder super_res_first (default: all). peer_torch.py times 3 reps per
# component in karlo mode whatever --reps says; --reps sets the Swift side (default 3, to match). --peers narrows the
# peer backends (default all four); the Swift side always runs fp32 and, where the CPU has bf16, bf16.
# The Python side needs torch, diffusers, transformers and openvino: with no PYTHON given, Scripts/peer-python.sh makes
# (once) a virtual environment in .venv-bench and installs them there (benchmark-only tools, never runtime dependencies).
# Both sides run with OMP_WAIT_POLICY=passive unless the environment sets it: on this shared 2-core machine a
# spinning OpenMP thread that shares a core with the thread it waits for costs a 4 ms scheduler slice per parallel
# region, which made single steps 2–5× slower on *both* sides (PyTorch's bundled libgomp honours the variable too);
# OMP_WAIT_POLICY=active reproduces the default behaviour.
# Environment: PEER (path of peer_torch.py, default /work/shared/bench/peer_torch.py), PYTHON (an interpreter with
# the packages; skips the virtual environment), SCRATCH (SwiftPM scratch path, default .build-karlo), UNCLIP (an
# already built `unclip` binary; skips the build). One round of all components takes about 25–40 minutes on 2 cores
# (super_res_first dominates: about 40 s a step on the fp32 backends).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=3 ROUNDS=1
THREADS=${OMP_NUM_THREADS:-2}
PEERS=torch-fp32,torch-bf16,openvino-f32,openvino-bf16
COMPONENTS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --reps) REPS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --peers) PEERS=$2; shift 2 ;;
        text_encoder|image_encoder|prior|decoder|super_res_first) COMPONENTS+=("$1"); shift ;;
        *) echo "unknown argument $1 (expected --reps N, --threads N, --rounds N, --peers LIST or a component name)" >&2; exit 2 ;;
    esac
done
[[ ${#COMPONENTS[@]} -eq 0 ]] && COMPONENTS=(text_encoder image_encoder prior decoder super_res_first)
PEER=${PEER:-/work/shared/bench/peer_torch.py}
SCRATCH=${SCRATCH:-.build-karlo}
IFS=, read -r -a PEER_LIST <<< "$PEERS"
for p in "${PEER_LIST[@]}"; do
    case "$p" in torch-fp32|torch-bf16|openvino-f32|openvino-bf16) ;; *) echo "--peers: unknown backend $p" >&2; exit 2 ;; esac
done
PYTHON=$(Scripts/peer-python.sh)
if [[ -z "${UNCLIP:-}" ]]; then
    swift build -c release --scratch-path "$SCRATCH" --product unclip >&2
    UNCLIP="$SCRATCH/release/unclip"
fi
export OMP_NUM_THREADS=$THREADS
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
SWIFT_PRECISIONS=(fp32)
grep -qw avx512_bf16 /proc/cpuinfo && SWIFT_PRECISIONS+=(bf16)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# The host's peak in oneDNN's best kernels, before and after the rounds (the better of the two is used).
"$UNCLIP" bench peak --reps 10 --threads "$THREADS" >> "$OUT/peak.jsonl"
for ((r = 0; r < ROUNDS; r++)); do
    for c in "${COMPONENTS[@]}"; do
        for p in "${PEER_LIST[@]}"; do
            echo "round $((r + 1))/$ROUNDS: $c, $p (load $(cut -d' ' -f1 /proc/loadavg))" >&2
            "$PYTHON" Scripts/peer_torch_component.py "$PEER" "$c" --threads "$THREADS" --backend "$p" 2>>"$OUT/peer.log" \
                | grep '^{' >> "$OUT/$p.$r.jsonl" || echo "  $p failed on $c (see the log below)" >&2
        done
        for p in "${SWIFT_PRECISIONS[@]}"; do
            echo "round $((r + 1))/$ROUNDS: $c, swift-$p (load $(cut -d' ' -f1 /proc/loadavg))" >&2
            "$UNCLIP" bench karlo --components "$c" --threads "$THREADS" --reps "$REPS" --precision "$p" \
                $([[ $p == bf16 ]] && echo --compare-fp32) >> "$OUT/swift-$p.$r.jsonl"
        done
    done
done
"$UNCLIP" bench peak --reps 10 --threads "$THREADS" >> "$OUT/peak.jsonl"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
if grep -qi "error\|traceback" "$OUT/peer.log" 2>/dev/null; then tail -20 "$OUT/peer.log" >&2; fi

python3 - "$OUT" "$ROUNDS" "$THREADS" "$REPS" "$LOAD_BEFORE" "$LOAD_AFTER" "$OMP_WAIT_POLICY" "$PEERS" <<'PY'
import json, os, statistics, sys
out, rounds, threads, reps, load0, load1, policy, peers = sys.argv[1:9]
rounds = int(rounds)
backends = peers.split(",") + ["swift-fp32", "swift-bf16"]
def load(kind, r):
    rows = {}
    path = os.path.join(out, f"{kind}.{r}.jsonl")
    for line in open(path) if os.path.exists(path) else []:
        line = line.strip()
        if line.startswith("{"):
            d = json.loads(line); rows[d["name"]] = d
    return rows
runs = {b: [load(b, r) for r in range(rounds)] for b in backends}
names = []
for b in backends:
    for d in runs[b]:
        names += [n for n in d if n not in names]
def rows(b, n): return [d[n] for d in runs[b] if n in d]
def median(b, n):
    v = [x["median_s"] for x in rows(b, n)]
    return statistics.median(v) if v else None
def minimum(b, n):
    v = [x["min_s"] for x in rows(b, n)]
    return min(v) if v else None
def peak(b, n):
    v = [x.get("peak_rss_gb") for x in rows(b, n) if x.get("peak_rss_gb") is not None]
    return max(v) if v else None
def f(x, d=3): return "–" if x is None else f"{x:.{d}f}"
def ratio(a, b): return "–" if a is None or b is None else f"{a / b:.2f}"
print(f"{rounds} round(s); peers 3 reps, swift {reps} reps per component; {threads} threads, OMP_WAIT_POLICY={policy}; "
      f"load average {load0} before, {load1} after. Times (s) are medians over rounds of per-round medians; "
      f"ratios use the min-of-reps times (the least disturbed by other processes).\n")
print("| component | " + " | ".join(f"{b} s" for b in backends) + " | swift fp32 / torch fp32 | swift bf16 / torch fp32 | "
      "swift bf16 / torch bf16 | swift bf16 / best OpenVINO | params |")
print("|---|" + "---:|" * (len(backends) + 5))
for n in names:
    mins = {b: minimum(b, n) for b in backends}
    ov = [mins[b] for b in backends if b.startswith("openvino") and mins[b] is not None]
    params = next((x["params"] for b in backends for x in rows(b, n)), 0)
    print(f"| {n} | " + " | ".join(f(median(b, n)) for b in backends) +
          f" | {ratio(mins['swift-fp32'], mins.get('torch-fp32'))} | {ratio(mins['swift-bf16'], mins.get('torch-fp32'))} | "
          f"{ratio(mins['swift-bf16'], mins.get('torch-bf16'))} | {ratio(mins['swift-bf16'], min(ov) if ov else None)} | {params:,} |")
print("\nPeak RSS (GiB, VmHWM of the process that built and ran the component):\n")
print("| component | " + " | ".join(backends) + " | swift fp32 / torch fp32 | swift bf16 / torch fp32 |")
print("|---|" + "---:|" * (len(backends) + 2))
for n in names:
    pk = {b: peak(b, n) for b in backends}
    print(f"| {n} | " + " | ".join(f(pk[b], 2) for b in backends) +
          f" | {ratio(pk['swift-fp32'], pk.get('torch-fp32'))} | {ratio(pk['swift-bf16'], pk.get('torch-fp32'))} |")
best = {}
for line in open(os.path.join(out, "peak.jsonl")):
    if line.startswith("{"):
        d = json.loads(line); best[d["name"]] = max(best.get(d["name"], 0), d["gflops_per_s"])
if best:
    print("\nThroughput: the step's convolution, linear, matrix-product and attention FLOPs over its min time, against "
          "this sitting's best oneDNN matrix product (2048³) of the same precision"
          + "".join(f"; {k} {v:.0f} GFLOP/s" for k, v in sorted(best.items())) + ":\n")
    print("| component | GFLOP per step | swift fp32 GFLOP/s | % of fp32 peak | swift bf16 GFLOP/s | % of bf16 peak |")
    print("|---|---:|---:|---:|---:|---:|")
    for n in names:
        r32, r16 = rows("swift-fp32", n), rows("swift-bf16", n)
        if not r32 or "gflops_per_s" not in r32[0]: continue
        g32 = max(x["gflops_per_s"] for x in r32)
        g16 = max(x["gflops_per_s"] for x in r16) if r16 else None
        p32, p16 = best.get("matmul_2048_fp32"), best.get("matmul_2048_bf16")
        pct = lambda g, p: "–" if g is None or not p else f"{100 * g / p:.0f} %"
        print(f"| {n} | {r32[0]['gflop']:.1f} | {g32:.0f} | {pct(g32, p32)} | {f(g16, 0)} | {pct(g16, p16)} |")
errs = [(n, x) for n in names for x in rows("swift-bf16", n) if "max_rel_err" in x]
if errs:
    print("\nswift bf16 against swift fp32, one step's output (max |Δ| / max |y| and mean |Δ| / mean |y|):\n")
    print("| component | max rel. error | mean rel. error |\n|---|---:|---:|")
    seen = set()
    for n, x in errs:
        if n in seen: continue
        seen.add(n); print(f"| {n} | {x['max_rel_err']:.2e} | {x['mean_rel_err']:.2e} |")
PY
