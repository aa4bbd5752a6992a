"""``edgewatch alerts``: subscribe to alert topics and show them (table on a tty, JSON lines when piped)."""

from __future__ import annotations

import json
import queue
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from edge_runtime.config import Config
from edge_runtime.mqtt import make_client, parse_broker_url

HEADER = f"{'time (UTC)':<19}  {'device':<20} {'state':<8} {'score':>10} {'thresh':>10} {'seq':>4}  top channels"


def _fmt_time(t: Any) -> str:
    try:
        return datetime.fromtimestamp(float(t), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def format_row(doc: dict[str, Any]) -> str:
    """One alert (or retained state) document as a table row."""
    top = ", ".join(f"{t.get('name')} {float(t.get('share', 0)):.0%}" for t in doc.get("top_channels", []) if isinstance(t, dict))
    score = doc.get("score")
    thr = doc.get("threshold")
    return (
        f"{_fmt_time(doc.get('window_end', doc.get('since', doc.get('time')))):<19}  "
        f"{str(doc.get('device', '?'))[:20]:<20} {str(doc.get('state', '?'))[:8]:<8} "
        f"{score if score is None else f'{float(score):.4g}'!s:>10} {thr if thr is None else f'{float(thr):.4g}'!s:>10} "
        f"{doc.get('seq', '')!s:>4}  {top}"
    )


def watch_alerts(
    cfg: Config,
    emit: Callable[[str, dict[str, Any]], None],
    include_state: bool = True,
    count: int = 0,
    timeout: float = 0.0,
) -> int:
    """Subscribe to ``cfg.alert_topic`` (and the state topic); call ``emit(topic, doc)`` per message.

    Returns after ``count`` alert messages (0: forever) or ``timeout`` seconds (0: none); the number seen.
    """
    inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
    client = make_client(cfg, f"edgewatch-alerts-{uuid.uuid4().hex[:8]}", persistent=False)
    filters = [(cfg.alert_topic.replace("{device}", "+"), 1)]
    if include_state:
        filters.append((cfg.state_topic.replace("{device}", "+"), 1))
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(filters) if not rc.is_failure else None
    client.on_message = lambda c, u, m: inbox.put((m.topic, m.payload))
    addr = parse_broker_url(cfg.broker)
    client.connect_async(addr.host, addr.port, cfg.keepalive_s)
    client.loop_start()
    deadline = time.monotonic() + timeout if timeout else float("inf")
    seen = 0
    try:
        while not count or seen < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                topic, payload = inbox.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            try:
                doc = json.loads(payload)
            except ValueError:
                continue
            if not isinstance(doc, dict):
                continue
            emit(topic, doc)
            if "alert_id" in doc:
                seen += 1
    finally:
        client.disconnect()
        client.loop_stop()
    return seen
