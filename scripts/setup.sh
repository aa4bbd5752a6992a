#!/usr/bin/env bash
# Set up edgewatch for development on this machine, idempotently:
#   - the mosquitto broker binary (apt-get, when missing and we are root),
#   - a virtualenv in .venv with edgewatch installed editable with the
#     train, cpu, dev and metrics extras, torch pinned by constraints.txt,
#     and the lab (lab/pyproject.toml: `edgewatch-lab`, development only) beside it.
# A second run with unchanged pyproject.toml/constraints.txt takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing mosquitto (apt-get)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
    # Debian starts a system broker on 1883; edgewatch's tests and demo use their own.
  else
    echo "[setup] mosquitto is not installed and I cannot install it (need root + apt-get)." >&2
    echo "[setup] install it with your package manager; the demo falls back to an embedded broker." >&2
  fi
fi

# The dashboard's browser tests drive Debian's headless chromium through its chromedriver (they skip without).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing chromium and chromium-driver (apt-get) for the dashboard's browser tests"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
      || echo "[setup] chromium could not be installed: the dashboard's browser tests will skip" >&2
  else
    echo "[setup] chromium/chromedriver missing (need root + apt-get): the dashboard's browser tests will skip" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi

# dev includes amqtt, the demo's embedded fallback broker where mosquitto is missing.
extras="train,cpu,dev,metrics"

stamp=.venv/.edgewatch-installed
want=$( (cat pyproject.toml lab/pyproject.toml constraints.txt; echo "$extras") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing edgewatch[$extras] into .venv (torch pinned by constraints.txt)"
  # (grep drops pip's noise about this machine's optional local index folders)
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[$extras]" -e ./lab \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  # The Sparkplug B tests publish with pysparkplug's payload classes; it declares paho-mqtt<2 for its own
  # client (unused here), which edgewatch's paho pin excludes: installed without its dependencies.
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "pysparkplug==0.6.1" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$want" > "$stamp"
else
  echo "[setup] .venv is up to date"
fi
