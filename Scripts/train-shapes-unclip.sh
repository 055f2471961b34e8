#!/bin/sh
# Retrains the embedded ShapesWorld model (Sources/UnCLIPShapesModel/shapes-unclip) from scratch, as it was made:
#   1. `unclip train all` with the relation recipe for CLIP (Scripts/shapes-unclip/train-all.json; the other stages
#      keep their defaults: prior 1500 steps, decoder 5000, super-resolution 3000);
#   2. the decoder continued twice, 5000 steps each with a fresh warm-up and cosine schedule (learning rate 3e-4,
#      seeds 4 and 5), each run starting from the previous run's exported EMA weights (`initialize_from`).
# About 2 h 37 min on a 2-core machine (docs/training.md). Each stage checkpoints; rerun with the same OUT to resume.
#
#   Scripts/train-shapes-unclip.sh [OUT]          (default OUT: shapes-unclip; stages in OUT.stage1, OUT.stage2)
#   UNCLIP=path/to/unclip Scripts/train-shapes-unclip.sh OUT
set -eu
OUT=${1:-shapes-unclip}
UNCLIP=${UNCLIP:-.build/release/unclip}
CONFIGS=$(cd "$(dirname "$0")/shapes-unclip" && pwd)
if [ ! -x "$UNCLIP" ]; then
    echo "error: $UNCLIP is not an executable; run 'swift build -c release' first or set UNCLIP" >&2
    exit 1
fi

"$UNCLIP" train all --out "$OUT.stage1" --config "$CONFIGS/train-all.json" --resume

# Each continuation trains into a copy of the previous directory (its decoder checkpoint left behind) and starts
# from that directory's exported decoder and text_proj weights.
continue_decoder() { # FROM TO SEED
    if [ ! -f "$2/model_index.json" ]; then
        mkdir -p "$2"
        (cd "$1" && tar --exclude=./checkpoints/decoder -cf - .) | (cd "$2" && tar xf -)
    fi
    printf '{"decoder": {"initialize_from": "%s", "training": {"steps": 5000, "learning_rate": 0.0003, "warmup_steps": 100, "seed": %s}}}\n' \
        "$(cd "$1" && pwd)" "$3" > "$2/decoder-continuation.json"
    "$UNCLIP" train decoder --out "$2" --config "$2/decoder-continuation.json" --resume
}
continue_decoder "$OUT.stage1" "$OUT.stage2" 4
continue_decoder "$OUT.stage2" "$OUT" 5
echo "pipeline written to $OUT"
