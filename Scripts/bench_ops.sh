#!/usr/bin/env bash
# Op benchmark: PyTorch (peer_torch.py ops) and swift-unclip (`unclip bench ops`, release build) in one sitting,
# alternating round by round so both see the same machine load, then a markdown table of swift/torch ratios.
#
#   Scripts/bench_ops.sh [--rounds N] [--reps N] [--threads N]
#
# Environment: PEER (path of peer_torch.py, default /work/shared/bench/peer_torch.py), SCRATCH (SwiftPM scratch
# path, default .build-dnnl), UNCLIP (an already built `unclip` binary; skips the build).
# The ratio column is the median over rounds of swift_median / torch_median; "spread" is the lowest and highest
# per-round ratio, a direct reading of the noise on this shared machine; "min ratio" compares the fastest single
# repetition of each side over all rounds, the reading least disturbed by other processes.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3 REPS=5
THREADS=${OMP_NUM_THREADS:-2}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        *) echo "unknown option $1 (expected --rounds N, --reps N, --threads N)" >&2; exit 2 ;;
    esac
done
PEER=${PEER:-/work/shared/bench/peer_torch.py}
SCRATCH=${SCRATCH:-.build-dnnl}
if [[ -z "${UNCLIP:-}" ]]; then
    swift build -c release --scratch-path "$SCRATCH" --product unclip >&2
    UNCLIP="$SCRATCH/release/unclip"
fi
export OMP_NUM_THREADS=$THREADS

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for ((r = 0; r < ROUNDS; r++)); do
    echo "round $((r + 1))/$ROUNDS" >&2
    python3 "$PEER" ops --threads "$THREADS" --reps "$REPS" > "$OUT/torch.$r.jsonl"
    "$UNCLIP" bench ops --threads "$THREADS" --reps "$REPS" > "$OUT/swift.$r.jsonl"
done

python3 - "$OUT" "$ROUNDS" "$THREADS" "$REPS" <<'PY'
import json, os, statistics, sys
out, rounds, threads, reps = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def load(kind, r):
    rows = {}
    for line in open(os.path.join(out, f"{kind}.{r}.jsonl")):
        line = line.strip()
        if line.startswith("{"):
            d = json.loads(line); rows[d["name"]] = d
    return rows
torch = [load("torch", r) for r in range(rounds)]
swift = [load("swift", r) for r in range(rounds)]
names = list(torch[0])
print(f"{rounds} rounds × {reps} reps, {threads} threads; times are medians over rounds of per-round medians.\n")
print("| op | torch ms | swift ms | swift/torch | spread | min ratio | swift GFLOP/s | torch GFLOP/s |")
print("|---|---:|---:|---:|---|---:|---:|---:|")
for n in names:
    t = [d[n]["median_s"] for d in torch if n in d]
    s = [d[n]["median_s"] for d in swift if n in d]
    if not s:
        print(f"| {n} | {statistics.median(t)*1e3:.3f} | – | – | – | – | – | – |"); continue
    ratios = sorted(sd[n]["median_s"] / td[n]["median_s"] for td, sd in zip(torch, swift) if n in sd and n in td)
    gf = torch[0][n].get("gflop")
    tm, sm = statistics.median(t), statistics.median(s)
    sg = f"{gf / sm:.0f}" if gf else "–"
    tg = f"{gf / tm:.0f}" if gf else "–"
    tmin = min(d[n]["min_s"] for d in torch if n in d)
    smin = min(d[n]["min_s"] for d in swift if n in d)
    print(f"| {n} | {tm*1e3:.3f} | {sm*1e3:.3f} | {statistics.median(ratios):.2f} | {ratios[0]:.2f}–{ratios[-1]:.2f} | "
          f"{smin / tmin:.2f} | {sg} | {tg} |")
PY
