"""``edgewatch feedback``: a verdict on an alert, sent to the daemon as a command and its reply awaited;
``edgewatch feedback export``: the feedback log as labelled data for ``edgewatch-train fit`` / ``evaluate``.

    edgewatch feedback ALERT_ID --false-alarm [--note TEXT]      # or --confirmed, --ack
    edgewatch feedback --device pump-7 --false-alarm             # that device's latest alert
    edgewatch feedback --recalibrate pump-7                      # start its warm-up again
    edgewatch feedback export --log /var/lib/edgewatch --device pump-7 --data normal.csv --labelled DIR
    edgewatch feedback export --log /var/lib/edgewatch --evidence /var/lib/edgewatch/evidence --labelled DIR

The command goes to ``runtime.command_topic`` of the daemon named by ``--instance`` (default: this host's
daemon, as ``runtime.instance``) with the account of ``--username`` / ``--password-file`` (or the config's):
the broker lets only operator accounts write it (deploy/mosquitto/acl). Exit 0 when the daemon accepted it,
1 when it refused (the reason printed), 2 on a wrong command line, 69 when the broker cannot be reached or no
reply came in time (retry later; docs/TOOLS.md#exit-codes).
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
import numpy as np

from edge_runtime import clierror
from edge_runtime.config import Config, ConfigError
from edge_runtime.pipeline.feedback import standing_verdicts
from edge_runtime.pipeline.topics import format_topic
from edge_runtime.service.feedback_store import read_records
from edge_runtime.service.mqtt import (
    MqttConnectError,
)
from edge_runtime.tools.mqtt_request import NoReply, request
from edge_runtime.tools.prefix_option import daemon_prefix_option

PROG = "edgewatch feedback"
EXIT_REFUSED, EXIT_NO_REPLY = clierror.EXIT_FAILURE, clierror.EXIT_UNAVAILABLE


class CommandTimeout(NoReply):
    """No reply from the daemon in time."""


class NothingToExport(LookupError):
    """The verdicts label nothing that was given (exit 1: found nothing); nothing was written."""


def judged_records(log_path: Path, device: str = "") -> list[dict[str, Any]]:
    """The feedback log's records (``device``: only its); a :class:`click.UsageError` naming what the log holds
    when none are left."""
    records = list(read_records(log_path))
    if not records:
        raise click.UsageError(f"no verdicts in {log_path}")
    mine = [r for r in records if not device or r.get("device") == device]
    if not mine:
        raise click.UsageError(f"no verdicts for device {device!r} in {log_path} ({len(records)} verdicts, "
                               f"for {devices_text(records)})")
    return mine


def devices_text(records: Iterable[dict[str, Any]]) -> str:
    """``pump-2, pump-7 and 3 more``: the devices of ``records``, sorted."""
    names = sorted({str(r.get("device")) for r in records})
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "") or "none"


def _utc_span(times: Iterable[float]) -> str:
    from edge_runtime.tools.evidence import utc_text

    ts = sorted(times)
    return " to ".join(utc_text(t) for t in (ts[0], ts[-1])) if ts else "none"


def send_command(cfg: Config, doc: dict[str, Any], instance: str, timeout: float = 10.0) -> dict[str, Any]:
    """Publish ``doc`` (a request id added) on ``instance``'s command topic; its reply document."""
    request_id = doc.setdefault("request_id", uuid.uuid4().hex)
    reply_topic = format_topic(cfg.reply_topic, instance=instance)
    command_topic = format_topic(cfg.command_topic, instance=instance)
    got: list[dict[str, Any]] = []

    def on_reply(reply: dict[str, Any]) -> bool:
        if reply.get("request_id") != request_id:
            return False
        got.append(reply)
        return True

    try:
        request(cfg, command_topic, doc, reply_topic, on_reply, timeout, "edgewatch-feedback")
    except NoReply as exc:
        raise CommandTimeout(
            f"{exc}: is the daemon {instance!r} running with runtime.commands = true, and may this account "
            f"write {command_topic} (the broker's ACL)?") from None
    return got[0]


