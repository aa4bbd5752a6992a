"""Assemble README.md from docs/readme/*.md (in file-name order) plus the quick start.

Usage: python3 scripts/assemble_readme.py [--check]   (--check: exit 1 if README.md is stale)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK = """
## Quick start

On Linux with Python 3.11, as root (so the set-up can `apt-get install mosquitto`) or with Mosquitto
already installed:

```bash
./scripts/demo.sh     # set up .venv (minutes, the first time), then train, serve and detect (about a minute)
./scripts/test.sh     # set up, then ruff, mypy and the tests
```

Both are idempotent. The set-up pins PyTorch to the local CPU wheel (`constraints.txt`); the package
itself leaves torch open (`pip install '.[train,cpu]'` with the torch build you need).
"""


def assemble() -> str:
    parts = sorted((ROOT / "docs" / "readme").glob("*.md"))
    intro, rest = parts[0].read_text(), [p.read_text().rstrip() + "\n" for p in parts[1:]]
    return intro.rstrip() + "\n" + QUICK + "\n" + "\n".join(rest)


def main() -> int:
    parser = argparse.ArgumentParser(description="Assemble README.md from docs/readme/*.md.")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if README.md is stale")
    args = parser.parse_args()
    text = assemble()
    readme = ROOT / "README.md"
    if args.check:
        if readme.read_text() != text:
            print("README.md is stale: run python3 scripts/assemble_readme.py", file=sys.stderr)
            return 1
        return 0
    readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
