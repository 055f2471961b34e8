#!/usr/bin/env bash
# The web page in headless Chromium (docs/serving.md, "The page"): installs Debian's chromium and chromium-driver
# and selenium when missing, then drives the page of a live `unclip serve`.
# Usage: Scripts/test-web.sh [SCREENSHOT.png]   (default: a temporary file)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
python3 -c "import selenium" 2>/dev/null || python3 -m pip install -q "selenium>=4.10,<5" || python3 -m pip install -q --break-system-packages "selenium>=4.10,<5"
# UNCLIP_BIN: an unclip already built (e.g. by `swift test -c release`, whose testable build a plain
# `swift build -c release` would redo from scratch); otherwise it is built here.
bin="${UNCLIP_BIN:-}"
if [ -z "$bin" ]; then
  swift build -c release --product unclip >/dev/null
  bin="$(swift build -c release --show-bin-path)/unclip"
fi
shot="${1:-$(mktemp /tmp/unclip-web.XXXXXX.png)}"
python3 Scripts/server/web_test.py --unclip "$bin" --screenshot "$shot"
echo "screenshot: $shot"
