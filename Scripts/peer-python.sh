#!/usr/bin/env bash
# Prints the Python interpreter of the benchmark peers: $PYTHON when set, else .venv-bench/bin/python, made on first
# use with torch, diffusers, transformers, safetensors and openvino from PyPI (benchmark-only tools, never runtime
# dependencies of swift-unclip). Used by Scripts/bench_karlo.sh and Scripts/karlo_end_to_end.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; exit 0; fi
if [[ ! -x .venv-bench/bin/python ]] || ! .venv-bench/bin/python -c "import torch, diffusers, transformers, safetensors, openvino" 2>/dev/null; then
    python3 -m venv .venv-bench >&2
    .venv-bench/bin/pip install --quiet torch diffusers transformers safetensors openvino >&2
fi
echo "$PWD/.venv-bench/bin/python"
