"""Operator feedback on alerts: the threshold rule of a false alarm, and the command documents. Pure.

The rule (``alerts.feedback_*``): a ``false_alarm`` verdict on an alert whose episode peaked at score ``p``
raises that device's threshold to ``p x (1 + margin)`` (just above the peak, so the same episode replayed
raises nothing), never above ``max_factor`` x the device's base threshold (its warm-up calibration, or the
model's). The raise is kept as a factor over the base and decays back towards 1 with ``half_life_s``
(``0``: it never decays): ``factor(t) = 1 + (factor - 1) x 0.5 ^ ((t - since) / half_life_s)``.

The raise applies only to windows **like the false alarm** (``similarity`` > 0): the episode's *signature*
is the sum of its windows' :func:`profiles` (which channels carried the excess error, and which way their
levels moved), normalised; a later window gets the raised threshold when the cosine similarity of its
profile to the signature is at least ``similarity``, the base threshold otherwise, so a fault elsewhere
(other channels, or the same channel the other way) is not delayed. A second false alarm like an earlier
one (same test) takes the larger factor; one unlike every earlier one is kept beside them (at most
:data:`MAX_RAISES`). ``similarity`` 0, or a raise without a signature (stored by an older daemon), applies to
every window. ``confirmed`` and ``ack`` change no threshold; every verdict is recorded
(service/feedback_store.py) and exported as labelled data.

**The last verdict on an alert wins** (:func:`standing`): an alert's raise, updates and clear are one episode,
and its *judgement* is the last ``false_alarm`` or ``confirmed`` sent on any of them; ``ack`` (seen) leaves it
as it was. A ``confirmed`` after a ``false_alarm`` withdraws that alert's raise: the device's raises are kept as
the fold (:func:`apply_false_alarms`) of its standing :class:`FalseAlarm` s over what was settled before them,
so a withdrawal gives exactly the raises the device would have without that verdict. A verdict the alert
already has is a repeat (:func:`is_repeat`): accepted, it changes nothing. The feedback export labels data by
the same rule (:func:`standing_verdicts`). A false alarm whose peak needs more than ``max_factor`` x the base
(:func:`needed_factor`) is *capped*: windows like it that score above the capped threshold still alert, and
only a retrained model (the episode's data as normal) can let them pass.

Commands arrive as JSON on ``runtime.command_topic`` (only an operator account may write it: the broker's
ACL, deploy/mosquitto/acl); each gets a reply on ``runtime.reply_topic``
(edge_runtime/schemas/command.schema.json, reply.schema.json).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.pipeline.explain import excess

VERDICTS = ("false_alarm", "confirmed", "ack")
JUDGEMENTS = ("false_alarm", "confirmed")  # what an alert was; ack (seen) is neither
COMMANDS = ("feedback", "recalibrate")
REPLY_SCHEMA_VERSION = 1
ACCEPTED, REFUSED = "accepted", "refused"
MAX_NOTE = 500
MAX_ID = 128
MAX_RAISES = 8  # raises of unlike false alarms a device keeps (past it, the one with the lowest factor now goes)
DIRECTION_Z = 1.0  # a window mean this many training std off the training mean counts fully as high/low
DIRECTION_WEIGHT = 0.5  # the signed block's weight in a profile (see profiles)
SIGNATURE_DIGITS = 4


class CommandError(ValueError):
    """A command document that cannot be carried out as written (the reply says why)."""


@dataclass(frozen=True)
class FeedbackRule:
    margin: float = 0.05
    max_factor: float = 3.0
    half_life_s: float = 7 * 86400.0
    similarity: float = 0.8  # a window like a false alarm: cosine of profiles >= this; 0: every window


@dataclass
class ThresholdRaise:
    """A device's feedback raise: ``factor`` x base at ``since`` (epoch s), decaying; for windows whose
    profile is like ``signature`` ((2C,) unit norm; empty: every window); ``label`` names it for a person."""

    factor: float = 1.0
    since: float = 0.0
    false_alarms: int = 0
    signature: tuple[float, ...] = ()
    label: str = ""

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"factor": round(self.factor, 6), "since": self.since,
                               "false_alarms": self.false_alarms}
        if self.signature:
            doc["signature"] = list(self.signature)
            doc["channels"] = self.label
        return doc

    @classmethod
    def from_doc(cls, doc: Any) -> ThresholdRaise | None:
        if not isinstance(doc, dict):
            return None
        f, t, n = doc.get("factor"), doc.get("since"), doc.get("false_alarms", 0)
        if not (isinstance(f, (int, float)) and math.isfinite(f) and f >= 1 and isinstance(t, (int, float))
                and math.isfinite(t) and isinstance(n, int)):
            return None
        sig = doc.get("signature", [])
        if not (isinstance(sig, list) and len(sig) % 2 == 0
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in sig)):
            return None
        if sig and (min(sig[: len(sig) // 2]) < 0 or not any(sig)):
            return None
        label = doc.get("channels", "")
        return cls(float(f), float(t), n, tuple(float(v) for v in sig), label if isinstance(label, str) else "")


def profiles(channel_error: npt.ArrayLike, normal: npt.ArrayLike | None, z: npt.ArrayLike) -> np.ndarray:
    """Each window's excess error and which way it moved the levels: (k, 2C) from ``channel_error`` (k, C),
    the channels' ``normal`` (C,) and ``z`` (k, C), each window mean's distance from the training mean in
    training std. The first C: each channel's excess; the second: that excess x ``clip(z / DIRECTION_Z, -1, 1)``
    x :data:`DIRECTION_WEIGHT` (+ high, - low, ~0 a level that did not move, e.g. more noise). Summed over an
    episode the signed block of a channel whose level went both ways cancels out; a window the other way than
    a consistent episode scores a cosine of 0.6 against it (``(1 - w^2) / (1 + w^2)``), one with no direction
    0.89 (``1 / sqrt(1 + w^2)``)."""
    ex = excess(channel_error, normal)
    a = np.clip(np.asarray(z, dtype=np.float64) / DIRECTION_Z, -1.0, 1.0)
    out: np.ndarray = np.concatenate([ex, DIRECTION_WEIGHT * ex * a], axis=-1)
    return out


def signature_of(profile_sum: npt.ArrayLike) -> tuple[float, ...]:
    """An episode's signature: the sum of its windows' profiles (2C,), unit norm, rounded; () when empty."""
    p = np.asarray(profile_sum, dtype=np.float64)
    norm = float(np.linalg.norm(p))
    if not math.isfinite(norm) or norm <= 0:
        return ()
    return tuple(round(float(v), SIGNATURE_DIGITS) for v in p / norm)


def similarity(p: npt.ArrayLike, signature: tuple[float, ...]) -> np.ndarray:
    """Cosine similarity of profiles ``p`` (k, 2C) to ``signature`` (2C,): (k,) in [-1, 1] (0: no excess)."""
    pp = np.asarray(p, dtype=np.float64)
    sig = np.asarray(signature, dtype=np.float64)
    den = np.linalg.norm(pp, axis=-1) * float(np.linalg.norm(sig))
    out: np.ndarray = np.divide(pp @ sig, den, out=np.zeros(den.shape), where=den > 0)
    return out


def describe_signature(signature: tuple[float, ...], channels: list[str], k: int = 3, share: float = 0.1) -> str:
    """``temp_C high, flow low``: the channels (at most ``k``) with ``share`` or more of a signature's
    excess, largest first, each with its direction where the episode's level moved mostly one way."""
    sig = np.asarray(signature, dtype=np.float64).reshape(2, -1)  # (2, C): excess, signed
    per = sig[0]
    total = float(per.sum())
    if total <= 0 or sig.shape[1] != len(channels):
        return ""
    out = []
    for i in np.argsort(-per)[:k].tolist():
        if per[i] < share * total:
            break
        d = sig[1, i] / (DIRECTION_WEIGHT * per[i])
        out.append(f"{channels[i]} high" if d > 0.5 else f"{channels[i]} low" if d < -0.5 else channels[i])
    return ", ".join(out)


