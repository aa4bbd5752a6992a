"""The feedback log: every verdict on an alert, one JSON line each, bounded on disk.

``runtime.state_dir``/feedback.jsonl (beside the per-device thresholds file). When it passes ``max_bytes``
it is renamed to feedback.jsonl.1 (the one before is dropped), so the log never holds more than twice that.
Without a state folder the last ``memory_records`` verdicts are kept in memory only. An alert adopted from
an earlier run (left raised at a restart) gets its verdicts so far read back from here (:meth:`FeedbackStore.judgement`). A write that fails (a
full disk) is logged and counted (``feedback_log_error``); the verdict still takes effect.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge_runtime.pipeline.feedback import standing_verdicts

log = logging.getLogger(__name__)

LOG_FILE = "feedback.jsonl"


class FeedbackStore:
    def __init__(self, state_dir: str | os.PathLike[str] | None, max_bytes: int = 1 << 20,
                 memory_records: int = 1000) -> None:
        self.path = Path(state_dir) / LOG_FILE if state_dir else None
        self.max_bytes = max_bytes
        self.memory: deque[dict[str, Any]] = deque(maxlen=memory_records)
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> bool:
        """Record one verdict; False when the file could not be written (logged)."""
        line = json.dumps(record, allow_nan=False) + "\n"
        with self._lock:
            self.memory.append(record)
            if self.path is None:
                return True
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
                    os.replace(self.path, self.path.with_name(LOG_FILE + ".1"))
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError as exc:
                log.warning("feedback log %s: cannot write (%s); the verdict is applied but not kept on disk",
                            self.path, exc)
                return False
        return True

    def judgement(self, device: str, alert_id: str) -> tuple[str, bool]:
        """``alert_id``'s standing judgement in the log (``""``: none; pipeline/feedback.standing) and whether it
        was acked: read back for an alert adopted from an earlier run."""
        with self._lock:
            records = list(self.memory) if self.path is None else list(read_records(self.path.parent))
        mine = [r for r in records if r.get("alert_id") == alert_id and r.get("device") == device]
        found = standing_verdicts(mine).get(alert_id)
        return (str(found["verdict"]) if found else ""), any(r.get("verdict") == "ack" for r in mine)


def read_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The verdicts of a feedback log (a state folder, or the file itself; the rotated part first).
    Lines that are not JSON objects are skipped."""
    p = Path(path)
    files = [p.with_name(p.name + ".1"), p] if p.is_file() else [p / (LOG_FILE + ".1"), p / LOG_FILE]
    for f in files:
        if not f.is_file():
            continue
        with f.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                if isinstance(doc, dict):
                    yield doc
