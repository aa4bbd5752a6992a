#!/usr/bin/env bash
# Set everything up (idempotent) and run the end-to-end demo. Extra args go to `edgewatch-train demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/edgewatch-train demo "$@"