def current_factor(rule: FeedbackRule, r: ThresholdRaise | None, now: float) -> float:
    """The raise's factor at ``now`` (>= 1, <= ``max_factor``)."""
    if r is None or r.factor <= 1.0:
        return 1.0
    decay = 1.0 if rule.half_life_s <= 0 else 0.5 ** (max(0.0, now - r.since) / rule.half_life_s)
    return min(rule.max_factor, 1.0 + (r.factor - 1.0) * decay)


def needed_factor(rule: FeedbackRule, base: float, peak: float) -> float:
    """The factor over ``base`` that would let a false alarm peaking at ``peak`` pass (uncapped: above
    ``rule.max_factor`` the raise is capped and windows like it still alert)."""
    return peak * (1.0 + rule.margin) / base


def after_false_alarm(rule: FeedbackRule, r: ThresholdRaise | None, base: float, peak: float,
                      now: float, signature: tuple[float, ...] = (), label: str = "") -> ThresholdRaise:
    """The raise after a false alarm that peaked at ``peak`` on a device of base threshold ``base`` (``r``:
    the earlier raise it is like, whose signature it keeps)."""
    wanted = min(rule.max_factor, max(1.0, needed_factor(rule, base, peak)))
    factor = max(wanted, current_factor(rule, r, now))
    if r is not None:
        signature, label = r.signature, r.label
    return ThresholdRaise(factor, now, (r.false_alarms if r else 0) + 1, signature, label)


