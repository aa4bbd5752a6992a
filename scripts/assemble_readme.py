"""Assemble README.md from docs/readme/*.md sections (kept in order by file name)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK = """
## Quick start

On a fresh Linux machine with Python 3.11 and pip (root, or Mosquitto already installed):

```bash
./scripts/demo.sh
./scripts/test.sh
```

The first sets everything up (a `.venv` at the repository root with the trainer, the edge runtime and
the test tools; the `mosquitto` broker via apt-get where it is missing) and runs the end-to-end demo:
it trains a model, starts a private broker and the daemon, streams simulated sensors with injected
anomalies, shows the alerts and ends with a detection summary. The second sets everything up and runs
the test suite (ruff, then pytest; about 10 minutes on 2 cores). Both are idempotent: a second run skips
the installation. PyTorch is pinned to the CPU wheel through `constraints.txt` for the project's own
set-up; the package itself leaves torch open (`pip install 'edgewatch[train]'` with the torch you need).
"""
parts = sorted((ROOT / "docs" / "readme").glob("*.md"))
intro, rest = parts[0].read_text(), [p.read_text() for p in parts[1:]]
(ROOT / "README.md").write_text(intro.rstrip() + "\n" + QUICK + "\n" + "\n\n".join(r.rstrip() + "\n" for r in rest))