def label_rows(times: Iterable[float], records: Iterable[dict[str, Any]], device: str = "") -> list[int | None]:
    """Per row time: 1 inside a confirmed alert's episode, 0 inside a false alarm's, None elsewhere (the
    daemon's rule: the last false_alarm or confirmed on an alert wins, ack changes nothing,
    pipeline/feedback.standing_verdicts; ``device`` keeps only its verdicts)."""
    latest = standing_verdicts(records, device)
    spans = [(float(r["window_start"]), float(r["window_end"]), 1 if r["verdict"] == "confirmed" else 0)
             for r in latest.values() if isinstance(r.get("window_start"), (int, float))
             and isinstance(r.get("window_end"), (int, float))]
    out: list[int | None] = []
    for t in times:
        label: int | None = None
        for a, b, v in spans:
            if a <= t <= b:
                label = max(v, label or 0)
        out.append(label)
    return out


def export_labelled(log_path: Path, data: list[Path], out_dir: Path, device: str,
                    time_column: str = "timestamp") -> dict[str, int]:
    """Write each recording of ``data`` (of ``device``: a recording has no device column, so only its verdicts
    may label it) to ``out_dir`` with an ``anomaly`` column from the verdicts (rows of a
    confirmed alert 1, all others 0: a false alarm's rows are normal operation), and the verdicts to
    ``out_dir``/verdicts.jsonl. Counts of rows by label. :class:`NothingToExport` (nothing written) when no row
    of the recordings falls inside a judged alert."""
    if not device:
        raise ValueError("export_labelled needs the device the recordings are of")
    records = judged_records(log_path, device)
    tables = [_read_recording(path, time_column) for path in data]
    judged = standing_verdicts(records, device)
    if not judged:
        raise NothingToExport(f"no alert of {log_path} is judged confirmed or false alarm (acks label nothing)")
    labelled = [label_rows(times, records, device) for _, _, _, times in tables]
    if not any(lab is not None for labels in labelled for lab in labels):
        spans = [t for r in judged.values() for k in ("window_start", "window_end")
                 if isinstance(t := r.get(k), (int, float))]
        raise NothingToExport(
            f"no row of the recordings falls inside a judged alert (confirmed or false alarm): the alerts span "
            f"{_utc_span(spans)} UTC, the recordings {_utc_span(t for *_, ts in tables for t in ts)} UTC; "
            "record the device while it alerts (`edgewatch record`), or export --evidence")
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"rows": 0, "confirmed_rows": 0, "false_alarm_rows": 0, "verdicts": len(records)}
    with (out_dir / "verdicts.jsonl").open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(rec) + "\n" for rec in records)
    for (path, header, body, _), labels in zip(tables, labelled, strict=True):
        keep = [i for i, h in enumerate(header) if h != "anomaly"]
        with (out_dir / path.name).open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow([header[i] for i in keep] + ["anomaly"])
            for r, lab in zip(body, labels, strict=True):
                w.writerow([r[i] for i in keep] + [1 if lab == 1 else 0])
        counts["rows"] += len(body)
        counts["confirmed_rows"] += sum(lab == 1 for lab in labels)
        counts["false_alarm_rows"] += sum(lab == 0 for lab in labels)
    return counts


