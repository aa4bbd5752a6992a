"""Operator commands (``runtime.commands``): read on the command topic, carried out, each one answered.

Who may send them is the broker's business: the deploy kit's ACL (deploy/mosquitto/acl) lets only an
operator account write ``edgewatch/+/command``; a PUBLISH from any other account never reaches the daemon
(Mosquitto drops it and logs ``Denied PUBLISH``; an MQTT 5 sender gets "not authorized"). What does reach it is
checked here: a malformed command, an unknown alert or a recalibration with warm-ups off is refused,
logged (rate-limited) and counted (``commands_refused``); every command gets a reply (accepted or refused,
and why) on the reply topic (edge_runtime/schemas/reply.schema.json).

- ``feedback``: a verdict on an alert (``false_alarm`` raises the device's threshold, pipeline/feedback.py;
  ``confirmed`` and ``ack`` are recorded only), written to the feedback log (service/feedback_store.py)
  with the alert's episode, so labelled data can be exported (``edgewatch feedback export``). The last verdict
  on an alert wins: a ``confirmed`` after a ``false_alarm`` withdraws its raise; a verdict the alert already
  has is answered "already recorded" and changes, counts and logs nothing (``feedback_repeated``); a false alarm
  past ``alerts.feedback_max_factor`` is answered "cap reached" (``feedback_capped``);
- ``recalibrate``: start a device's warm-up again (after a drift notice, when its operation changed for good).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from edge_runtime.pipeline.documents import Outbound, to_json
from edge_runtime.pipeline.feedback import (
    ACCEPTED,
    REFUSED,
    Command,
    CommandError,
    parse_command,
    reply_doc,
    request_id_of,
)
from edge_runtime.pipeline.stats import RateLimitedLog, Stats
from edge_runtime.pipeline.topics import format_topic
from edge_runtime.service.device_thresholds import STANDING_KEPT, Episode, VerdictOutcome
from edge_runtime.service.feedback_store import FeedbackStore
from edge_runtime.service.scorer import Scorer

log = logging.getLogger(__name__)

# recalibrate restarts a device's warm-up; with warm-ups off there is none to restart (the device is judged at the
# model's threshold), so the refusal is right and says how to turn them on (a config change: SIGHUP reloads the model only)
RECALIBRATE_OFF = ("warm-ups are off (input.warmup is empty): device {device!r} has no calibration of its own to redo "
                   "and is judged at the model's threshold; to calibrate devices on site set input.warmup (samples, "
                   "2000, or a duration, 2h; --warmup, EDGEWATCH_INPUT_WARMUP) and restart the daemon: every device "
                   "then warms up once, and recalibrate starts one again")
# the reply's reason by what a verdict did (DeviceThresholds.verdict's change; stands: an ack after a judgement)
_REASONS = {
    "raised": "false alarm recorded{was}: threshold {before} -> {after} for {applies} (peak {peak}; at most {max} x "
              "the base {base}); other windows: {other}",
    "withdrawn": "confirmed recorded: the false alarm on alert {alert} is withdrawn: threshold {before} -> {after} "
                 "for {applies}; other windows: {other}",
    "kept": "confirmed recorded{was} (the feedback export labels the alert confirmed), but the raise of its false "
            "alarm is no longer kept apart (given before this daemon started, or {kept} false alarms ago): it stays "
            "and decays (alerts.feedback_half_life_s); threshold {after} for {applies}",
    "repeated": "{verdict} already recorded on alert {alert} (its episode): nothing changed; threshold {after} for "
                "{applies}",
    "stands": "{verdict} recorded; the {previous} verdict on alert {alert} stands",
    "recorded": "{verdict} recorded",
}
_CAPPED = ("; cap reached: its peak needs {needed} x the base, more than alerts.feedback_max_factor {max}, so windows "
           "like it that score above {after} still alert and feedback cannot raise the threshold for them higher: "
           "retrain with this data as normal (`edgewatch feedback export --log STATE_DIR --evidence EVIDENCE_DIR "
           "--labelled DIR`, or --data RECORDING.csv; then `edgewatch-train fit DIR`, or `--calibrate` with it)")
_VERDICT_COUNTER = {"false_alarm": "feedback_false_alarms", "confirmed": "feedback_confirmed", "ack": "feedback_acks"}


class Commands:
    """Carries out commands for ``scorer``'s devices; ``send`` publishes the replies and changed states."""

    def __init__(self, command_topic: str, reply_topic: str, instance: str, scorer: Scorer, stats: Stats,
                 store: FeedbackStore, send: Callable[[list[Outbound]], Any], log_interval_s: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.topic = format_topic(command_topic, instance=instance)
        self.reply_topic = format_topic(reply_topic, instance=instance)
        self.instance = instance
        self.scorer = scorer
        self.stats = stats
        self.store = store
        self.send = send
        self.clock = clock
        self._rl = RateLimitedLog(log, log_interval_s)

    def route(self, handle: Callable[[str, bytes | bytearray], None]) -> Callable[[str, bytes | bytearray], None]:
        """``handle``, with the command topic answered here (network thread)."""
        topic = self.topic

        def routed(t: str, payload: bytes | bytearray) -> None:
            if t == topic:
                self.handle(payload)
            else:
                handle(t, payload)
        return routed

    def handle(self, payload: bytes | bytearray) -> dict[str, Any]:
        """One command: carried out or refused; its reply is sent and returned."""
        now = self.clock()
        try:
            cmd = parse_command(payload)
        except CommandError as exc:
            return self._refuse(request_id_of(payload), "", str(exc), now)
        if cmd.command == "feedback":
            return self._feedback(cmd, now)
        return self._recalibrate(cmd, now)

    def _feedback(self, cmd: Command, now: float) -> dict[str, Any]:
        th = self.scorer.thresholds
        found = th.find(cmd.alert_id, cmd.device)
        if found is None:
            what = f"alert {cmd.alert_id!r}" if cmd.alert_id else f"an alert of device {cmd.device!r}"
            return self._refuse(cmd.request_id, cmd.command, f"{what} is unknown to this daemon (it keeps the last "
                                "alerts of each device it tracks)", now, device=cmd.device or None)
        device, ep = found
        if ep.adopted and not (ep.verdict or ep.acked):  # raised before a restart: its verdicts are in the log
            th.recall(ep, *self.store.judgement(device, ep.alert_id))
        out = th.verdict(device, ep, cmd.verdict, now)
        f = th.fields(device, now)
        reason = self._reason(cmd.verdict, ep, out, f["threshold_base"], f["threshold"])
        if out.change == "repeated":  # nothing changed: not counted as a verdict, not logged again
            self.stats.incr("feedback_repeated")
        else:
            self.stats.incr(_VERDICT_COUNTER[cmd.verdict])
            if out.change == "withdrawn":
                self.stats.incr("feedback_withdrawn")
            if out.capped and out.change == "raised":
                self.stats.incr("feedback_capped")
            record = {"time": now, "iso_time": _iso(now), "instance": self.instance, "device": device,
                      "alert_id": ep.alert_id, "verdict": cmd.verdict, "note": cmd.note, "source": cmd.source,
                      "request_id": cmd.request_id, "peak": ep.peak, "alert_threshold": ep.threshold,
                      "raised_at": ep.raised_at, "cleared_at": ep.cleared_at, "window_start": ep.window_start,
                      "window_end": ep.window_end, "threshold_before": out.before, "threshold_after": out.after,
                      "model_id": self.scorer.model.model_id, "change": out.change,
                      "previous_verdict": out.previous or None}
            if out.change in ("raised", "withdrawn", "kept"):
                record["applies_to"] = out.applies
            if out.capped:
                record["capped"] = True
            if not self.store.append(record):
                self.stats.drop("feedback_log_error")
        log.info("feedback %s on alert %s of device %s (%s): %s", cmd.verdict, ep.alert_id, device,
                 cmd.source or "-", reason)
        changed = out.change in ("raised", "withdrawn")  # the threshold moved: the state document goes out again
        msgs = [self.scorer.state_message(device)] if changed else []
        return self._accept(cmd, reason, now, msgs, device=device, alert_id=ep.alert_id, verdict=cmd.verdict,
                            threshold_before=out.before, threshold=out.after,
                            applies_to=out.applies if changed else None, change=out.change,
                            capped=out.capped if cmd.verdict == "false_alarm" else None)

    def _reason(self, verdict: str, ep: Episode, out: VerdictOutcome, base: float, other: float) -> str:
        """The reply's ``reason``: what the verdict changed, in words (:data:`_REASONS`)."""
        rule = self.scorer.thresholds.rule
        key = "stands" if out.change == "recorded" and out.previous and out.previous != verdict else out.change
        text = _REASONS[key].format(
            verdict=verdict, alert=ep.alert_id, previous=out.previous, applies=out.applies, kept=STANDING_KEPT,
            was=f" (replaces {out.previous})" if out.previous and out.previous != verdict else "",
            before=f"{out.before:.4g}", after=f"{out.after:.4g}", peak=f"{ep.peak:.4g}", base=f"{base:.4g}",
            other=f"{other:.4g}", max=f"{rule.max_factor:g}")
        if out.capped:
            text += _CAPPED.format(needed=f"{out.needed:.3g}", max=f"{rule.max_factor:g}", after=f"{out.after:.4g}")
        return text

    def _recalibrate(self, cmd: Command, now: float) -> dict[str, Any]:
        if cmd.device not in self.scorer.thresholds.devices:
            return self._refuse(cmd.request_id, cmd.command, f"device {cmd.device!r} is unknown to this daemon", now,
                                device=cmd.device)
        if not self.scorer.thresholds.recalibrate(cmd.device):
            return self._refuse(cmd.request_id, cmd.command, RECALIBRATE_OFF.format(device=cmd.device), now,
                                device=cmd.device)
        log.info("device %s: warm-up started again on request (%s)", cmd.device, cmd.source or "-")
        return self._accept(cmd, "warm-up started again: the device raises nothing until it is done", now,
                            [self.scorer.state_message(cmd.device)], device=cmd.device)

    def _accept(self, cmd: Command, reason: str, now: float, out: list[Outbound], **extra: Any) -> dict[str, Any]:
        self.stats.incr("commands_accepted")
        doc = reply_doc(self.instance, cmd.request_id, cmd.command, ACCEPTED, reason, now, **extra)
        self.send([*out, Outbound(self.reply_topic, to_json(doc), qos=1)])
        return doc

    def _refuse(self, request_id: str, command: str, reason: str, now: float, **extra: Any) -> dict[str, Any]:
        self.stats.incr("commands_refused")
        self._rl.log(logging.WARNING, "command_refused", "command %s refused: %s", command or "(unreadable)", reason)
        doc = reply_doc(self.instance, request_id, command, REFUSED, reason, now, **extra)
        self.send([Outbound(self.reply_topic, to_json(doc), qos=1)])
        return doc


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
