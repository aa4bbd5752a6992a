#!/usr/bin/env bash
# Install edgewatch on a gateway with no network, from a wheelhouse made by make-wheelhouse.sh:
#   ./install.sh WHEELHOUSE [PREFIX]        (default PREFIX /opt/edgewatch; needs python3 + python3-venv)
# Nothing is fetched: pip runs with --no-index and takes every wheel from WHEELHOUSE.
set -euo pipefail
WH=${1:?usage: install.sh WHEELHOUSE [PREFIX]}
PREFIX=${2:-/opt/edgewatch}
EXTRAS=$(cat "$WH/EXTRAS" 2>/dev/null || echo cpu)
python3 -m venv "$PREFIX"
"$PREFIX/bin/pip" install --no-index --find-links "$WH" --disable-pip-version-check -q "edgewatch[$EXTRAS]"
"$PREFIX/bin/edgewatch" --version
echo "installed in $PREFIX; next: deploy/systemd/README.md (config in /etc/edgewatch/edgewatch.toml)"
