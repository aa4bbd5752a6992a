"""``edgewatch-train demo``: the click command only; the orchestration lives in :mod:`trainer.demo`.

The demo trains a model, so it is a workstation job and belongs to the trainer CLI, not the edge's
``edgewatch`` (which never imports trainer or torch).
"""

from __future__ import annotations

from pathlib import Path

import click

from edge_runtime.clierror import fail


@click.command("demo")
@click.option("--devices", type=click.IntRange(1, 50), default=4, show_default=True, help="Simulated devices.")
@click.option("--rate", type=click.FloatRange(min=1.0), default=20.0, show_default=True,
              help="Samples per second per device.")
@click.option("--duration", type=click.FloatRange(min=10.0), default=60.0, show_default=True,
              help="Seconds of data per device.")
@click.option("--speed", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Stream this many times faster than real time.")
@click.option("--anomalies", type=click.IntRange(0, 20), default=2, show_default=True,
              help="Injected anomalies per device.")
@click.option("--epochs", type=click.IntRange(1, 200), default=15, show_default=True, help="Training epochs.")
@click.option("--train-steps", type=click.IntRange(1000, 10_000_000), default=8000, show_default=True,
              help="Samples of normal training data.")
@click.option("--batch", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Samples per MQTT message (1: single-sample JSON, >1: JSON batches).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
              show_default=True, help="Run folders go here (runs/demo-<timestamp>/).")
@click.option("--broker-kind", type=click.Choice(["auto", "mosquitto", "amqtt"]), default="auto", show_default=True,
              help="Private broker: mosquitto where installed (auto), else the embedded amqtt (pip install amqtt).")
@click.option("--keep-running", is_flag=True, help="Leave the broker and daemon running at the end.")
@click.option("--faults/--no-faults", default=True, show_default=True,
              help="Train on a machine that stops, and end the stream with a stop and one of each sensor fault "
              "(freeze, dropout, out_of_range, a dead device): 24 s more.")
def demo_command(devices: int, rate: float, duration: float, speed: float, anomalies: int, epochs: int,
                 train_steps: int, batch: int, seed: int, out_dir: Path, broker_kind: str, keep_running: bool,
                 faults: bool) -> None:
    """Train a model, start a broker and the daemon, stream anomalies, a stop and sensor faults, show the alerts
    and a summary that lists process anomalies, sensor faults and operating states apart."""
    from trainer.demo import DemoError, DemoOptions, run_demo

    opts = DemoOptions(devices=devices, rate=rate, duration=duration, speed=speed, anomalies=anomalies,
                       epochs=epochs, train_steps=train_steps, batch=batch, seed=seed, out_dir=out_dir,
                       broker_kind=broker_kind, keep_running=keep_running, faults=faults)
    try:
        run_demo(opts, echo=click.echo)
    except DemoError as exc:
        fail(str(exc), 1, prog="edgewatch-train demo")
    except KeyboardInterrupt:
        click.echo("edgewatch-train demo: interrupted; stopped what it started", err=True)
        raise SystemExit(130) from None
