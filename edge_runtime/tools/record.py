"""``edgewatch record``: capture one device's data from the broker into a CSV the trainer reads.

    edgewatch record --device pump-7 --duration 2h --model model.onnx --out normal.csv
    edgewatch record --device pump-7 --duration 30m --channels pressure,flow --out normal.csv

Subscribes to the daemon's input topics (``input.topics`` of ``--config``, with the device filled in),
decodes every message as the daemon does (JSON or CSV payloads, the model's channel names) and writes
``timestamp`` (epoch s) plus one column per channel, in arrival order, flushed as it goes. A message that
does not decode is skipped and counted (the summary says how many and why), never written. Ends after
``--duration`` (device-independent wall time) or ``--samples``, or on Ctrl-C, keeping what was written.
"""

from __future__ import annotations

import contextlib
import csv
import queue
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

from edge_runtime import clierror
from edge_runtime.config import ConfigError
from edge_runtime.pipeline.calibration import CalibrationError, parse_warmup
from edge_runtime.pipeline.decode import DecodeError, Decoder
from edge_runtime.pipeline.topics import TopicTemplate, device_level_problem
from edge_runtime.tools.prefix_option import daemon_prefix_option

PROG = "edgewatch record"


def record(cfg: Any, device: str, channels: list[str], out: Path, seconds: float, max_samples: int,
           notify: Any = None) -> dict[str, Any]:
    """Write ``device``'s samples to ``out`` for ``seconds`` (0: no limit) or ``max_samples``; a summary."""
    from edge_runtime.tools.watch import Subscription

    topics = [t.replace("{device}", device) for t in cfg.topics]
    for t in cfg.topics:
        TopicTemplate(t)  # a bad template is refused before connecting
    inbox: queue.Queue[bytes] = queue.Queue()
    decoder = Decoder(channels, cfg.max_payload_bytes, cfg.max_samples_per_message, cfg.max_future_s)
    skipped: Counter[str] = Counter()
    n = 0
    sub = Subscription(cfg, [(t, 1) for t in topics], lambda t, p, r: inbox.put(p), notify or (lambda s: None),
                       client_prefix="edgewatch-record")
    sub.start()  # WatchError (exit 69) when the broker cannot be reached
    deadline = time.monotonic() + seconds if seconds > 0 else float("inf")
    try:
        try:
            fh = out.open("w", newline="", encoding="utf-8")
        except OSError as exc:
            raise clierror.with_code(OSError(f"--out: cannot write {out}: {exc.strerror or exc}"),
                                     clierror.EXIT_IOERR) from None
        with fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", *channels])
            with contextlib.suppress(KeyboardInterrupt):
                while time.monotonic() < deadline and (max_samples <= 0 or n < max_samples):
                    try:
                        payload = inbox.get(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
                    except queue.Empty:
                        continue
                    try:
                        s = decoder.decode(payload, time.time())
                    except DecodeError as exc:
                        skipped[exc.reason] += 1
                        continue
                    for t, row in zip(s.ts.tolist(), s.values.tolist(), strict=True):
                        w.writerow([f"{t:.3f}", *(f"{v:.7g}" for v in row)])
                        n += 1
                    fh.flush()
    finally:
        sub.close()
    return {"samples": n, "skipped": dict(skipped), "out": str(out)}


@click.command("record")
@click.option("--device", required=True, help="The device id (its level in the input topics).")
@click.option("--duration", default="", help="How long: 90s, 30m, 2h, 1d (default: until Ctrl-C or --samples).")
@click.option("--samples", "max_samples", type=int, default=0, help="Stop after this many samples (0: no limit).")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="CSV to write.")
@click.option("--model", "model_path", type=click.Path(), default=None,
              help="Take the channel names from this model (else --channels, else the config's model).")
@click.option("--channels", default="", help="Comma-separated channel names, as in the payloads.")
@click.option("--broker", default=None, help="Broker URL; overrides the config's.")
@click.option("--config", "config_file", type=click.Path(), help="Broker, auth, TLS and input topics.")
@daemon_prefix_option
def record_command(device: str, duration: str, max_samples: int, out: Path, model_path: str | None, channels: str,
                   broker: str | None, config_file: str | None, topic_prefix: str | None) -> None:
    """Capture a device's data from the broker to a CSV (timestamp + channels) for `edgewatch-train fit`."""
    from edge_runtime.cli import config_from_flags

    try:
        spec = parse_warmup(duration) if duration else None
    except CalibrationError as exc:
        clierror.fail(f"--duration: {exc}", 2, prog=PROG)
    if spec is not None and spec.samples:
        clierror.fail("--duration takes a duration (90s, 30m, 2h); use --samples for a count", 2, prog=PROG)
    problem = device_level_problem(device)  # a wildcard would mix devices in one file
    if problem:
        clierror.fail(f"--device {device!r}: {problem}", 2, prog=PROG)
    cfg = config_from_flags(config_file, {"broker": broker, "prefix": topic_prefix})
    names = [c.strip() for c in channels.split(",") if c.strip()]
    if not names:
        path = model_path or cfg.path
        if not path:
            clierror.fail("name the channels: --model MODEL.onnx or --channels a,b,c", 2, prog=PROG)
        from edge_runtime.service.model import ModelError, load_model

        try:
            names = list(load_model(path).metadata.channels)
        except ModelError as exc:
            clierror.fail(str(exc), exc.exit_code, prog=PROG)
    from edge_runtime.tools.watch import WatchError

    try:
        summary = record(cfg, device, names, out, spec.seconds if spec else 0.0, max_samples,
                         notify=lambda line: click.echo(f"{PROG}: {line}", err=True))
    except (ConfigError, WatchError, OSError) as exc:
        clierror.fail(str(exc), clierror.code_of(exc), prog=PROG)
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(summary["skipped"].items())) or "none"
    click.echo(f"{summary['samples']} samples of {device} written to {out} (skipped messages: {skipped})",
               )