def _alike(rule: FeedbackRule, a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    if not a or not b:
        return not a and not b
    return len(a) == len(b) and float(similarity(np.asarray([a]), b)[0]) >= rule.similarity


def record_false_alarm(rule: FeedbackRule, raises: list[ThresholdRaise], base: float, peak: float, now: float,
                       signature: tuple[float, ...] = (), label: str = "") -> tuple[list[ThresholdRaise], int]:
    """A device's raises after a false alarm of ``signature`` (ignored when ``rule.similarity`` is 0): the one
    like it grows, else a new one joins them. Returns the raises and the index of the one it set."""
    if rule.similarity <= 0:
        signature, label = (), ""
    out = list(raises)
    for i, r in enumerate(out):
        if _alike(rule, r.signature, signature):
            out[i] = after_false_alarm(rule, r, base, peak, now)
            return out, i
    out.append(after_false_alarm(rule, None, base, peak, now, signature, label))
    while len(out) > MAX_RAISES:
        out.pop(min(range(len(out) - 1), key=lambda j: current_factor(rule, out[j], now)))
    return out, len(out) - 1


@dataclass(frozen=True)
class FalseAlarm:
    """A standing false-alarm verdict as the rule applied it: its alert (the episode's raise id), the device's
    base threshold and the episode's peak then, when (epoch s), and its signature and label."""

    alert_id: str
    base: float
    peak: float
    time: float
    signature: tuple[float, ...] = ()
    label: str = ""


def apply_false_alarms(rule: FeedbackRule, raises: list[ThresholdRaise], false_alarms: list[FalseAlarm],
                       ) -> tuple[list[ThresholdRaise], int]:
    """``raises`` after each of ``false_alarms`` in turn (:func:`record_false_alarm` at its own time, so the
    fold without one of them is the raises as if it had never been sent). Returns the raises and the index of
    the one the last false alarm set (-1: none)."""
    out, i = list(raises), -1
    for fa in false_alarms:
        out, i = record_false_alarm(rule, out, fa.base, fa.peak, fa.time, fa.signature, fa.label)
    return out, i


def standing(previous: str, verdict: str) -> str:
    """An alert's judgement after ``verdict`` when ``previous`` stood (``""``: none): the last ``false_alarm``
    or ``confirmed`` wins; ``ack`` leaves it as it was."""
    return verdict if verdict in JUDGEMENTS else previous


def is_repeat(previous: str, acked: bool, verdict: str) -> bool:
    """Whether ``verdict`` is one the alert already has (its judgement ``previous``; ``acked``: an ack was
    sent): accepted, it changes nothing."""
    return verdict == previous if verdict in JUDGEMENTS else acked


def standing_verdicts(records: Iterable[dict[str, Any]], device: str = "") -> dict[str, dict[str, Any]]:
    """Alert id -> the record of its judgement (:func:`standing` over the feedback log in its order; ``device``:
    only its records); alerts with no ``false_alarm`` or ``confirmed`` are left out."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("verdict") in JUDGEMENTS and (not device or r.get("device") == device):
            out[str(r.get("alert_id"))] = r
    return out


def global_factor(rule: FeedbackRule, raises: list[ThresholdRaise], now: float) -> float:
    """The factor every window gets: the largest of the raises without a signature (1 without any)."""
    return max((current_factor(rule, r, now) for r in raises if not r.signature), default=1.0)


def window_factors(rule: FeedbackRule, raises: list[ThresholdRaise], p: npt.ArrayLike, now: float) -> np.ndarray:
    """Each window's factor (k,) from its profile ``p`` (k, 2C): the largest of the raises it is like
    (at least the global factor)."""
    pp = np.asarray(p, dtype=np.float64)
    out = np.full(pp.shape[0], global_factor(rule, raises, now))
    for r in raises:
        if r.signature and len(r.signature) == pp.shape[-1]:
            f = current_factor(rule, r, now)
            if f > 1.0:
                hit = similarity(pp, r.signature) >= rule.similarity
                out[hit] = np.maximum(out[hit], f)
    return out


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
