"""Every `edgewatch` / `edgewatch-train` / `edgewatch-lab` command in README.md and docs/*.md parses against the
real CLI, every relative link in them points at a file that exists, and README.md stays short.

The README cannot drift from the code: a renamed command or option, or a
bad choice value, fails here. Commands that need files which only exist on
a user's machine (their CSVs, /etc/edgewatch/...) are checked for command and
option names only. The quick-start scripts themselves run in CI (.ci/run runs
the second) and in tests/test_demo.py (the first one's `edgewatch-train demo`).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from edge_runtime.cli import main as edge_main
from lab.cli import main as lab_main
from trainer.cli import main as train_main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PROGRAMS = {"edgewatch": edge_main, "edgewatch-train": train_main, "edgewatch-lab": lab_main}


def readme_commands(text: str | None = None) -> list[str]:
    text = README.read_text() if text is None else text
    cmds: list[str] = []
    for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            line = re.sub(r"^(sudo\s+)?(\S*/)?(?=edgewatch(-train|-lab)?\s)", "", line)
            if re.match(r"^edgewatch(-train|-lab)?\s", line):
                line = line.split(" #", 1)[0].strip()
                line = line.split(" | ", 1)[0].split(" &", 1)[0].split(" > ", 1)[0].strip()
                cmds.append(line)
    return cmds


def test_readme_has_commands_for_both_programs() -> None:
    cmds = readme_commands()
    assert any(c.startswith("edgewatch-train ") for c in cmds)
    assert any(c.startswith("edgewatch run") for c in cmds)
    assert len(cmds) >= 10


def test_readme_runs_the_benchmarks_from_the_lab() -> None:
    """`edgewatch bench` moved to `edgewatch-lab bench` (the edge package holds no benchmark code)."""
    cmds = readme_commands()
    assert not [c for c in cmds if c.startswith("edgewatch bench")]
    assert any(c.startswith("edgewatch-lab bench ") for c in cmds)


def _resolve(argv: list[str]) -> tuple[click.Command, list[str], str]:
    prog, args = argv[0], argv[1:]
    cmd: click.Command = PROGRAMS[prog]
    ctx = click.Context(cmd, info_name=prog)
    name = prog
    while isinstance(cmd, click.Group) and args and not args[0].startswith("-"):
        sub = cmd.get_command(ctx, args[0])
        assert sub is not None, f"unknown command {args[0]!r} in `{' '.join(argv)}`"
        name, cmd, args = args[0], sub, args[1:]
        ctx = click.Context(cmd, info_name=name, parent=ctx)
    return cmd, args, name


def docs_commands() -> list[str]:
    return list(dict.fromkeys(c for p in DOCS for c in readme_commands(p.read_text())))


@pytest.mark.parametrize("line", readme_commands() + [c for c in docs_commands() if c not in readme_commands()])
def test_readme_command_parses(line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    argv = shlex.split(line)
    cmd, args, name = _resolve(argv)
    if "--help" in args or "-h" in args:
        return
    try:
        cmd.make_context(name, list(args))
    except click.BadParameter as exc:
        # A path that exists only on the user's machine: check names, not values.
        if "does not exist" not in str(exc) and "is not a file" not in str(exc):
            raise
        cmd.make_context(name, list(args), resilient_parsing=True)
    except click.MissingParameter:
        cmd.make_context(name, list(args), resilient_parsing=True)


def test_readme_is_assembled_from_its_sections() -> None:
    """README.md is generated from docs/readme/*.md: edit those, then run scripts/assemble_readme.py."""
    import runpy

    assemble = runpy.run_path(str(ROOT / "scripts" / "assemble_readme.py"))["assemble"]
    assert assemble() == README.read_text(), "README.md is stale: run python3 scripts/assemble_readme.py"


def test_readme_is_short_and_has_no_benchmark_log() -> None:
    """A newcomer's page: under ~250 lines; the benchmark log lives in BENCHMARKS.md only."""
    text = README.read_text()
    assert len(text.splitlines()) <= 260, len(text.splitlines())
    for phrase in ("this pass", "earlier runs", "this session"):
        assert phrase not in text


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_point_at_files(path: Path) -> None:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"(https?:|mailto:|#)", target):
            continue
        assert (path.parent / target.split("#")[0]).exists(), f"{path.name}: broken link {target}"

