#!/usr/bin/env bash
# Set everything up (idempotent), lint, type-check and run the test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy  # edge_runtime/: strict on pipeline/ (pyproject [tool.mypy])
exec .venv/bin/python -m pytest "$@"
