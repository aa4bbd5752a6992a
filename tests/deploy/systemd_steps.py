"""The install steps of deploy/systemd/README.md as runnable lines, moved under a test root folder."""

from __future__ import annotations

import re
from pathlib import Path

# Not run in a test: the wheel is built by the test itself; no user is created; no systemd runs here.
SKIPPED = ("python3 -m pip wheel", "useradd ", "systemctl ", "journalctl ")


def install_lines(readme: str, root: Path) -> tuple[list[str], list[str]]:
    """``(lines to run, lines skipped)`` from the first ```bash block after ``## Install``; system paths
    (/opt, /etc) moved under ``root``, ``-o root -g edgewatch`` dropped (the test makes no user)."""
    section = readme.split("## Install", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    run, skipped = [], []
    for raw in block.splitlines():
        line = raw.split("  #", 1)[0].strip()
        if not line:
            continue
        if line.startswith(SKIPPED):
            skipped.append(line)
            continue
        line = line.replace(" -o root -g edgewatch", "")
        line = re.sub(r"(?<![\w.])/(opt|etc)/", lambda m: f"{root}/{m.group(1)}/", line)
        for folder in re.findall(rf"{re.escape(str(root))}/etc/systemd/system/?", line):
            Path(folder).mkdir(parents=True, exist_ok=True)
        run.append(line)
    return run, skipped
