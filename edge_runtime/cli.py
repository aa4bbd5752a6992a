"""``edgewatch``: the edge command line. Thin: parse, call the library, print, exit.

Commands of other modules register in :data:`LAZY_COMMANDS` (``name -> "module:attribute"``,
the attribute a ``click.Command``); they are imported only when used, so the
daemon's start-up never pays for (or imports) what ``bench`` or ``replay`` need. The demo
trains a model, so it is ``edgewatch-train demo`` (trainer/demo_cli.py), not a command here.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import signal
import sys
from typing import Any, NoReturn

import click

from edge_runtime import __version__, clierror
from edge_runtime.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    ConfigError,
    Option,
    build_config,
    default_config_file,
    options,
    secret_file_warnings,
)

# Exit codes: one scheme for every command line, defined in edge_runtime/clierror.py (docs/TOOLS.md#exit-codes).
EXIT_USAGE = clierror.EXIT_USAGE
EXIT_DATAERR = clierror.EXIT_DATAERR
EXIT_NOINPUT = clierror.EXIT_NOINPUT
EXIT_UNAVAILABLE = clierror.EXIT_UNAVAILABLE
EXIT_SOFTWARE = clierror.EXIT_SOFTWARE
EXIT_CONFIG = clierror.EXIT_CONFIG
EPILOG = f"""{clierror.EPILOG}

\b
Configuration: flag > EDGEWATCH_<SECTION>_<KEY> variable > config file > default;
the file is --config, else ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH} when it exists."""

# Other commands, imported on demand. Add a line here when you add a module.
LAZY_COMMANDS: dict[str, str] = {
    "simulate": "edge_runtime.tools.simulate:simulate_command",
    "replay": "edge_runtime.tools.replay:replay_command",
    "dashboard": "edge_runtime.integrations.dashboard.server:dashboard_command",
    "homeassistant": "edge_runtime.integrations.homeassistant_cli:homeassistant_command",
    "feedback": "edge_runtime.tools.feedback:feedback_command",
    "record": "edge_runtime.tools.record:record_command",
    "group": "edge_runtime.integrations.nats.cli:group_command",
    "fleet": "edge_runtime.tools.fleet:fleet_command",
    "evidence": "edge_runtime.tools.evidence:evidence_command",
}


class LazyGroup(clierror.OneLineErrors):
    """A click group whose extra commands are imported when first used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS and name not in self.commands:
            module, attr = LAZY_COMMANDS[name].split(":")
            try:
                cmd = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as exc:
                cmd = _broken_command(name, f"{LAZY_COMMANDS[name]}: {exc}")
            self.add_command(cmd, name)
        return super().get_command(ctx, name)


