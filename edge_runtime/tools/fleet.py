"""``edgewatch fleet status``: one view of every gateway from its retained status and its periodic stats.

Subscribes to the status, stats (retained, so the last one arrives at once) and shadow topics of every
instance (the configured templates with ``{instance}`` as ``+``; with ``any_prefix`` also under every one-level
topic prefix, the row then named ``prefix/instance``) and keeps one :class:`Gateway` row per instance: online/offline and since when,
the live and shadow model, devices seen and their last samples, drops by reason (its input), outgoing messages
lost by reason (``publish_lost``), alerts raised in the last hour, sensor faults. :func:`table` and :func:`as_json` format the rows (pure); :func:`fleet_command` is the
CLI: a table refreshed in place on a terminal, or one JSON document with ``--json``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import click

from edge_runtime.clierror import fail
from edge_runtime.config import Config, ConfigError
from edge_runtime.tools.watch import Subscription, WatchError, decode_doc, fmt_time

FAULT_KEYS = ("windows_clipped", "windows_non_finite", "clock_resets", "gaps")  # what sensors did wrong
STALE_AFTER = 3.0  # stats intervals without a stats document: the gateway is shown as stale


@dataclass
class Gateway:
    """What the fleet view knows about one instance."""

    instance: str
    status: dict[str, Any] = field(default_factory=dict)
    status_received: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    stats_received: float = 0.0
    shadow: dict[str, Any] = field(default_factory=dict)

    def row(self, now: float, stats_interval_s: float = 60.0) -> dict[str, Any]:
        """The gateway's row (JSON-ready)."""
        st, sx = self.status, self.stats
        state = st.get("state", "unknown")
        if state == "online" and self.stats_received and now - self.stats_received > STALE_AFTER * stats_interval_s:
            state = "stale"
        # online: since the daemon started (its status is published again at each reconnect); offline: since then
        key = "started" if state in ("online", "stale") and isinstance(st.get("started"), (int, float)) else "time"
        since = st.get(key) if isinstance(st.get(key), (int, float)) else (self.status_received or None)
        models: dict[str, Any] = st["models"] if isinstance(st.get("models"), dict) else {}
        drops = sx.get("drops") if isinstance(sx.get("drops"), dict) else {}
        lost = sx.get("publish_lost") if isinstance(sx.get("publish_lost"), dict) else {}
        faults = {k: sx[k] for k in FAULT_KEYS if isinstance(sx.get(k), int) and sx[k]}
        if isinstance(sx.get("sensor_faults"), dict):  # sensor alerts raised, by kind (sensor health)
            faults.update({str(k): v for k, v in sx["sensor_faults"].items() if isinstance(v, int) and v})
        last = sx.get("last_sample") if isinstance(sx.get("last_sample"), dict) else {}
        return {
            "gateway": self.instance, "state": state, "since": since,
            "model_live": models.get("live") or st.get("model_id") or sx.get("model_id"),
            "model_shadow": models.get("shadow"), "model_previous": models.get("previous"),
            "rollout_phase": models.get("phase"), "devices": sx.get("devices_active"),
            "last_sample": last, "newest_sample": max(last.values()) if last else None,
            "drops": drops, "publish_lost": lost, "alerts_1h": sx.get("alerts_raised_1h"), "alerts_total": sx.get("alerts_raised"),
            "sensor_faults": faults, "last_refused": st.get("last_refused"),
            "stats_age_s": round(now - self.stats_received, 1) if self.stats_received else None,
        }


class FleetView:
    """Rows by instance, fed from the network thread (:meth:`on_message`)."""

    def __init__(self, status_topic: str, stats_topic: str, shadow_topic: str, any_prefix: bool = False) -> None:
        plain = {"status": status_topic.split("/"), "stats": stats_topic.split("/"), "shadow": shadow_topic.split("/")}
        self._templates = list(plain.items())
        if any_prefix:  # site-1/edgewatch/{instance}/status ... beside the unprefixed ones
            self._templates += [(kind, ["{prefix}", *levels]) for kind, levels in plain.items()]
        self.gateways: dict[str, Gateway] = {}
        self.skipped = 0
        self._lock = threading.Lock()

    @property
    def filters(self) -> list[tuple[str, int]]:
        return [("/".join("+" if lv in ("{instance}", "{prefix}") else lv for lv in t), 1) for _, t in self._templates]

    def _match(self, topic: str) -> tuple[str, str]:
        parts = topic.split("/")
        for kind, levels in self._templates:
            if len(parts) != len(levels):
                continue
            inst, prefix = "", ""
            for p, lv in zip(parts, levels, strict=True):
                if lv == "{instance}":
                    inst = p
                elif lv == "{prefix}":
                    prefix = p
                elif lv != p:
                    break
            else:
                if inst:
                    return kind, f"{prefix}/{inst}" if prefix else inst
        return "", ""

    def on_message(self, topic: str, payload: bytes, retained: bool, received: float | None = None) -> None:
        kind, inst = self._match(topic)
        if not kind or not payload:
            return
        doc, _ = decode_doc(payload)
        if doc is None:
            self.skipped += 1
            return
        now = time.time() if received is None else received
        with self._lock:
            gw = self.gateways.setdefault(inst, Gateway(inst))
            if kind == "status":
                gw.status, gw.status_received = doc, now
            elif kind == "stats":  # a retained one (the last before we connected) is as old as it says
                t = doc.get("time")
                gw.stats, gw.stats_received = doc, min(now, float(t)) if retained and isinstance(t, (int, float)) \
                    else now
            else:
                gw.shadow = doc

    def rows(self, now: float, stats_interval_s: float = 60.0) -> list[dict[str, Any]]:
        with self._lock:
            gws = sorted(self.gateways.values(), key=lambda g: g.instance)
        return [g.row(now, stats_interval_s) for g in gws]


