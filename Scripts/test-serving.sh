#!/usr/bin/env bash
# Every live test of `unclip serve` (docs/serving.md), run by the README's test command after `swift test -c
# release`: the openai client, faults, load and SIGTERM (test-server.sh), the page in headless Chromium
# (test-web.sh), two replicas behind nginx (test-replicas.sh). Uses the unclip that `swift test -c release` built
# (its testable build; a plain `swift build -c release` would recompile every module); set UNCLIP_BIN to use another.
# Usage: Scripts/test-serving.sh   (about 3 minutes on 2 cores, plus the first installs of chromium and nginx)
set -euo pipefail
cd "$(dirname "$0")/.."
export UNCLIP_BIN="${UNCLIP_BIN:-$(swift build -c release --show-bin-path)/unclip}"
if [ ! -x "$UNCLIP_BIN" ]; then
  echo "test-serving: no unclip at $UNCLIP_BIN; run 'swift test -c release' first (or set UNCLIP_BIN)" >&2
  exit 1
fi
for script in test-server.sh test-web.sh test-replicas.sh; do
  echo "== Scripts/$script"
  start=$(date +%s)
  "Scripts/$script"
  echo "== Scripts/$script passed in $(( $(date +%s) - start )) s"
done