def _broken_command(name: str, why: str) -> click.Command:
    """Stands in for a registered command whose module cannot be imported (say why when used)."""

    def broken(**_: Any) -> None:
        fail(f"command '{name}' is unavailable: {why}")

    return click.Command(name, callback=broken, help=f"(unavailable: {why})",
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


def one_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, at most 200 characters."""
    return (str(exc).strip().splitlines() or [""])[0][:200]


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One clear line on stderr, exit ``code``, no traceback."""
    clierror.fail(message, code, prog="edgewatch")


@click.group(cls=LazyGroup, epilog=EPILOG,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="edgewatch")
def main() -> None:
    """edgewatch: score MQTT sensor streams with an exported ONNX model and publish anomaly alerts."""


def config_options(fn):
    """Decorate ``fn`` with one flag per configuration key (see edge_runtime/config.py)."""
    for o in reversed(options()):
        if o.flag is None:
            continue
        fn = click.option(*_flag_decl(o), **_flag_kwargs(o))(fn)
    return click.option("--config", "config_file", type=click.Path(),
                        help=f"TOML config file (see deploy/edgewatch.toml); default ${CONFIG_ENV}, else "
                        f"{DEFAULT_CONFIG_PATH} when it exists. EDGEWATCH_* variables and flags override it.")(fn)


def _flag_decl(o: Option) -> tuple[str, ...]:
    if o.type is bool:
        return (f"--{o.flag}/--no-{o.flag}", o.key)
    return (f"--{o.flag}", o.key)


def _flag_kwargs(o: Option) -> dict[str, Any]:
    kw: dict[str, Any] = {"default": None, "help": f"[{o.section}.{o.key}] {o.help}"}
    if o.type is list:
        kw.update(multiple=True, default=())
    elif o.choices:
        kw["type"] = click.Choice(o.choices, case_sensitive=False)
    elif o.type is not bool:
        kw["type"] = o.type
    return kw


def config_from_flags(config_file: str | None, flags: dict[str, Any]):
    """The validated config from the file (``config_file`` or the default), the environment and the given flags."""
    overrides = {k: (list(v) if isinstance(v, tuple) else v) for k, v in flags.items() if v is not None and v != ()}
    try:
        return build_config(config_file or default_config_file(os.environ), overrides, os.environ)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


@main.command(epilog=EPILOG)
@config_options
def run(config_file: str | None, **flags: Any) -> None:
    """Run the daemon: `edgewatch run --model m.onnx --broker mqtt://127.0.0.1:1883`."""
    # First of all: SIGHUP's default action ends the process, and `systemctl reload` may come right after a
    # (re)start. Until the daemon exists a SIGHUP is noted only: the model about to be loaded is current.
    early_hup: list[int] = []
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: early_hup.append(1))
    config_file = config_file or default_config_file(os.environ)
    cfg = config_from_flags(config_file, flags)
    if not cfg.path:
        where = f"edit [model] path in {config_file}" if config_file else "give --model PATH"
        fail(f"model.path: no model given: {where} (or set EDGEWATCH_MODEL_PATH)", EXIT_CONFIG)
    # Imported once the configuration is known good: a config error costs no onnxruntime import.
    from edge_runtime.logs import configure_logging
    from edge_runtime.service.daemon import Daemon
    from edge_runtime.service.model import ModelError, load_model

    configure_logging(cfg.log_format, cfg.log_level)
    for warning in secret_file_warnings(cfg, config_file):
        logging.getLogger("edge_runtime.config").warning(warning)
    try:
        cfg.resolve_password()
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    try:
        model = load_model(cfg.path, cfg.provider, cfg.intra_op_threads, cfg.max_model_bytes)
        daemon = Daemon(cfg, model)
    except ModelError as exc:
        fail(str(exc), exc.exit_code)  # 66: no such file; 65: not a usable model
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    except Exception as exc:  # an unforeseen model-file failure: still one line, no traceback
        fail(f"cannot use model {cfg.path}: {type(exc).__name__}: {one_line(exc)}", EXIT_DATAERR)
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.request_stop())
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    if early_hup:
        logging.getLogger("edge_runtime.service.daemon").info(
            "SIGHUP during start-up: the model file was read just now, no reload needed")
    daemon.start()
    while not daemon.wait(0.5):
        pass
    daemon.stop()
    if daemon.failure:
        fail(daemon.failure, EXIT_SOFTWARE)


@main.command()
@click.option("--broker", default=None, help="Broker URL (mqtt:// or mqtts://); overrides the config's.  "
              "[default: mqtt://127.0.0.1:1883]")
@click.option("--config", "config_file", type=click.Path(),
              help="Take broker, TLS, auth and topics from this config; flags override it.")
@click.option("--alert-topic", default=None, help="Alert topic template (default alerts/{device}).")
@click.option("--topic-prefix", default=None, help="The daemons' topics.prefix (site-1: site-1/alerts/{device}); "
              "put in front of the alert topic as `edgewatch run --topic-prefix` does.")
@click.option("--states/--no-states", "--state/--no-state", "state", default=False, show_default=True,
              help="Also show the per-device state documents (retained): in alarm or not (rows marked 'state') "
              "and the operating state, running, stopped, settling or out_of_distribution (rows marked 'operating').")
@click.option("--sensors/--no-sensors", default=False, show_default=True,
              help="Also show sensor faults (a channel missing, stuck or out of range, a device stale or rejected: "
              "all its messages dropped; health.sensor_topic; "
              "rows marked 'sensor'), which are kept apart from process alerts.")
@click.option("--format", "fmt", type=click.Choice(["auto", "table", "json"]), default="auto", show_default=True,
              help="auto: a table on a terminal, JSON lines when piped.")
@click.option("--color/--no-color", "colour", default=None,
              help="Colour raised/cleared in the table.  [default: on a terminal]")
