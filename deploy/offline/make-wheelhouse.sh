#!/usr/bin/env bash
# Make a wheelhouse for an offline gateway install: the edgewatch wheel and every wheel its edge
# extras need, for another platform (default: 64-bit ARM Linux, CPython 3.11: Raspberry Pi OS /
# Debian bookworm on a Pi 4/5). Run from a checkout, on a machine with PyPI access:
#   deploy/offline/make-wheelhouse.sh OUT_DIR [PYTHON_VERSION] [EXTRAS]
#   e.g. deploy/offline/make-wheelhouse.sh wheelhouse-arm64 3.11 cpu,metrics
#        deploy/offline/make-wheelhouse.sh wheelhouse-jetson 3.10 cpu   # JetPack 6 (Ubuntu 22.04)
# Copy OUT_DIR and deploy/offline/install.sh to the gateway; there: ./install.sh OUT_DIR
# Platform tags: EDGEWATCH_PLATFORMS (default manylinux 2.28 / 2.17 aarch64, i.e. glibc >= 2.17).
set -euo pipefail
OUT=${1:?usage: make-wheelhouse.sh OUT_DIR [PYTHON_VERSION] [EXTRAS]}
PYV=${2:-3.11}
EXTRAS=${3:-cpu,metrics}
PLATFORMS=${EDGEWATCH_PLATFORMS:-manylinux_2_28_aarch64 manylinux_2_17_aarch64 manylinux2014_aarch64}
PIP=${PIP:-python3 -m pip}
cd "$(dirname "$0")/../.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# The edgewatch wheel itself is pure Python (py3-none-any).
$PIP wheel --no-deps -q -w "$OUT" .
wheel=$(ls -t "$OUT"/edgewatch-*.whl | head -1)
plat_args=()
for p in $PLATFORMS; do plat_args+=(--platform "$p"); done
$PIP download -q --only-binary=:all: "${plat_args[@]}" --python-version "$PYV" --implementation cp \
  -d "$OUT" "edgewatch[$EXTRAS] @ file://$wheel"
echo "$EXTRAS" > "$OUT/EXTRAS"
ls "$OUT"
du -sh "$OUT"
