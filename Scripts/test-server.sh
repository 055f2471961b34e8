#!/usr/bin/env bash
# The live-server tests of docs/serving.md: the official openai client against `unclip serve` on loopback (every
# images route, both response formats, its BadRequest/Authentication/RateLimit errors), the faults (hang-ups,
# truncated and 100 MB bodies, a PNG bomb, SIGTERM during a job) and a bounded load test (50 clients × 3
# generations at 2 steps, twice, with the CLI's images/s beside it). Exits non-zero when any check fails.
# Usage: Scripts/test-server.sh [FIGURES.json]   (a few minutes on 2 cores; builds unclip if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import openai" 2>/dev/null || python3 -m pip install -q "openai>=1.50,<4" || python3 -m pip install -q --break-system-packages "openai>=1.50,<4"
# UNCLIP_BIN: an unclip already built (e.g. by `swift test -c release`, whose testable build a plain
# `swift build -c release` would redo from scratch); otherwise it is built here.
bin="${UNCLIP_BIN:-}"
if [ -z "$bin" ]; then
  swift build -c release --product unclip >/dev/null
  bin="$(swift build -c release --show-bin-path)/unclip"
fi
work=$(mktemp -d /tmp/unclip-server-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 -W ignore::DeprecationWarning Scripts/server/server_tests.py --unclip "$bin" --workdir "$work" \
  --figures "${1:-$work/figures.json}"