@click.option("--count", type=int, default=0, help="Exit after printing this many rows (0: run until Ctrl-C).")
@click.option("--timeout", type=float, default=0.0, help="Exit after this many seconds (0: never).")
def alerts(broker: str | None, config_file: str | None, alert_topic: str | None, topic_prefix: str | None,
           state: bool, sensors: bool, fmt: str, colour: bool | None, count: int, timeout: float) -> None:
    """Show alerts live as they are published: one row per alert, stream and receive time in UTC."""
    from edge_runtime.tools.watch import HEADER, WatchError, format_row, json_line, watch_alerts

    cfg = config_from_flags(config_file, {"broker": broker, "alert_topic": alert_topic,  # None: not given
                                          "prefix": topic_prefix})
    tty = sys.stdout.isatty()
    table = fmt == "table" or (fmt == "auto" and tty)
    colour = tty if colour is None else colour
    if table:
        click.echo(HEADER)

    def emit(topic: str, doc: dict[str, Any], kind: str, received: float, retained: bool) -> None:
        line = format_row(doc, kind, received, retained, colour) if table else json_line(topic, doc, kind, received,
                                                                                        retained)
        click.echo(line, color=colour or None)

    def notify(line: str) -> None:
        click.echo(f"edgewatch alerts: {line}", err=True)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            watch_alerts(cfg, emit, include_state=state, include_sensors=sensors, count=count, timeout=timeout,
                         notify=notify)
    except (WatchError, ConfigError) as exc:
        fail(str(exc), exc.exit_code)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, add_help_option=False)
def bench() -> None:
    """Moved: the benchmarks are development tools, `edgewatch-lab bench` in a source checkout."""
    fail("the benchmarks moved to `edgewatch-lab bench` (a source checkout: scripts/setup.sh installs it)")


@main.command("check-model")
@click.argument("model_path", type=click.Path())
@click.option("--provider", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="onnxruntime intra-op threads.")
@click.option("--batch", type=int, default=64, show_default=True, help="Random batch size for the latency check.")
@click.option("--repeats", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def check_model(model_path: str, provider: str, threads: int, batch: int, repeats: int, as_json: bool) -> None:
    """Load a model, report provider and metadata, and time a random batch."""
    import numpy as np

    from edge_runtime.service.model import ModelError, benchmark, load_model

    if batch < 1 or repeats < 1 or threads < 1:
        fail("--batch, --repeats and --threads must be >= 1")
    try:
        m = load_model(model_path, provider, threads)
    except ModelError as exc:
        fail(str(exc), exc.exit_code)
    except Exception as exc:  # an unforeseen model-file failure: still one line, no traceback
        fail(f"cannot use model {model_path}: {type(exc).__name__}: {one_line(exc)}", EXIT_DATAERR)
    times = np.asarray(benchmark(m, batch, repeats)) * 1000.0
    meta = m.metadata
    doc = {
        "path": str(m.path), "model_id": m.model_id, "sha256": m.sha256, "provider": m.provider,
        "provider_reason": m.provider_reason, "format_version": meta.format_version, "window": meta.window,
        "hop": meta.hop, "channels": meta.channels, "threshold": meta.threshold.value,
        "threshold_method": meta.threshold.method, "sample_period_s": meta.sample_period_s,
        "precision": meta.precision, "batch": batch, "repeats": repeats,
        "latency_ms_median": round(float(np.median(times)), 4), "latency_ms_min": round(float(times.min()), 4),
        "windows_per_s": round(batch / (float(np.median(times)) / 1000.0), 1),
    }
    if as_json:
        click.echo(json.dumps(doc))
        return
    click.echo(f"model      {doc['path']}  (id {doc['model_id']}, format v{doc['format_version']}, {doc['precision']})")
    click.echo(f"provider   {doc['provider']}  ({doc['provider_reason']})")
    click.echo(f"window     W={meta.window} hop={meta.hop} C={meta.n_channels}: {', '.join(meta.channels)}")
    click.echo(f"threshold  {meta.threshold.value:.6g} ({meta.threshold.method})")
    click.echo(f"latency    batch {batch}: median {doc['latency_ms_median']} ms, min {doc['latency_ms_min']} ms "
               f"over {repeats} runs ({doc['windows_per_s']:.0f} windows/s)")


if __name__ == "__main__":  # pragma: no cover
    main()
