"""``edgewatch evidence``: the evidence the daemon keeps around every alert (``alerts.evidence_dir``).

    edgewatch evidence list                                  # the alerts kept, oldest first
    edgewatch evidence show pump-1:7 [--png plot.png]        # what it holds; a plot of channels vs expected
    edgewatch evidence export pump-1:7 --out pump-1-7.csv    # raw samples as CSV (--format npz: the file)
        [--windows w.csv] [--expected e.csv]                 # scored windows; the model's expected curves
    edgewatch evidence fetch pump-1:7 --out pump-1-7.npz     # over MQTT from a daemon (alerts.evidence_requests)

``list``/``show``/``export`` read the folder (``--dir``, else the config's ``alerts.evidence_dir``) on the
gateway; ``fetch`` asks a daemon over MQTT and writes the ``.npz`` it sends. ``--png`` needs matplotlib
(``pip install 'edgewatch[plot]'``); without it, ``show`` says so and exits 2.
"""

from __future__ import annotations

import base64
import csv
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import numpy as np

from edge_runtime import clierror
from edge_runtime.config import Config, ConfigError
from edge_runtime.pipeline.explain import fmt_duration
from edge_runtime.pipeline.topics import format_topic
from edge_runtime.service.evidence_store import EvidenceError, EvidenceStore, decode
from edge_runtime.tools.mqtt_request import NoReply, request
from edge_runtime.tools.prefix_option import daemon_prefix_option

PROG = "edgewatch evidence"


