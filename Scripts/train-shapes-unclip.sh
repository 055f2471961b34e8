#!/bin/sh
# Retrains the embedded ShapesWorld model (Sources/UnCLIPShapesModel/shapes-unclip) from scratch, as it was made:
#   1. `unclip train all` with the relation recipe for CLIP without the binding negatives, decoder 5000 steps,
#      super-resolution 3000 and the 128 → 512 upsampler 3000 (Scripts/shapes-unclip/train-all.json pins these:
#      `train all`'s defaults have since become the two-hour recipe, docs/training.md); the prior keeps its defaults
#      (1500 steps); the 512 stage was added to the shipped model later, trained alone with its defaults
#      (`unclip train super_res --stage 2 --precision bf16`); the shipped weights are that 1500-step schedule's
#      step-1200 checkpoint (37 min here; docs/training.md, "The 512 stage");
#   2. the decoder continued twice, 5000 steps each with a fresh warm-up and cosine schedule (learning rate 3e-4,
#      seeds 4 and 5), each run starting from the previous run's exported EMA weights (`initialize_from`);
#   3. CLIP fine-tuned 800 steps with the binding negatives (Scripts/shapes-unclip/clip-binding.json, started from
#      stage 3's towers), the prior retrained on it (defaults), and the decoder continued twice more (seeds 6, 7).
# About 4 h 10 min on a 2-core machine (docs/training.md). Each stage checkpoints; rerun with the same OUT to resume.
#
#   Scripts/train-shapes-unclip.sh [OUT]          (default OUT: shapes-unclip; stages in OUT.stage1 … OUT.stage4)
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

# A decoder continuation starts from FROM's exported decoder and text_proj weights with a fresh schedule; each stage
# trains in a copy of the previous directory (its checkpoints left behind).
copy_pipeline() { # FROM TO
    if [ ! -f "$2/model_index.json" ]; then
        mkdir -p "$2"
        (cd "$1" && tar --exclude=./checkpoints -cf - .) | (cd "$2" && tar xf -)
    fi
}
continue_decoder() { # FROM DIR SEED
    printf '{"decoder": {"initialize_from": "%s", "training": {"steps": 5000, "learning_rate": 0.0003, "warmup_steps": 100, "seed": %s}}}\n' \
        "$(cd "$1" && pwd)" "$3" > "$2/decoder-continuation.json"
    "$UNCLIP" train decoder --out "$2" --config "$2/decoder-continuation.json" --resume
}
copy_pipeline "$OUT.stage1" "$OUT.stage2" && continue_decoder "$OUT.stage1" "$OUT.stage2" 4
copy_pipeline "$OUT.stage2" "$OUT.stage3" && continue_decoder "$OUT.stage2" "$OUT.stage3" 5

# Stage 4, the binding negatives: CLIP starts from stage 3's towers (its logit scale from the recipe's final value,
# ln 20.2, in clip-binding.json), the prior is retrained from scratch on the new CLIP, and the decoder continues from
# stage 3's weights on the new embeddings.
copy_pipeline "$OUT.stage3" "$OUT.stage4"
sed "s|\"binding_negatives\"|\"initialize_from\": \"$(cd "$OUT.stage3" && pwd)\", \"binding_negatives\"|" \
    "$CONFIGS/clip-binding.json" > "$OUT.stage4/clip-binding.json"
"$UNCLIP" train clip --out "$OUT.stage4" --config "$OUT.stage4/clip-binding.json" --resume
"$UNCLIP" train prior --out "$OUT.stage4" --resume
continue_decoder "$OUT.stage3" "$OUT.stage4" 6
# Stage 5: the decoder once more on the same embedding.
copy_pipeline "$OUT.stage4" "$OUT" && continue_decoder "$OUT.stage4" "$OUT" 7
echo "pipeline written to $OUT"
