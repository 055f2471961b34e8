#!/usr/bin/env bash
# Installs the Debian packages swift-unclip links against, when they are missing.
# oneDNN (GEMM and convolution), libpng and libjpeg (image files), zlib (animated PNG); libgomp comes with gcc.
set -euo pipefail
need=()
for pkg in libdnnl-dev libpng-dev libjpeg-dev zlib1g-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