def utc_text(t: Any) -> str:
    """An epoch time as ``YYYY-MM-DD HH:MM:SS`` (UTC); ``-`` when it is not a time."""
    try:
        return datetime.fromtimestamp(float(t), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "-"


def _store(folder: str | None, config_file: str | None) -> EvidenceStore:
    """The evidence folder, read-only use (an unusable one is a one-line error)."""
    if not folder:
        from edge_runtime.cli import config_from_flags

        folder = config_from_flags(config_file, {}).evidence_dir
    if not folder:
        clierror.fail("no evidence folder: give --dir, or set alerts.evidence_dir in the config", 2, prog=PROG)
    p = Path(folder)
    if not p.is_dir():
        what = "not a folder" if p.exists() else "no such folder"
        clierror.fail(f"{p}: {what} (the daemon's alerts.evidence_dir)", clierror.EXIT_NOINPUT, prog=PROG)
    return EvidenceStore(p, max_bytes=1 << 62, max_age_s=0)  # reading: no eviction here


def list_rows(store: EvidenceStore) -> list[str]:
    """One line per alert kept: id, device, anomalous since, duration, peak, samples, complete, size."""
    out = [f"{'alert id':<24} {'device':<16} {'anomalous since (UTC)':<21} {'lasted':>8} {'peak':>8} "
           f"{'samples':>7}  state     bytes"]
    for e in store.entries():
        m = e.meta
        since, end = m.get("anomalous_since"), m.get("cleared_end")
        lasted = fmt_duration(float(end) - float(since)) if isinstance(end, (int, float)) and since else "-"
        state = "complete" if m.get("complete") else (str(m.get("reason") or "open"))
        out.append(f"{e.alert_id:<24} {str(m.get('device'))[:16]:<16} {utc_text(since):<21} {lasted:>8} "
                   f"{float(m.get('peak_score') or 0):>8.4g} {int(m.get('samples') or 0):>7}  {state:<9} {e.size}")
    return out


def show_lines(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[str]:
    """What one alert's evidence holds, for a person."""
    ts = arrays["ts"]
    units = meta.get("units") or {}
    lines = [f"alert {meta['alert_id']} of device {meta.get('device')} (model {meta.get('model_id')}, "
             f"threshold {float(meta.get('threshold') or 0):.4g})",
             f"anomalous since {utc_text(meta.get('anomalous_since'))} UTC; "
             + (f"cleared at {utc_text(meta.get('cleared_end'))} UTC" if meta.get("cleared_end") else "not cleared")
             + ("" if meta.get("complete") else f" ({meta.get('reason') or 'still open'}: incomplete)"),
             f"{len(ts)} samples" + (f" from {utc_text(ts[0])} to {utc_text(ts[-1])} UTC" if len(ts) else "")
             + f", {len(arrays['win_end'])} windows scored, peak score {float(meta.get('peak_score') or 0):.4g}"
             + (f"; {meta['samples_dropped']} samples beyond the bound not kept" if meta.get("samples_dropped") else ""),
             _expected_line(meta, arrays)]
    for e in meta.get("events") or []:
        lines.append(f"  {utc_text(e.get('window_end'))}  {str(e.get('event', '?')):<6}  {e.get('summary', '')}")
    if len(ts):
        lines.append("channel          unit      min        mean       max")
        v = arrays["values"]
        for i, name in enumerate(meta.get("channels") or []):
            col = v[:, i]
            lines.append(f"  {name[:14]:<14} {units.get(name, ''):<8} {col.min():>10.4g} {col.mean():>10.4g} "
                         f"{col.max():>10.4g}")
    return lines


def _expected_line(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    m = int(arrays["exp_start"].shape[0]) if "exp_start" in arrays else 0
    if int(meta.get("version") or 1) < 2:
        return "no expected curves (an evidence file of version 1: the expected values at the raise and updates only)"
    dropped = int(meta.get("expected_dropped") or 0)
    return (f"{m} window(s) with the model's expected curve (its reconstruction at the raise and updates)"
            + (f"; {dropped} more beyond alerts.evidence_max_expected not kept" if dropped else ""))


def expected_samples(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The expected curves as samples: each curve's window index (m*W,), sample times (m*W,) spaced evenly
    from ``exp_start`` to ``exp_end`` (as the raw samples' times are), values (m*W, C)."""
    exp = arrays.get("expected")
    if exp is None or exp.shape[0] == 0:
        c = exp.shape[2] if exp is not None and exp.ndim == 3 else 0
        return np.zeros(0, np.int64), np.zeros(0), np.zeros((0, c), np.float32)
    m, w, c = exp.shape
    frac = np.linspace(0.0, 1.0, w) if w > 1 else np.ones(1)
    t = arrays["exp_start"][:, None] + (arrays["exp_end"] - arrays["exp_start"])[:, None] * frac[None]
    return np.repeat(np.arange(m), w), t.reshape(-1), exp.reshape(m * w, c)


def write_expected_csv(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> int:
    """The model's expected curves as CSV (``window`` index, ``window_end``, ``timestamp``, then each channel's
    ``expected_<channel>`` in its unit), one row per sample of each raise/update window; rows written."""
    idx, t, v = expected_samples(arrays)
    ends = arrays["exp_end"].tolist() if "exp_end" in arrays else []
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["window", "window_end", "timestamp", *(f"expected_{c}" for c in meta.get("channels", []))])
        for k, ts, row in zip(idx.tolist(), t.tolist(), v.tolist(), strict=True):
            w.writerow([k, repr(ends[k]), repr(ts), *(f"{x:.7g}" for x in row)])
    return int(t.shape[0])


def write_csv(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> int:
    """Raw samples as CSV (``timestamp`` epoch s, then one column per channel); rows written."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", *meta.get("channels", [])])
        for t, row in zip(arrays["ts"].tolist(), arrays["values"].tolist(), strict=True):
            w.writerow([repr(t), *(f"{v:.7g}" for v in row)])
    return int(arrays["ts"].shape[0])


def write_windows_csv(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> int:
    """Scored windows as CSV (``window_end``, ``score``, then each channel's ``channel_error``)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["window_end", "score", *(f"error_{c}" for c in meta.get("channels", []))])
        for t, s, row in zip(arrays["win_end"].tolist(), arrays["win_score"].tolist(), arrays["win_error"].tolist(),
                             strict=True):
            w.writerow([repr(t), f"{s:.7g}", *(f"{v:.7g}" for v in row)])
    return int(arrays["win_end"].shape[0])


def _expected_means(ax: Any, meta: dict[str, Any], name: str, t0: float) -> None:
    """Version 1 files: the expected window means of the top channels at the raise and updates."""
    for e in meta.get("events") or []:
        for tc in e.get("top_channels") or []:
            if tc.get("name") == name and "expected" in tc:
                ax.plot([float(e["window_start"]) - t0, float(e["window_end"]) - t0], [tc["expected"]] * 2,
                        color="tab:orange", lw=2, label="expected")


def plot_png(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """One panel per channel (raw samples, the model's expected curve over each raise/update window, or for a
    version 1 file the expected window means of the top channels; the alert's span) and the window scores
    against the threshold. Raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    channels: Sequence[str] = meta.get("channels") or []
    units = meta.get("units") or {}
    ts, v = arrays["ts"], arrays["values"]
    fig, axes = plt.subplots(len(channels) + 1, 1, figsize=(10, 1.8 * (len(channels) + 1)), sharex=True,
                             squeeze=False)
    t0 = float(ts[0]) if len(ts) else float(meta.get("anomalous_since") or 0)
    since, end = meta.get("anomalous_since"), meta.get("cleared_end")
    idx, et, ev = expected_samples(arrays)
    for i, name in enumerate(channels):
        ax = axes[i][0]
        ax.plot(ts - t0, v[:, i], lw=0.8, label="measured")
        if len(et):  # the model's reconstruction, window by window (a gap between windows, not a line)
            for k in range(int(idx[-1]) + 1):
                sel = idx == k
                ax.plot(et[sel] - t0, ev[sel, i], color="tab:orange", lw=1.4, label="expected")
        else:
            _expected_means(ax, meta, name, t0)
        ax.set_ylabel(f"{name}\n{units.get(name, '')}".strip(), fontsize=8)
        if since:
            ax.axvspan(float(since) - t0, (float(end) if end else float(ts[-1]) if len(ts) else float(since)) - t0,
                       color="tab:red", alpha=0.08)
    handles: dict[str, Any] = {}
    for row in axes[:-1]:
        for h, lab in zip(*row[0].get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    if handles:
        axes[0][0].legend(handles.values(), handles.keys(), fontsize=7, loc="upper left")
    ax = axes[-1][0]
    ax.plot(arrays["win_end"] - t0, arrays["win_score"], lw=0.8, color="k")
    ax.axhline(float(meta.get("threshold") or 0), color="tab:red", ls="--", lw=0.8)
    ax.set_ylabel("score", fontsize=8)
    ax.set_xlabel(f"seconds after {utc_text(t0)} UTC")
    fig.suptitle(f"{meta['alert_id']}: measured vs expected", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


class FetchError(NoReply):
    """No (complete) reply from the daemon."""


def fetch(cfg: Config, instance: str, alert_id: str, timeout: float = 10.0) -> bytes:
    """Ask ``instance``'s daemon for ``alert_id``'s evidence over MQTT; the ``.npz`` bytes."""
    request_id = uuid.uuid4().hex
    reply_topic = f"{format_topic(cfg.evidence_reply_topic, instance=instance)}/{request_id}"
    request_topic = format_topic(cfg.evidence_request_topic, instance=instance)
    chunks: dict[int, bytes] = {}
    state: dict[str, Any] = {}

    def on_reply(doc: dict[str, Any]) -> bool:
        if doc.get("status") != "ok":
            state["refused"] = str(doc.get("reason", "refused"))
            return True
        try:
            chunks[int(doc["chunk"])] = base64.b64decode(doc["data"])
            state["chunks"] = int(doc["chunks"])
        except (KeyError, TypeError, ValueError):
            return False
        return len(chunks) >= state["chunks"]

    try:
        request(cfg, request_topic, {"alert_id": alert_id, "request_id": request_id}, reply_topic, on_reply,
                timeout, "edgewatch-evidence")
    except NoReply as exc:
        got = f" ({len(chunks)} of {state['chunks']} chunks)" if "chunks" in state else ""
        raise FetchError(f"{exc}{got}: is the daemon {instance!r} running with alerts.evidence_requests = true, "
                         f"and may this account write {request_topic} (the broker's ACL)?") from None
    if "refused" in state:
        raise EvidenceError(state["refused"])
    return b"".join(chunks[i] for i in range(state["chunks"]))


_DIR = click.option("--dir", "folder", default=None, help="The evidence folder (default: alerts.evidence_dir).")
_CONFIG = click.option("--config", "config_file", type=click.Path(), help="The daemon's config file.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def evidence_command() -> None:
    """The evidence kept around every alert: raw samples from before the raise to after the clear, the
    windows' per-channel errors, model id and threshold (alerts.evidence_dir; bounded by evidence_max_mb).

    \b
      edgewatch evidence list
      edgewatch evidence show pump-1:7 --png pump-1-7.png
      edgewatch evidence export pump-1:7 --out pump-1-7.csv [--windows w.csv] [--expected e.csv]
      edgewatch evidence fetch pump-1:7 --instance gw-1 --out pump-1-7.npz
    """


@evidence_command.command("list")
@_DIR
@_CONFIG
def list_cmd(folder: str | None, config_file: str | None) -> None:
    """The alerts whose evidence is kept, oldest first."""
    for line in list_rows(_store(folder, config_file)):
        click.echo(line)


def _read(folder: str | None, config_file: str | None, alert_id: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        return _store(folder, config_file).read(alert_id)
    except EvidenceError as exc:
        clierror.fail(str(exc), 1, prog=PROG)


@evidence_command.command("show")
@click.argument("alert_id")
@click.option("--png", "png", type=click.Path(dir_okay=False, path_type=Path),
              help="Also plot channels vs expected to this PNG (needs matplotlib: pip install 'edgewatch[plot]').")
@_DIR
@_CONFIG
def show_cmd(alert_id: str, png: Path | None, folder: str | None, config_file: str | None) -> None:
    """What ALERT_ID's evidence holds: times, the alert's messages, each channel's range."""
    meta, arrays = _read(folder, config_file, alert_id)
    for line in show_lines(meta, arrays):
        click.echo(line)
    if png is not None:
        try:
            plot_png(png, meta, arrays)
        except ImportError:
            clierror.fail("--png needs matplotlib, which is not installed: pip install 'edgewatch[plot]'",
                          clierror.EXIT_UNAVAILABLE, prog=PROG)
        click.echo(f"plot written to {png}")


@evidence_command.command("export")
@click.argument("alert_id")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The file to write.")
@click.option("--format", "fmt", type=click.Choice(["csv", "npz"]), default=None,
              help="csv: raw samples (timestamp, channels); npz: the evidence file as kept (with the expected "
                   "curves: exp_start, exp_end, expected).  [default: from --out]")
@click.option("--windows", "windows", type=click.Path(dir_okay=False, path_type=Path),
              help="With csv: also the scored windows (window_end, score, per-channel errors) to this CSV.")
@click.option("--expected", "expected", type=click.Path(dir_okay=False, path_type=Path),
              help="With csv: also the model's expected curves (its reconstruction of the raise/update windows: "
                   "window, window_end, timestamp, expected_<channel>) to this CSV.")
@_DIR
@_CONFIG
def export_cmd(alert_id: str, out: Path, fmt: str | None, windows: Path | None, expected: Path | None,
               folder: str | None, config_file: str | None) -> None:
    """Write ALERT_ID's evidence to a file a spreadsheet, numpy or `edgewatch-train` reads."""
    fmt = fmt or ("npz" if out.suffix == ".npz" else "csv")
    try:
        if fmt == "npz":
            store = _store(folder, config_file)
            try:
                out.write_bytes(store.read_bytes(alert_id))
            except EvidenceError as exc:
                clierror.fail(str(exc), 1, prog=PROG)
            click.echo(f"{out} written")
            return
        meta, arrays = _read(folder, config_file, alert_id)
        n = write_csv(out, meta, arrays)
        msg = f"{n} samples written to {out}"
        if windows is not None:
            msg += f", {write_windows_csv(windows, meta, arrays)} windows to {windows}"
        if expected is not None:
            msg += f", {write_expected_csv(expected, meta, arrays)} expected samples to {expected}"
    except OSError as exc:
        clierror.fail(f"cannot write {exc.filename or out}: {exc.strerror or exc}", clierror.EXIT_IOERR, prog=PROG)
    click.echo(msg)


@evidence_command.command("fetch")
@click.argument("alert_id")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The .npz file to write.")
@click.option("--instance", default="", help="The daemon's runtime.instance (default: the config's, or this host).")
@click.option("--broker", default=None, help="Broker URL; overrides the config's.")
@_CONFIG
@daemon_prefix_option
@click.option("--username", default=None, help="An account the ACL lets write the request topic.")
@click.option("--password-file", default=None, help="File whose first line is its password.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for the reply.")
def fetch_cmd(alert_id: str, out: Path, instance: str, broker: str | None, config_file: str | None,
              topic_prefix: str | None, username: str | None, password_file: str | None, timeout: float) -> None:
    """Ask a daemon for ALERT_ID's evidence over MQTT (alerts.evidence_requests) and write it to --out."""
    from edge_runtime.cli import config_from_flags
    from edge_runtime.service.mqtt import MqttConnectError

    cfg = config_from_flags(config_file, {"broker": broker, "prefix": topic_prefix, "username": username,
                                          "password_file": password_file})
    try:
        data = fetch(cfg, instance or cfg.instance_name, alert_id, timeout)
        decode(data)  # a whole, readable file
    except (MqttConnectError, ConfigError, FetchError) as exc:
        clierror.fail(str(exc), clierror.code_of(exc), prog=PROG)
    except EvidenceError as exc:
        clierror.fail(f"refused: {exc}", 1, prog=PROG)
    except ValueError as exc:
        clierror.fail(f"the reply is not an evidence file: {exc}", clierror.EXIT_DATAERR, prog=PROG)
    out.write_bytes(data)
    click.echo(f"{out} written ({len(data)} bytes)")
