#!/usr/bin/env bash
# The whole Karlo text-to-image pipeline end to end, on random weights at the real configs: diffusers'
# UnCLIPPipeline against `unclip generate --model DIR` at fp32 and bf16, the same steps (Karlo's defaults: prior 25,
# decoder 25, super-resolution 7), one image 64 → 256, diffusers' noise draws replayed by unclip (--noise) so the
# two fp32 images can be compared value by value.
#
#   Scripts/karlo_end_to_end.sh [--dir DIR] [--out OUT] [--threads N]
#
# DIR (default /tmp/karlo-random) is made by Scripts/make_random_karlo.py when it holds no pipeline yet (13.7 GB of
# fp32 safetensors, diffusers' own classes and save_pretrained). Each run is its own process, timed whole with GNU
# time (wall seconds, peak RSS); diffusers' per-component load and forward times come from check_with_diffusers.py
# --timings, unclip's from `generate --timings`. Prints a markdown table; OUT (default a temporary directory) keeps
# the images, the noise file and the logs. Takes about 30 minutes on 2 cores. Environment: PYTHON, UNCLIP, SCRATCH
# as in Scripts/bench_karlo.sh; OMP_WAIT_POLICY=passive on both sides unless set.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=/tmp/karlo-random OUT="" THREADS=${OMP_NUM_THREADS:-2}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dir) DIR=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        *) echo "unknown argument $1 (expected --dir DIR, --out OUT or --threads N)" >&2; exit 2 ;;
    esac
done
[[ -x /usr/bin/time ]] || { echo "needs GNU time (/usr/bin/time: apt-get install time)" >&2; exit 1; }
PYTHON=$(Scripts/peer-python.sh)
if [[ -z "${UNCLIP:-}" ]]; then
    SCRATCH=${SCRATCH:-.build-karlo}
    swift build -c release --scratch-path "$SCRATCH" --product unclip >&2
    UNCLIP="$SCRATCH/release/unclip"
fi
[[ -n "$OUT" ]] || { OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT; }
mkdir -p "$OUT"
export OMP_NUM_THREADS=$THREADS
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
PROMPT="a high-resolution photograph of a big red frog on a green leaf."

if [[ ! -f "$DIR/model_index.json" ]]; then
    echo "making $DIR (random weights, Karlo's configs)" >&2
    "$PYTHON" Scripts/make_random_karlo.py "$DIR" >&2
fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "diffusers (load $(cut -d' ' -f1 /proc/loadavg))" >&2
/usr/bin/time -f "%e %M" -o "$OUT/diffusers.time" \
    "$PYTHON" Scripts/check_with_diffusers.py "$DIR" "$PROMPT" --out "$OUT" --steps 25 25 7 --timings 2>"$OUT/diffusers.log" >&2
SWIFT_PRECISIONS=(fp32)
grep -qw avx512_bf16 /proc/cpuinfo && SWIFT_PRECISIONS+=(bf16)
for p in "${SWIFT_PRECISIONS[@]}"; do
    echo "unclip $p (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    /usr/bin/time -f "%e %M" -o "$OUT/swift-$p.time" \
        "$UNCLIP" generate "$PROMPT" --model "$DIR" --noise "$OUT/noise.safetensors" --precision "$p" \
        --prior-steps 25 --decoder-steps 25 --super-res-steps 7 --timings --quiet -o "$OUT/swift-$p.png" 2>"$OUT/swift-$p.log" >&2
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

"$PYTHON" - "$OUT" "$THREADS" "$LOAD_BEFORE" "$LOAD_AFTER" "${SWIFT_PRECISIONS[@]}" <<'PY'
import json, re, sys
import numpy as np, PIL.Image
out, threads, load0, load1, precisions = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
def gnu_time(name):
    wall, kb = open(f"{out}/{name}.time").read().split()[-2:]
    return float(wall), int(kb) * 1024 / 2**30
def swift_stages(p):
    stages = {}
    for line in open(f"{out}/swift-{p}.log"):
        m = re.match(r"\s+(\w+): load ([\d.]+) s, stage ([\d.]+) s", line)
        if m: stages[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return stages
d = json.load(open(f"{out}/diffusers-timings.json"))
image = lambda n: np.asarray(PIL.Image.open(f"{out}/{n}.png").convert("RGB")).astype(int)
ref = image("diffusers")
rows = [("diffusers fp32", *gnu_time("diffusers"), sum(d["load_s"].values()), d["stage_s"], None)]
for p in precisions:
    st = swift_stages(p)
    diff = np.abs(image(f"swift-{p}") - ref)
    rows.append((f"swift-unclip {p}", *gnu_time(f"swift-{p}"), sum(v[0] for v in st.values()),
                 {k: v[1] for k, v in st.items()}, diff))
names = ["text_encoder", "prior", "decoder", "super_res_first", "super_res_last"]
print(f"{threads} threads, OMP_WAIT_POLICY passive; load average {load0} before, {load1} after. One image, 64 → 256, "
      f"prior 25 / decoder 25 / super-resolution 7 steps; diffusers' noise replayed by unclip.\n")
print("| run | process wall s | peak RSS GiB | loading s | " + " | ".join(f"{n} s" for n in names) +
      " | image vs diffusers: max / mean abs. diff (levels) |")
print("|---|---:|---:|---:|" + "---:|" * len(names) + "---|")
for label, wall, rss, load, stages, diff in rows:
    # diffusers' decoder forward time includes text_proj's (tiny); unclip's decoder stage includes text_proj too.
    cells = [f"{stages.get(n, 0) + (stages.get('text_proj', 0) if n == 'decoder' and label.startswith('diffusers') else 0):.1f}" for n in names]
    d_cell = "reference" if diff is None else f"{diff.max()} / {diff.mean():.3f}"
    print(f"| {label} | {wall:.1f} | {rss:.2f} | {load:.1f} | " + " | ".join(cells) + f" | {d_cell} |")
PY
