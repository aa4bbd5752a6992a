"""Log formats: text with its own timestamp, JSON lines, and journald's form (``<N>`` priority, no timestamp)
when stderr is the journal stream named by ``$JOURNAL_STREAM``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.logs import make_formatter, stream_is_journal

ROOT = Path(__file__).resolve().parents[2]


def record(level: int, msg: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("edge_runtime.x", level, __file__, 1, msg, (), exc_info)


@pytest.mark.parametrize(("level", "prio"), [(logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4),
                                             (logging.ERROR, 3), (logging.CRITICAL, 2)])
def test_journal_text_lines_carry_the_syslog_priority_and_no_timestamp(level: int, prio: int) -> None:
    line = make_formatter("text", journal=True).format(record(level, "hello"))
    assert line == f"<{prio}>{logging.getLevelName(level)} edge_runtime.x: hello"


def test_every_line_of_a_traceback_keeps_the_priority() -> None:
    lines = make_formatter("text", journal=True).format(record(logging.ERROR, "failed", exc=True)).splitlines()
    assert len(lines) > 3 and all(ln.startswith("<3>") for ln in lines)
    assert lines[-1] == "<3>ValueError: boom"


def test_plain_text_has_its_timestamp_and_json_stays_json() -> None:
    text = make_formatter("text", journal=False).format(record(logging.INFO, "hi"))
    assert text[:4].isdigit() and text.endswith("edge_runtime.x: hi") and not text.startswith("<")
    journal_json = make_formatter("json", journal=True).format(record(logging.WARNING, "hi"))
    assert journal_json.startswith("<4>{") and json.loads(journal_json[3:])["level"] == "WARNING"


def test_stream_is_journal_only_when_the_variable_names_this_stream(tmp_path: Path) -> None:
    with open(tmp_path / "a", "w") as a, open(tmp_path / "b", "w") as b:
        st = os.fstat(a.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stream_is_journal(a, env)
        assert not stream_is_journal(b, env)  # e.g. stderr redirected by the service to a file
        assert not stream_is_journal(a, {})
        assert not stream_is_journal(a, {"JOURNAL_STREAM": "garbage"})


def test_a_process_whose_stderr_is_the_journal_stream_logs_in_journal_form(tmp_path: Path) -> None:
    code = ("import logging; from edge_runtime.logs import configure_logging; configure_logging('text', 'INFO');"
            "logging.getLogger('edge_runtime.t').warning('broker away'); logging.getLogger('x').info('ok')")
    out = tmp_path / "stderr"
    for journal in (True, False):
        with open(out, "w") as fh:
            st = os.fstat(fh.fileno())
            env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}" if journal else ""}
            subprocess.run([sys.executable, "-c", code], stderr=fh, env=env, cwd=ROOT, check=True, timeout=60)
        lines = out.read_text().splitlines()
        if journal:
            assert lines == ["<4>WARNING edge_runtime.t: broker away", "<6>INFO x: ok"]
        else:
            assert lines[0].endswith("WARNING edge_runtime.t: broker away") and lines[0][:4].isdigit()
