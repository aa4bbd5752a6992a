"""Operator feedback on alerts: the threshold rule of a false alarm, and the command documents. Pure.

The rule (``alerts.feedback_*``): a ``false_alarm`` verdict on an alert whose episode peaked at score ``p``
raises that device's threshold to ``p x (1 + margin)`` (just above the peak, so the same episode replayed
raises nothing), never above ``max_factor`` x the device's base threshold (its warm-up calibration, or the
model's). The raise is kept as a factor over the base and decays back towards 1 with ``half_life_s``
(``0``: it never decays): ``factor(t) = 1 + (factor - 1) x 0.5 ^ ((t - since) / half_life_s)``. A second
false alarm takes the larger of the two. ``confirmed`` and ``ack`` change no threshold; every verdict is
recorded (service/feedback_store.py) and exported as labelled data.

Commands arrive as JSON on ``runtime.command_topic`` (only an operator account may write it: the broker's
ACL, deploy/mosquitto/acl); each gets a reply on ``runtime.reply_topic``
(edge_runtime/schemas/command.schema.json, reply.schema.json).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

VERDICTS = ("false_alarm", "confirmed", "ack")
COMMANDS = ("feedback", "recalibrate")
REPLY_SCHEMA_VERSION = 1
ACCEPTED, REFUSED = "accepted", "refused"
MAX_NOTE = 500
MAX_ID = 128


class CommandError(ValueError):
    """A command document that cannot be carried out as written (the reply says why)."""


@dataclass(frozen=True)
class FeedbackRule:
    margin: float = 0.05
    max_factor: float = 3.0
    half_life_s: float = 7 * 86400.0


@dataclass
class ThresholdRaise:
    """A device's feedback raise: ``factor`` x base at ``since`` (epoch s), decaying."""

    factor: float = 1.0
    since: float = 0.0
    false_alarms: int = 0

    def to_doc(self) -> dict[str, Any]:
        return {"factor": round(self.factor, 6), "since": self.since, "false_alarms": self.false_alarms}

    @classmethod
    def from_doc(cls, doc: Any) -> ThresholdRaise | None:
        if not isinstance(doc, dict):
            return None
        f, t, n = doc.get("factor"), doc.get("since"), doc.get("false_alarms", 0)
        if not (isinstance(f, (int, float)) and math.isfinite(f) and f >= 1 and isinstance(t, (int, float))
                and math.isfinite(t) and isinstance(n, int)):
            return None
        return cls(float(f), float(t), n)


def current_factor(rule: FeedbackRule, r: ThresholdRaise | None, now: float) -> float:
    """The raise's factor at ``now`` (>= 1, <= ``max_factor``)."""
    if r is None or r.factor <= 1.0:
        return 1.0
    decay = 1.0 if rule.half_life_s <= 0 else 0.5 ** (max(0.0, now - r.since) / rule.half_life_s)
    return min(rule.max_factor, 1.0 + (r.factor - 1.0) * decay)


def after_false_alarm(rule: FeedbackRule, r: ThresholdRaise | None, base: float, peak: float,
                      now: float) -> ThresholdRaise:
    """The raise after a false alarm that peaked at ``peak`` on a device of base threshold ``base``."""
    wanted = min(rule.max_factor, max(1.0, peak * (1.0 + rule.margin) / base))
    factor = max(wanted, current_factor(rule, r, now))
    return ThresholdRaise(factor, now, (r.false_alarms if r else 0) + 1)


@dataclass(frozen=True)
class Command:
    """A parsed command. ``alert_id`` or ``device`` names the alert (a device: its latest)."""

    command: str
    request_id: str = ""
    alert_id: str = ""
    device: str = ""
    verdict: str = ""
    note: str = ""
    source: str = ""


def _text(doc: dict[str, Any], key: str, limit: int = MAX_ID) -> str:
    v = doc.get(key, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise CommandError(f"'{key}' must be a string")
    if len(v) > limit:
        raise CommandError(f"'{key}' is longer than {limit} characters")
    return v


def parse_command(payload: bytes | bytearray | str, max_bytes: int = 4096) -> Command:
    """A command from its JSON payload; :class:`CommandError` naming what is wrong."""
    if len(payload) > max_bytes:
        raise CommandError(f"larger than {max_bytes} bytes")
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        raise CommandError("not JSON") from None
    if not isinstance(doc, dict):
        raise CommandError("not a JSON object")
    name = _text(doc, "command")
    if name not in COMMANDS:
        raise CommandError(f"'command' must be one of {', '.join(COMMANDS)}")
    cmd = Command(name, _text(doc, "request_id"), _text(doc, "alert_id"), _text(doc, "device"),
                  _text(doc, "verdict"), _text(doc, "note", MAX_NOTE), _text(doc, "source"))
    if name == "feedback":
        if cmd.verdict not in VERDICTS:
            raise CommandError(f"'verdict' must be one of {', '.join(VERDICTS)}")
        if not cmd.alert_id and not cmd.device:
            raise CommandError("feedback needs 'alert_id' (or 'device': its latest alert)")
    elif not cmd.device:
        raise CommandError("recalibrate needs 'device'")
    return cmd


def request_id_of(payload: bytes | bytearray | str) -> str:
    """The ``request_id`` of a payload that may not parse (so a refusal still names the request)."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return ""
    rid = doc.get("request_id") if isinstance(doc, dict) else None
    return rid[:MAX_ID] if isinstance(rid, str) else ""


def reply_doc(instance: str, request_id: str, command: str, status: str, reason: str, now: float,
              **extra: Any) -> dict[str, Any]:
    """The reply to one command (reply.schema.json): ``accepted`` or ``refused`` with why."""
    doc: dict[str, Any] = {"schema_version": REPLY_SCHEMA_VERSION, "instance": instance,
                           "request_id": request_id or None, "command": command or None, "status": status,
                           "reason": reason, "time": now}
    doc.update({k: v for k, v in extra.items() if v is not None})
    return doc
