#!/bin/sh
# The paper's unCLIP-against-GLIDE comparison (§5.2, Figures 9 and 10) at an equal budget: in a copy of the embedded
# model (its CLIP, prior and super-resolution), a fresh unCLIP decoder and the GLIDE-style baseline (the same UNet
# and text_proj conditioned on the caption alone, `unclip train decoder --conditioning caption`), each 2000 steps of
# 32 with the decoder recipe's other settings and seed (Scripts/glide-baseline/*.json), then the guidance sweep.
# About 13 min per 1000 steps each on a 2-core machine, the sweep (50 prompts × 4 per decoder and scale) about
# 35 min more (docs/paper.md). Each training checkpoints; rerun to resume.
#
#   Scripts/train-glide-baseline.sh [OUT] [PROMPTS]    (default OUT: glide-baseline; PROMPTS: 50)
#   UNCLIP=path/to/unclip Scripts/train-glide-baseline.sh OUT 200
set -eu
OUT=${1:-glide-baseline}
PROMPTS=${2:-50}
UNCLIP=${UNCLIP:-.build/release/unclip}
HERE=$(cd "$(dirname "$0")" && pwd)
CONFIGS="$HERE/glide-baseline"
if [ ! -x "$UNCLIP" ]; then
    echo "error: $UNCLIP is not an executable; run 'swift build -c release' first or set UNCLIP" >&2
    exit 1
fi
EMBEDDED="$HERE/../Sources/UnCLIPShapesModel/shapes-unclip"
if [ ! -f "$OUT/model_index.json" ]; then
    mkdir -p "$OUT"
    (cd "$EMBEDDED" && tar -cf - .) | (cd "$OUT" && tar xf -)  # both decoders are replaced below
fi
# The baseline, then the unCLIP decoder it is compared with, into the same directory (checkpoints/glide_decoder and
# checkpoints/decoder). One after the other: side by side with one thread each, each ran at a third of the speed.
"$UNCLIP" train decoder --out "$OUT" --config "$CONFIGS/glide.json" --resume
"$UNCLIP" train decoder --out "$OUT" --config "$CONFIGS/unclip.json" --resume
"$UNCLIP" evaluate --task guidance --model "$OUT" --prompts "$PROMPTS" -n 4 --figures "$OUT/figures"
