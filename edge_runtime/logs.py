"""Logging set-up for the edgewatch CLI: human-readable text, one JSON object per line, or journald's form.

When stderr is the systemd journal (``$JOURNAL_STREAM`` names stderr's device and inode, as systemd sets it for
a service's standard streams), text lines carry no timestamp of their own (the journal stamps every entry)
and every line starts with its syslog priority, ``<N>`` (journald's ``SyslogLevelPrefix``), so
``journalctl -p warning`` selects by level; JSON lines keep their ``time`` and get the prefix too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import TextIO

# logging level -> syslog priority (sd-daemon.h: SD_ERR 3, SD_WARNING 4, SD_INFO 6, SD_DEBUG 7)
SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "thread", "message"}`` (+ ``exc`` when there is a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class JournalFormatter(logging.Formatter):
    """Wraps another formatter: every line of a record (a traceback's too) starts with ``<N>``."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prio = SYSLOG_PRIORITY.get(record.levelno, 3 if record.levelno > logging.WARNING else 6)
        return "\n".join(f"<{prio}>{line}" for line in self.inner.format(record).splitlines() or [""])


def stream_is_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether ``stream`` is connected to the journal: ``$JOURNAL_STREAM`` (``device:inode``) matches its fstat."""
    want = environ.get("JOURNAL_STREAM", "")
    dev, _, ino = want.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return bool(want) and (int(dev), int(ino)) == (st.st_dev, st.st_ino)
    except (ValueError, OSError, AttributeError):  # no real file descriptor (tests), or a malformed variable
        return False


def make_formatter(fmt: str, journal: bool) -> logging.Formatter:
    """The formatter for ``fmt`` (text|json), in journald's form when ``journal``."""
    if fmt == "json":
        return JournalFormatter(JsonFormatter()) if journal else JsonFormatter()
    if journal:
        return JournalFormatter(logging.Formatter(JOURNAL_FORMAT))
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(fmt: str = "text", level: str = "INFO", environ: Mapping[str, str] | None = None) -> None:
    """Send edgewatch logs to stderr in ``fmt`` (text|json), journald-aware; quiet noisy libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(fmt, stream_is_journal(sys.stderr, os.environ if environ is None else environ)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
