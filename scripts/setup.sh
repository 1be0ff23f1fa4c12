#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks for building and testing Polytask:
# Mesa's Vulkan driver (wgpu without a GPU), Debian's Chromium (browser tests), OpenBLAS
# (the native CPU backend's matrix products), the
# Python packages of the numpy reference, and the web tool chain. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || need+=(mesa-vulkan-drivers)
dpkg -s chromium >/dev/null 2>&1 || need+=(chromium)
dpkg -s libopenblas-dev >/dev/null 2>&1 || need+=(libopenblas-dev)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
python3 -c "import numpy, safetensors, tokenizers" 2>/dev/null \
  || python3 -m pip install -q --disable-pip-version-check numpy safetensors tokenizers
scripts/setup-web.sh