HEADER = ("GATEWAY", "STATE", "SINCE", "LIVE", "SHADOW", "DEVICES", "LAST SAMPLE", "ALERTS 1H", "DROPS", "LOST OUT", "FAULTS")


def _short(d: dict[str, Any], n: int = 3) -> str:
    if not d:
        return "-"
    items = sorted(d.items(), key=lambda kv: -kv[1] if isinstance(kv[1], (int, float)) else 0)
    return ",".join(f"{k}={v}" for k, v in items[:n]) + (",..." if len(items) > n else "")


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table (one line per gateway)."""
    lines = [HEADER]
    for r in rows:
        lines.append((str(r["gateway"]), str(r["state"]), fmt_time(r["since"]) if r["since"] else "-",
                      str(r["model_live"] or "-"), str(r["model_shadow"] or "-"),
                      "-" if r["devices"] is None else str(r["devices"]),
                      fmt_time(r["newest_sample"]) if r["newest_sample"] else "-",
                      "-" if r["alerts_1h"] is None else str(r["alerts_1h"]), _short(r["drops"]),
                      _short(r["publish_lost"]), _short(r["sensor_faults"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def summary(rows: list[dict[str, Any]]) -> str:
    online = sum(r["state"] == "online" for r in rows)
    shadow = sum(bool(r["model_shadow"]) for r in rows)
    return f"{len(rows)} gateway(s): {online} online, {len(rows) - online} not; {shadow} shadowing a model"


def as_json(rows: list[dict[str, Any]], now: float) -> str:
    return json.dumps({"time": now, "gateways": rows})


def collect(cfg: Config, wait_s: float, notify: Any = None, any_prefix: bool = False) -> tuple[FleetView, Subscription]:
    """Subscribe and gather for ``wait_s`` seconds (retained statuses and the last stats arrive at once)."""
    view = FleetView(cfg.status_topic, cfg.stats_topic, cfg.shadow_topic, any_prefix)
    sub = Subscription(cfg, view.filters, view.on_message, notify or (lambda line: None), "edgewatch-fleet").start()
    time.sleep(wait_s)
    return view, sub


@click.group("fleet")
def fleet_command() -> None:
    """The fleet of gateways on a broker: `edgewatch fleet status --broker mqtt://host:1883`."""


@fleet_command.command("status")
@click.option("--broker", default=None, help="Broker URL (mqtt:// or mqtts://); overrides the config's.")
@click.option("--config", "config_file", type=click.Path(),
              help="Take broker, TLS, auth and the status/stats topics (and topics.prefix) from this config.")
@click.option("--json", "as_json_flag", is_flag=True, help="Print one JSON document of every gateway and exit.")
@click.option("--topic-prefix", default=None,
              help="The gateways' topics.prefix (site-1: site-1/edgewatch/+/status); '+' for every one-level prefix "
              "and none at once, each gateway named prefix/instance: one view of several sites.")
@click.option("--wait", "wait_s", type=float, default=3.0, show_default=True,
              help="Seconds to listen before the first view (statuses and the last stats are retained).")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Refresh the table this often.")
@click.option("--once", is_flag=True, help="Print the table once and exit (default on a terminal: refresh until Ctrl-C).")
@click.option("--stats-interval", type=float, default=60.0, show_default=True,
              help="The gateways' runtime.stats_interval_s: no stats for 3 of them shows a gateway as stale.")
def status(broker: str | None, config_file: str | None, topic_prefix: str | None, as_json_flag: bool, wait_s: float,
           interval: float, once: bool, stats_interval: float) -> None:
    """Every gateway: online/offline and since when, live and shadow model, devices and their last sample,
    drops by reason, alerts raised in the last hour, sensor faults."""
    from edge_runtime.cli import config_from_flags

    if wait_s < 0 or interval <= 0 or stats_interval <= 0:
        fail("--wait must be >= 0, --interval and --stats-interval > 0", prog="edgewatch")
    any_prefix = topic_prefix == "+"
    # '+': the unprefixed templates, each under any one-level prefix too (a configured prefix does not apply)
    cfg = config_from_flags(config_file, {"broker": broker, "prefix": "" if any_prefix else topic_prefix})
    try:
        view, sub = collect(cfg, wait_s, lambda line: click.echo(f"edgewatch fleet: {line}", err=True), any_prefix)
    except (WatchError, ConfigError) as exc:
        fail(str(exc), exc.exit_code, prog="edgewatch")
    try:
        if as_json_flag:
            now = time.time()
            click.echo(as_json(view.rows(now, stats_interval), now))
            return
        refresh = not once and sys.stdout.isatty()
        while True:
            rows = view.rows(time.time(), stats_interval)
            text = f"{table(rows)}\n{summary(rows)}"
            click.echo(("\033[H\033[2J" if refresh else "") + text)
            if not refresh:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
