"""Every command line fails the same way: one ``PROG: error: ...`` line on stderr, no traceback, and the exit
code of edge_runtime/clierror.py (docs/TOOLS.md#exit-codes). The CLIs run as subprocesses, as a user runs them,
on the demo model and tiny CSVs; no case trains (fit stops before torch is imported) or needs a broker (the
unreachable one is a closed port)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime import clierror
from edge_runtime.clierror import (
    EXIT_CONFIG,
    EXIT_DATAERR,
    EXIT_IOERR,
    EXIT_NOINPUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models" / "demo.onnx"
NO_BROKER = "mqtt://127.0.0.1:1"  # nothing listens on port 1: refused at once
MAINS = {"edgewatch": "edge_runtime.cli", "edgewatch-train": "trainer.cli", "edgewatch-lab": "lab.cli"}

FILES = {
    "header.csv": "timestamp,a,b\n",
    "nonnum.csv": "timestamp,a,b\n1700000000,1,2\n1700000001,x,3\n1700000002,2,3\n",
    "badts.csv": "timestamp,a,b\n2024-01-01T00:00:00Z,1,2\nnot-a-time,2,3\n2024-01-01T00:00:02Z,2,3\n",
    "good.csv": "timestamp,a,b\n" + "".join(f"{1700000000 + i},{i % 7},{i % 5}\n" for i in range(40)),
    "notonnx.onnx": "this is not a protobuf\n" * 20,
    "results.json": "[1, 2",
}

# (id, prog, args, exit code, a word the error line must hold); {d}: the folder of FILES, {demo}: the demo model
CASES = [
    ("ew-unknown-flag", "edgewatch", ["--bogus"], EXIT_USAGE, "--bogus"),
    ("ew-unknown-command", "edgewatch", ["nosuch"], EXIT_USAGE, "nosuch"),
    ("run-missing-model", "edgewatch", ["run", "--model", "{d}/missing.onnx"], EXIT_NOINPUT, "missing.onnx"),
    ("run-not-onnx", "edgewatch", ["run", "--model", "{d}/notonnx.onnx"], EXIT_DATAERR, "notonnx.onnx"),
    ("run-old-format", "edgewatch", ["run", "--model", "{d}/old.onnx"], EXIT_DATAERR, "format_version"),
    ("run-missing-config", "edgewatch", ["run", "--config", "{d}/missing.toml"], EXIT_CONFIG, "missing.toml"),
    ("check-model-csv", "edgewatch", ["check-model", "{d}/good.csv"], EXIT_DATAERR, "good.csv"),
    ("replay-no-device", "edgewatch", ["replay", "{d}/good.csv"], EXIT_USAGE, "--device"),
    ("replay-missing", "edgewatch", ["replay", "{d}/missing.csv", "--device", "d"], EXIT_NOINPUT, "missing.csv"),
    ("replay-folder", "edgewatch", ["replay", "{d}", "--device", "d"], EXIT_NOINPUT, "directory"),
    ("replay-header-only", "edgewatch", ["replay", "{d}/header.csv", "--device", "d"], EXIT_DATAERR, "no data rows"),
    ("replay-non-numeric", "edgewatch", ["replay", "{d}/nonnum.csv", "--device", "d"], EXIT_DATAERR, "line 3"),
    ("replay-bad-timestamp", "edgewatch", ["replay", "{d}/badts.csv", "--device", "d"], EXIT_DATAERR, "line 3"),
    ("replay-not-onnx-model", "edgewatch", ["replay", "{d}/good.csv", "--device", "d", "--model", "{d}/notonnx.onnx"],
     EXIT_DATAERR, "notonnx.onnx"),
    ("replay-missing-model", "edgewatch", ["replay", "{d}/good.csv", "--device", "d", "--model", "{d}/no.onnx"],
     EXIT_NOINPUT, "no.onnx"),
    ("replay-no-broker", "edgewatch", ["replay", "{d}/good.csv", "--device", "d", "--broker", NO_BROKER, "--fast"],
     EXIT_UNAVAILABLE, "cannot connect"),
    ("simulate-no-broker", "edgewatch", ["simulate", "--broker", NO_BROKER, "--duration", "1"], EXIT_UNAVAILABLE,
     "cannot connect"),
    ("alerts-bad-broker-url", "edgewatch", ["alerts", "--broker", "http://x"], EXIT_CONFIG, "http://x"),
    ("fit-unknown-flag", "edgewatch-train", ["fit", "--bogus"], EXIT_USAGE, "--bogus"),
    ("fit-missing", "edgewatch-train", ["fit", "{d}/missing.csv", "-o", "{d}/m.onnx"], EXIT_NOINPUT, "missing.csv"),
    ("fit-header-only", "edgewatch-train", ["fit", "{d}/header.csv", "-o", "{d}/m.onnx"], EXIT_DATAERR, "no data rows"),
    ("fit-non-numeric", "edgewatch-train", ["fit", "{d}/nonnum.csv", "-o", "{d}/m.onnx"], EXIT_DATAERR, "line 3"),
    ("fit-bad-timestamp", "edgewatch-train", ["fit", "{d}/badts.csv", "-o", "{d}/m.onnx"], EXIT_DATAERR, "line 3"),
    ("fit-not-csv", "edgewatch-train", ["fit", "{demo}", "-o", "{d}/m.onnx"], EXIT_DATAERR, "demo.onnx"),
    ("inspect-missing", "edgewatch-train", ["inspect", "{d}/missing.onnx"], EXIT_NOINPUT, "missing.onnx"),
    ("evaluate-missing-model", "edgewatch-train", ["evaluate", "-m", "{d}/no.onnx", "-d", "{d}/good.csv"],
     EXIT_NOINPUT, "no.onnx"),
    ("evaluate-missing-model-positional", "edgewatch-train", ["evaluate", "{d}/no.onnx", "{d}/good.csv"],
     EXIT_NOINPUT, "model"),
    ("evaluate-data-first", "edgewatch-train", ["evaluate", "{d}/good.csv", "{demo}"], EXIT_USAGE, "is data, not a model"),
    ("evaluate-no-data", "edgewatch-train", ["evaluate", "{demo}"], EXIT_USAGE, "no data to score"),
    ("evaluate-nothing", "edgewatch-train", ["evaluate"], EXIT_USAGE, "evaluate MODEL DATA"),
    ("keygen-under-a-file", "edgewatch-train", ["keygen", "{d}/good.csv/k"], EXIT_IOERR, "good.csv"),
    ("lab-unknown-flag", "edgewatch-lab", ["--bogus"], EXIT_USAGE, "--bogus"),
    ("lab-missing-model", "edgewatch-lab", ["bench", "inference", "--model", "{d}/no.onnx"], EXIT_NOINPUT, "no.onnx"),
    ("lab-report-not-json", "edgewatch-lab", ["bench", "report", "{d}/results.json", "--out", "{d}/r.md"],
     EXIT_DATAERR, "results.json"),
]


def _old_format_model(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(DEMO))
    for prop in model.metadata_props:
        if prop.key == "edgewatch":
            doc = json.loads(prop.value)
            doc["format_version"] = 0
            prop.value = json.dumps(doc)
    onnx.save(model, str(path))


def _run(prog: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    code = f"from {MAINS[prog]} import main; main(prog_name={prog!r})"  # what the console script does
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    d = tmp_path_factory.mktemp("exits")
    for name, text in FILES.items():
        (d / name).write_text(text)
    _old_format_model(d / "old.onnx")
    jobs = {cid: (prog, [a.format(d=d, demo=DEMO) for a in args]) for cid, prog, args, _, _ in CASES}
    with ThreadPoolExecutor(4) as pool:  # the interpreters start in parallel: the table runs in seconds
        futures = {cid: pool.submit(_run, prog, args, ROOT) for cid, (prog, args) in jobs.items()}
        return {cid: f.result() for cid, f in futures.items()}


@pytest.mark.parametrize(("cid", "prog", "code", "word"), [(c[0], c[1], c[3], c[4]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_failure_is_one_line_and_its_exit_code(results, cid: str, prog: str, code: int, word: str) -> None:
    r = results[cid]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert "Traceback" not in r.stderr, r.stderr
    assert len(lines) == 1, r.stderr
    assert re.match(rf"{re.escape(prog)}( [a-z-]+)*: error: ", lines[0]), lines[0]
    assert word in lines[0], lines[0]
    assert r.returncode == code, (r.returncode, lines[0])


def test_fit_and_replay_refuse_the_same_bad_timestamp_alike(results) -> None:
    fit, replay = results["fit-bad-timestamp"].stderr, results["replay-bad-timestamp"].stderr
    for text in (fit, replay):
        assert "line 3, column 'timestamp': bad timestamp: not a number or ISO 8601 time: 'not-a-time'" in text
        assert "fix or delete the row" in text


def test_every_help_points_to_the_documented_scheme() -> None:
    from edge_runtime.cli import main as edge
    from lab.cli import main as lab
    from trainer.cli import main as train

    for cli in (edge, train, lab):
        out = " ".join(CliRunner().invoke(cli, ["--help"]).output.split())
        assert clierror.DOCS in out and "65 data error" in out, out
        for name in cli.list_commands(None):  # every subcommand's --help too (and a group's subcommands)
            cmd = cli.get_command(None, name)
            if not cmd.add_help_option:  # `edgewatch bench`: only says where the benchmarks moved
                continue
            subs = list(getattr(cmd, "commands", {})) or [None]
            for sub in subs:
                args = [name, *([sub] if sub else []), "--help"]
                res = CliRunner().invoke(cli, args)
                assert res.exit_code == 0 and clierror.DOCS in " ".join(res.output.split()), (args, res.output)


def test_the_docs_table_is_the_code_table() -> None:
    text = (ROOT / "docs" / "TOOLS.md").read_text()
    section = text[text.index("## Exit codes"):]
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \| ([^|]+) \|", section, flags=re.M)
    assert [(int(c), n.strip(), m.strip()) for c, n, m in rows] == list(clierror.EXIT_CODES)
