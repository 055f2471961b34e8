#!/usr/bin/env bash
# One denoising step of every full-size Karlo component (random weights): PyTorch (peer_torch.py karlo, run one
# component per process by Scripts/peer_torch_component.py so each gets its own peak RSS) and swift-unclip
# (`unclip bench karlo`, release build) in one sitting, alternating component by component so both see the same
# machine load, then a markdown table of swift/torch ratios and peak memory.
#
#   Scripts/bench_karlo.sh [--reps N] [--threads N] [--rounds N] [component ...]
#
# Components: text_encoder image_encoder prior decoder super_res_first (default: all). peer_torch.py times 3 reps per
# component in karlo mode whatever --reps says; --reps sets the Swift side (default 3, to match).
# Both sides run with OMP_WAIT_POLICY=passive unless the environment sets it: on this shared 2-core machine a
# spinning OpenMP thread that shares a core with the thread it waits for costs a 4 ms scheduler slice per parallel
# region, which made single steps 2–5× slower on *both* sides (PyTorch's bundled libgomp honours the variable too);
# OMP_WAIT_POLICY=active reproduces the default behaviour.
# Environment: PEER (path of peer_torch.py, default /work/shared/bench/peer_torch.py), SCRATCH (SwiftPM scratch
# path, default .build-karlo), UNCLIP (an already built `unclip` binary; skips the build). Each round takes about
# 2–4 minutes per component pair on 2 cores (super_res_first dominates).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=3 ROUNDS=1
THREADS=${OMP_NUM_THREADS:-2}
COMPONENTS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --reps) REPS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        text_encoder|image_encoder|prior|decoder|super_res_first) COMPONENTS+=("$1"); shift ;;
        *) echo "unknown argument $1 (expected --reps N, --threads N, --rounds N or a component name)" >&2; exit 2 ;;
    esac
done
[[ ${#COMPONENTS[@]} -eq 0 ]] && COMPONENTS=(text_encoder image_encoder prior decoder super_res_first)
PEER=${PEER:-/work/shared/bench/peer_torch.py}
SCRATCH=${SCRATCH:-.build-karlo}
if [[ -z "${UNCLIP:-}" ]]; then
    swift build -c release --scratch-path "$SCRATCH" --product unclip >&2
    UNCLIP="$SCRATCH/release/unclip"
fi
export OMP_NUM_THREADS=$THREADS
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for ((r = 0; r < ROUNDS; r++)); do
    for c in "${COMPONENTS[@]}"; do
        echo "round $((r + 1))/$ROUNDS: $c (load $(cut -d' ' -f1 /proc/loadavg))" >&2
        python3 Scripts/peer_torch_component.py "$PEER" "$c" --threads "$THREADS" >> "$OUT/torch.$r.jsonl"
        "$UNCLIP" bench karlo --components "$c" --threads "$THREADS" --reps "$REPS" >> "$OUT/swift.$r.jsonl"
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$OUT" "$ROUNDS" "$THREADS" "$REPS" "$LOAD_BEFORE" "$LOAD_AFTER" "$OMP_WAIT_POLICY" <<'PY'
import json, os, statistics, sys
out, rounds, threads, reps, load0, load1, policy = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
def load(kind, r):
    rows = {}
    path = os.path.join(out, f"{kind}.{r}.jsonl")
    for line in open(path) if os.path.exists(path) else []:
        line = line.strip()
        if line.startswith("{"):
            d = json.loads(line); rows[d["name"]] = d
    return rows
torch = [load("torch", r) for r in range(rounds)]
swift = [load("swift", r) for r in range(rounds)]
names = [n for n in torch[0]]
print(f"{rounds} round(s); torch 3 reps, swift {reps} reps per component; {threads} threads, OMP_WAIT_POLICY={policy}; "
      f"load average {load0} before, {load1} after. Times are medians over rounds of per-round medians; "
      f"the min columns are the fastest single step seen (the least disturbed by other processes).\n")
print("| component | torch s | swift s | swift/torch | spread | torch min s | swift min s | min ratio | torch peak RSS GiB | swift peak RSS GiB | params |")
print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
for n in names:
    t = [d[n]["median_s"] for d in torch if n in d]
    s = [d[n]["median_s"] for d in swift if n in d]
    tp = max(d[n].get("peak_rss_gb", 0) for d in torch if n in d)
    tmin = min(d[n]["min_s"] for d in torch if n in d)
    if not s:
        print(f"| {n} | {statistics.median(t):.3f} | – | – | – | {tmin:.3f} | – | – | {tp:.2f} | – | {torch[0][n]['params']:,} |"); continue
    smin = min(d[n]["min_s"] for d in swift if n in d)
    sp = max(d[n].get("peak_rss_gb") or 0 for d in swift if n in d)
    ratios = sorted(sd[n]["median_s"] / td[n]["median_s"] for td, sd in zip(torch, swift) if n in sd and n in td)
    print(f"| {n} | {statistics.median(t):.3f} | {statistics.median(s):.3f} | {statistics.median(ratios):.2f} | "
          f"{ratios[0]:.2f}–{ratios[-1]:.2f} | {tmin:.3f} | {smin:.3f} | {smin / tmin:.2f} | {tp:.2f} | {sp:.2f} | "
          f"{torch[0][n]['params']:,} |")
PY