def _read_recording(path: Path, time_column: str) -> tuple[Path, list[str], list[list[str]], list[float]]:
    """A recording's header, rows and row times (epoch seconds in ``time_column``)."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or time_column not in rows[0]:
        raise click.UsageError(f"{path}: no {time_column!r} column (a CSV from `edgewatch record`)")
    header, body = rows[0], rows[1:]
    ti = header.index(time_column)
    try:
        times = [float(r[ti]) for r in body]
    except (ValueError, IndexError):
        raise click.UsageError(f"{path}: {time_column!r} must hold epoch seconds") from None
    return path, header, body, times


def export_evidence(log_path: Path, evidence_dir: Path, out_dir: Path, device: str = "") -> dict[str, int]:
    """For each alert with a confirmed or false-alarm verdict (the one that stands: :func:`label_rows`) whose evidence the daemon kept
    (``alerts.evidence_dir``): its raw samples as ``out_dir``/<alert id>.csv with an ``anomaly`` column (a
    confirmed alert's rows from its raising window's start to its clear 1, the margins 0; a false alarm's rows all 0),
    and the verdicts to verdicts.jsonl. Counts. :class:`NothingToExport` (nothing written) when no judged alert
    has evidence kept."""
    from edge_runtime.service.evidence_store import SUFFIX, EvidenceError, EvidenceStore, file_name

    records = judged_records(log_path, device)
    latest = standing_verdicts(records)
    store = EvidenceStore(evidence_dir, max_bytes=1 << 62, max_age_s=0)  # reading: no eviction
    if not any(alert_id in store.index for alert_id in latest):
        raise NothingToExport(
            f"none of the {len(latest)} judged alerts (confirmed or false alarm) has evidence in {evidence_dir} "
            f"({len(store.index)} alerts' evidence kept there; alerts.evidence_dir, the oldest go past "
            "evidence_max_mb or evidence_max_age_s)" if latest else
            f"no alert of {log_path} is judged confirmed or false alarm (acks label nothing)")
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "verdicts.jsonl").open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(rec) + "\n" for rec in records)
    counts = {"alerts": 0, "missing": 0, "rows": 0, "confirmed_rows": 0, "false_alarm_rows": 0, "open": 0,
              "ended": 0}
    for alert_id, r in latest.items():
        try:
            meta, arrays = store.read(alert_id)
        except EvidenceError:
            counts["missing"] += 1
            continue
        ts, values = arrays["ts"], arrays["values"]
        if not meta.get("complete"):  # still open (its end not written yet), or ended early: rows after it missing
            counts["ended" if meta.get("reason") else "open"] += 1
        if r["verdict"] == "confirmed":
            # from the raising window's first sample (the onset lies in it; anomalous_since is that window's end):
            # rows of the fault labelled normal would teach the next model its onset as normal
            # (an alert adopted after a restart has the raise's window only in its raise event)
            raised = [e.get("window_start") for e in meta.get("events") or [] if isinstance(e, dict)
                      and e.get("event") == "raise"]
            starts = [float(t) for t in (meta.get("anomalous_since"), r.get("window_start"), *raised)
                      if isinstance(t, (int, float))]
            start = min(starts) if starts else -np.inf
            end = meta.get("cleared_end") or r.get("window_end") or np.inf
            labels = (ts >= float(start)) & (ts <= float(end))
        else:
            labels = np.zeros(ts.shape[0], bool)
        with (out_dir / (file_name(alert_id)[: -len(SUFFIX)] + ".csv")).open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", *meta.get("channels", []), "anomaly"])
            for t, row, lab in zip(ts.tolist(), values.tolist(), labels.tolist(), strict=True):
                w.writerow([repr(t), *(f"{v:.7g}" for v in row), int(lab)])
        counts["alerts"] += 1
        counts["rows"] += int(ts.shape[0])
        counts["confirmed_rows" if r["verdict"] == "confirmed" else "false_alarm_rows"] += (
            int(labels.sum()) if r["verdict"] == "confirmed" else int(ts.shape[0]))
    return counts


class _FeedbackGroup(click.Group):
    """``feedback export ...`` runs the export; anything else is a verdict (``feedback ALERT_ID ...``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["send", *args]
        return super().parse_args(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Any other name is an alert id: the verdict command (for tools that walk the command tree)."""
        return super().get_command(ctx, cmd_name) or super().get_command(ctx, "send")


@click.group(cls=_FeedbackGroup, context_settings={"help_option_names": ["-h", "--help"]})
def feedback_command() -> None:
    """Tell the daemon an alert was a false alarm, confirmed, or seen; export verdicts as labelled data.

    \b
      edgewatch feedback ALERT_ID --false-alarm --note "pump was being cleaned"
      edgewatch feedback --device pump-7 --confirmed
      edgewatch feedback --recalibrate pump-7
      edgewatch feedback export --log /var/lib/edgewatch --device pump-7 --data normal.csv --labelled labelled/

    A false alarm raises that device's threshold just above the alert's peak for the windows like it (same
    channels, same way: alerts.feedback_*, at most feedback_max_factor x its base, decaying back); the daemon
    replies with the new threshold and which windows it applies to. The last verdict on an alert wins
    (any of its messages' ids names it): --confirmed after --false-alarm withdraws that raise; the same
    verdict again is "already recorded" and changes nothing.
    The verdict's options (account, broker, instance, timeout): `edgewatch feedback ALERT_ID --help`.
    """


class _VerdictCommand(click.Command):
    """The verdict command, reached as ``edgewatch feedback ALERT_ID ...``: its usage line says so (not "send")."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        path = ctx.parent.command_path if ctx.parent is not None else ctx.command_path
        formatter.write_usage(path, "[ALERT_ID] [OPTIONS]")

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        """A wrong command line names ``edgewatch feedback`` and its help, not the hidden "send"."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            path = parent.command_path if parent is not None else PROG
            raise clierror.usage_line(exc, path, f"{path} ALERT_ID --help") from None


@feedback_command.command("send", hidden=True, cls=_VerdictCommand)
@click.argument("alert_id", required=False, default="")
@click.option("--false-alarm", "false_alarm", is_flag=True, help="The alert was wrong: raise the threshold.")
@click.option("--confirmed", is_flag=True, help="The alert was a real fault.")
@click.option("--ack", is_flag=True, help="Seen, no verdict.")
@click.option("--recalibrate", "recalibrate", default="", metavar="DEVICE", help="Start DEVICE's warm-up again.")
@click.option("--device", default="", help="Without ALERT_ID: that device's latest alert.")
@click.option("--note", default="", help="Free text kept in the feedback log (500 characters).")
@click.option("--instance", default="", help="The daemon's runtime.instance (default: the config's, or this host).")
@click.option("--broker", default=None, help="Broker URL; overrides the config's.")
@click.option("--config", "config_file", type=click.Path(), help="Broker, TLS, auth and topics from here.")
@daemon_prefix_option
@click.option("--username", default=None, help="The operator account (overrides mqtt.username).")
@click.option("--password-file", default=None, help="File whose first line is its password.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for the reply.")
@click.option("--json", "as_json", is_flag=True, help="Print the reply as JSON.")
def send(alert_id: str, false_alarm: bool, confirmed: bool, ack: bool, recalibrate: str, device: str, note: str,
         instance: str, broker: str | None, config_file: str | None, topic_prefix: str | None, username: str | None,
         password_file: str | None, timeout: float, as_json: bool) -> None:
    """A verdict on one alert (ALERT_ID, or --device's latest), sent to the daemon; its reply is printed (exit 0
    accepted, 1 refused, 2 a wrong command line, 69 no broker or no reply)."""
    from edge_runtime.cli import config_from_flags

    given = [v for v, on in (("false_alarm", false_alarm), ("confirmed", confirmed), ("ack", ack)) if on]
    if len(given) + bool(recalibrate) > 1:  # two verdicts that contradict each other: never pick one silently
        flags = [f"--{v.replace('_', '-')}" for v in given] + (["--recalibrate"] if recalibrate else [])
        clierror.fail(f"give one of --false-alarm, --confirmed, --ack or --recalibrate, not {' and '.join(flags)}",
                      2, prog=PROG)
    verdict = given[0] if given else None
    if recalibrate:
        doc: dict[str, Any] = {"command": "recalibrate", "device": recalibrate, "source": "cli"}
    elif verdict is None:
        clierror.fail("give a verdict: --false-alarm, --confirmed or --ack (or --recalibrate DEVICE)", 2, prog=PROG)
    elif not alert_id and not device:
        clierror.fail("name the alert: ALERT_ID, or --device DEVICE for its latest", 2, prog=PROG)
    else:
        doc = {"command": "feedback", "verdict": verdict, "alert_id": alert_id, "device": device, "note": note,
               "source": "cli"}
    cfg = config_from_flags(config_file, {"broker": broker, "prefix": topic_prefix, "username": username,
                                          "password_file": password_file})
    try:
        reply = send_command(cfg, doc, instance or cfg.instance_name, timeout)
    except (MqttConnectError, ConfigError) as exc:
        clierror.fail(str(exc), exc.exit_code, prog=PROG)
    except CommandTimeout as exc:
        clierror.fail(str(exc), EXIT_NO_REPLY, prog=PROG)
    if as_json:
        click.echo(json.dumps(reply))
    else:
        click.echo(f"{reply.get('status')}: {reply.get('reason')}")
    if reply.get("status") != "accepted":
        raise SystemExit(EXIT_REFUSED)


@feedback_command.command("export")
@click.option("--log", "log_path", type=clierror.InputPath(path_type=Path), required=True,
              help="The feedback log: the daemon's runtime.state_dir, or its feedback.jsonl.")
@click.option("--data", "data", type=clierror.InputPath(dir_okay=False, path_type=Path), multiple=True,
              help="Recordings of the device (CSV from `edgewatch record`); repeatable.")
@click.option("--evidence", "evidence_dir", type=clierror.InputPath(file_okay=False, path_type=Path),
              help="Instead of recordings: the daemon's evidence folder (alerts.evidence_dir): each judged alert's "
              "own samples, one CSV per alert.")
@click.option("--labelled", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the labelled CSVs (an `anomaly` column) and verdicts.jsonl.")
@click.option("--device", default="", help="Only this device's verdicts; needed with --data: the device the "
              "recordings are of.")
def export(log_path: Path, data: tuple[Path, ...], evidence_dir: Path | None, out_dir: Path, device: str) -> None:
    """Label recordings with the verdicts: rows of confirmed alerts anomaly=1, every other row 0 (a false
    alarm's rows are normal operation): `edgewatch-train fit DIR` trains on the normal rows (the false
    alarms included), `edgewatch-train evaluate --data DIR/x.csv` scores the confirmed faults."""
    if bool(data) == bool(evidence_dir):
        clierror.fail("give --data RECORDING.csv (repeatable) or --evidence DIR" + (", not both" if data else ""), 2,
                      prog=f"{PROG} export")
    try:
        if evidence_dir is not None:
            ev = export_evidence(log_path, evidence_dir, out_dir, device)
            click.echo(f"{ev['alerts']} alerts' evidence written to {out_dir} ({ev['rows']} rows: "
                       f"{ev['confirmed_rows']} in confirmed alerts, {ev['false_alarm_rows']} of false alarms); "
                       f"{ev['missing']} judged alerts have no evidence kept")
            if ev["open"]:
                click.echo(f"{PROG} export: warning: {ev['open']} of them still open: their end and the margin after "
                           "it are written once the stream has passed them, so a confirmed one has few anomalous rows "
                           "yet: export again later", err=True)
            if ev["ended"]:
                click.echo(f"{PROG} export: warning: {ev['ended']} of them ended early (the device left, a reload, or "
                           "the daemon stopped): their rows stop there", err=True)
            return
        if not device:
            clierror.fail("--data needs --device D, the device the recordings are of (`edgewatch record --device D`): "
                          "a recording has no device column, so only D's verdicts may label its rows (the log has "
                          f"verdicts for {devices_text(read_records(log_path))})", clierror.EXIT_USAGE,
                          prog=f"{PROG} export")
        counts = export_labelled(log_path, list(data), out_dir, device)
    except click.UsageError as exc:  # a log without verdicts, a recording without epoch timestamps
        clierror.fail(exc.format_message(), clierror.EXIT_DATAERR, prog=f"{PROG} export")
    except NothingToExport as exc:
        clierror.fail(f"{exc}; nothing written", clierror.EXIT_FAILURE, prog=f"{PROG} export")
    click.echo(f"{counts['rows']} rows written to {out_dir}: {counts['confirmed_rows']} in confirmed alerts "
               f"(anomaly=1), {counts['false_alarm_rows']} in false alarms (normal); {counts['verdicts']} verdicts")


