"""Static checks on deploy/container: the images run as a non-root user, install the edge package
with exactly one onnxruntime flavour (``.[cpu]`` / ``.[gpu]``) and never torch or the trainer, and the
build context (.dockerignore) admits only pyproject.toml, README.md, LICENSE and edge_runtime/.

The checks are pure functions over the file texts (no docker needed); each is also run on a broken
variant to prove it can fail.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "deploy" / "container"
DOCKERFILES = {"cpu": CONTAINER / "Dockerfile.cpu", "gpu": CONTAINER / "Dockerfile.cuda"}
CONTEXT_ALLOWED = {"pyproject.toml", "README.md", "LICENSE", "edge_runtime/"}
HEAVY = re.compile(r"torch|train|onnxscript|\bonnx\b(?!runtime)|onnx_ir", re.I)


def instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile text -> [(INSTRUCTION, arguments)], continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):  # comments, also inside a continued instruction
            continue
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        if buf.strip():
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def final_stage(instrs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions from the last FROM on (the image that ships)."""
    last = max(i for i, (word, _) in enumerate(instrs) if word == "FROM")
    return instrs[last:]


def pip_installs(instrs: list[tuple[str, str]]) -> list[list[str]]:
    """The argument lists of every ``pip install`` in RUN instructions (``&&``-chained commands split)."""
    found = []
    for word, args in instrs:
        if word != "RUN":
            continue
        for cmd in re.split(r"&&|;|\|\|", args):
            tokens = shlex.split(cmd)
            for i in range(len(tokens) - 1):
                if tokens[i].endswith("pip") and tokens[i + 1] == "install":
                    found.append(tokens[i + 2:])
    return found


def dockerfile_problems(text: str, extra: str) -> list[str]:
    """Why a Dockerfile breaks the rules (empty: it does not). ``extra``: ``cpu`` or ``gpu``."""
    instrs = instructions(text)
    problems = []
    users = [args for word, args in final_stage(instrs) if word == "USER"]
    if not users:
        problems.append("the final stage sets no USER (runs as root)")
    elif users[-1].split(":")[0] in {"root", "0"}:
        problems.append(f"the final stage runs as root (USER {users[-1]})")
    installs = pip_installs(instrs)
    if installs != [[f".[{extra}]"]]:
        problems.append(f"expected exactly one `pip install .[{extra}]`, got {installs}")
    for args in installs:
        heavy = [a for a in args if HEAVY.search(a)]
        if heavy:
            problems.append(f"installs {heavy}")
    for word, args in instrs:
        if word in ("COPY", "ADD") and "--from=" not in args:
            sources = [a for a in shlex.split(args)[:-1] if not a.startswith("--")]
            outside = [s for s in sources if s.rstrip("/") not in {c.rstrip("/") for c in CONTEXT_ALLOWED}]
            if outside:
                problems.append(f"{word} {outside}: not part of the edge package")
    return problems


def dockerignore_problems(text: str) -> list[str]:
    """Why a .dockerignore admits more than :data:`CONTEXT_ALLOWED` (empty: it does not)."""
    patterns = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    problems = []
    if not patterns or patterns[0] != "*":
        problems.append("the first pattern must be `*` (exclude everything, then admit)")
    admitted = {p[1:] for p in patterns if p.startswith("!")}
    if admitted != CONTEXT_ALLOWED:
        problems.append(f"admits {sorted(admitted)}, expected {sorted(CONTEXT_ALLOWED)}")
    return problems


@pytest.mark.parametrize("extra", sorted(DOCKERFILES))
def test_dockerfile_runs_as_non_root_and_installs_only_the_edge_package(extra: str) -> None:
    assert dockerfile_problems(DOCKERFILES[extra].read_text(), extra) == []


def test_dockerignore_admits_only_the_edge_package() -> None:
    assert dockerignore_problems((ROOT / ".dockerignore").read_text()) == []


def test_the_installed_extras_pull_no_trainer_dependencies() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in DOCKERFILES:
        assert extras[extra] and not [d for d in extras[extra] if HEAVY.search(d)], extras[extra]
    assert any("torch" in d for d in extras["train"])  # the pattern does find the trainer's


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda t: t.replace("USER 10001:10001", "USER root"), "runs as root"),
        (lambda t: t.replace("USER 10001:10001\n", ""), "no USER"),
        (lambda t: t.replace('pip install ".[cpu]"', 'pip install ".[cpu,train]"'), "pip install"),
        (lambda t: t.replace('pip install ".[cpu]"', 'pip install ".[cpu]" \\\n && /opt/edgewatch/bin/pip install torch'),
         "torch"),
        (lambda t: t.replace("COPY edge_runtime ./edge_runtime", "COPY edge_runtime trainer ./"), "trainer"),
    ],
)
def test_dockerfile_check_catches_a_broken_file(change, problem: str) -> None:
    text = DOCKERFILES["cpu"].read_text()
    broken = change(text)
    assert broken != text
    assert any(problem in p for p in dockerfile_problems(broken, "cpu")), dockerfile_problems(broken, "cpu")


@pytest.mark.parametrize("text", ["!pyproject.toml\n!README.md\n!edge_runtime/\n",
                                  "*\n!pyproject.toml\n!README.md\n!edge_runtime/\n!trainer/\n",
                                  "*\n!pyproject.toml\n!README.md\n"])
def test_dockerignore_check_catches_a_broken_file(text: str) -> None:
    assert dockerignore_problems(text)
