#!/usr/bin/env bash
# Two `unclip serve` replicas behind Debian's nginx on loopback, sharing one --files-dir (docs/serving.md,
# "Replicas"): a `url` made by one replica is served by the other, both take traffic, and the load test of
# Scripts/server/server_tests.py runs through nginx (capacity: two queues of 17). Exits non-zero on failure.
# Usage: Scripts/test-replicas.sh [FIGURES.json]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nginx >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >/dev/null
fi
# UNCLIP_BIN: an unclip already built (e.g. by `swift test -c release`, whose testable build a plain
# `swift build -c release` would redo from scratch); otherwise it is built here.
bin="${UNCLIP_BIN:-}"
if [ -z "$bin" ]; then
  swift build -c release --product unclip >/dev/null
  bin="$(swift build -c release --show-bin-path)/unclip"
fi
work=$(mktemp -d /tmp/unclip-replicas.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
front=$(port); one=$(port); two=$(port)
for p in "$one" "$two"; do
  "$bin" serve --port "$p" --files-dir "$work/files" >"$work/replica-$p.log" 2>&1 &
  pids+=($!)
done
mkdir -p "$work/nginx"
sed -e "s|@WORK@|$work/nginx|g" -e "s|@FRONT@|$front|g" -e "s|@ONE@|$one|g" -e "s|@TWO@|$two|g" \
  Scripts/server/nginx-replicas.conf >"$work/nginx/nginx.conf"
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)
for p in "$one" "$two" "$front"; do
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$p/health" >/dev/null && break; sleep 0.1; done
done

# A url from replica one is served by replica two (and through nginx): the files are on the shared directory.
url=$(curl -sf "http://127.0.0.1:$one/v1/images/generations" -H 'content-type: application/json' \
  -d '{"prompt": "a red circle", "steps": 2, "size": "256x256"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["url"])')
path=${url#http://127.0.0.1:$one}
cmp <(curl -sf "http://127.0.0.1:$one$path") <(curl -sf "http://127.0.0.1:$two$path")
cmp <(curl -sf "http://127.0.0.1:$one$path") <(curl -sf "http://127.0.0.1:$front$path")
echo "PASS url made by one replica served by the other and through nginx"

python3 Scripts/server/server_tests.py --only load --base "http://127.0.0.1:$front" --capacity 34 \
  --figures "${1:-$work/figures.json}"
served() { curl -sf "http://127.0.0.1:$1/metrics" | awk '/^unclip_requests_total\{route="\/v1\/images\/generations",status="200"\}/ {print $2}'; }
a=$(served "$one"); b=$(served "$two")
echo "generations answered 200: replica one $a, replica two $b"
[ "${a%.*}" -gt 50 ] && [ "${b%.*}" -gt 50 ] && echo "PASS both replicas took the load"
