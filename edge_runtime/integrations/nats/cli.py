"""``edgewatch group create|status|add|remove``: a NATS JetStream consumer group's configuration (thin)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from edge_runtime import clierror
from edge_runtime.config import Config, ConfigError, build_config, default_config_file

log = logging.getLogger(__name__)
T = TypeVar("T")
EXIT_USAGE, EXIT_CONFIG = clierror.EXIT_USAGE, clierror.EXIT_CONFIG


def _fail(message: str, code: int = EXIT_USAGE) -> Any:
    clierror.fail(message, code, prog="edgewatch group")


def _config(config_file: str | None, servers: str | None) -> Config:
    try:
        overrides = {"servers": servers} if servers else {}
        return build_config(config_file or default_config_file(os.environ), overrides, os.environ)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_CONFIG)


def _run(cfg: Config, job: Callable[[Any], Awaitable[T]]) -> T:
    """Connect with the ``[nats]`` settings, run ``job(nc)``, close; one error line on failure."""
    from edge_runtime.integrations.nats import NatsUnavailable, require_nats

    try:
        require_nats("edgewatch group")
    except NatsUnavailable as exc:
        _fail(str(exc), clierror.EXIT_UNAVAILABLE)
    import nats

    from edge_runtime.integrations.nats.admin import ApiError
    from edge_runtime.integrations.nats.groups import GroupError
    from edge_runtime.integrations.nats.link import connect_options

    async def main() -> T:
        opts = connect_options(cfg, "edgewatch-group")
        opts.update(allow_reconnect=False, max_reconnect_attempts=1)  # (0 would retry for ever)

        async def quiet(exc: Exception) -> None:  # nats-py's default prints a traceback; the failure is one line below
            log.debug("nats: %s", exc)

        opts["error_cb"] = quiet
        try:
            nc = await nats.connect(**opts)
        except Exception as exc:
            err = GroupError(f"cannot connect to NATS {cfg.servers}: {str(exc) or type(exc).__name__}")
            raise clierror.with_code(err, clierror.EXIT_UNAVAILABLE) from None
        try:
            return await job(nc)
        finally:
            await nc.close()

    try:
        return asyncio.run(main())
    except (GroupError, ApiError, ConfigError) as exc:
        return _fail(str(exc), clierror.code_of(exc))
    except Exception as exc:  # nats-py's own errors: no server, timeouts
        return _fail(f"{type(exc).__name__}: {str(exc)[:200]}", clierror.EXIT_UNAVAILABLE)


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--servers", default=None, help="NATS server URLs (default: [nats] servers of the config).")(fn)
    return click.option("--config", "config_file", type=click.Path(),
                        help="The daemon's TOML config: its [nats] section gives servers and credentials.")(fn)


@click.group("group")
def group_command() -> None:
    """Manage a NATS JetStream consumer group of edgewatch workers (docs/NATS.md)."""


@group_command.command("create")
@click.argument("name")
@_common
@click.option("--stream", default="EDGEWATCH", show_default=True, help="The stream to create.")
@click.option("--subject", default="", help="Sensor subjects with '*' for the device (default: the config's "
              "input topic as a subject, sensors.*.data).")
@click.option("--partitions", type=int, default=16, show_default=True, help="Partitions (fixed for the group's life).")
@click.option("--replicas", type=int, default=1, show_default=True, help="Stream, consumer and bucket replicas (3 on a cluster).")
@click.option("--pin-ttl-s", type=float, default=5.0, show_default=True, help="A worker silent this long loses its partitions.")
@click.option("--member-ttl-s", type=float, default=5.0, show_default=True, help="A worker without a heartbeat this long is no member.")
@click.option("--ack-wait-s", type=float, default=10.0, show_default=True, help="Redeliver a message unacknowledged this long.")
@click.option("--max-age-s", type=float, default=86400.0, show_default=True, help="How long the stream keeps sensor messages.")
@click.option("--alert-subject", default="", help="Also keep alerts in a stream <STREAM>_ALERTS (duplicates dropped): "
              "default the config's alert topic as a subject (alerts.*); '-' for none.")
def create(name: str, config_file: str | None, servers: str | None, stream: str, subject: str, partitions: int,
           replicas: int, pin_ttl_s: float, member_ttl_s: float, ack_wait_s: float, max_age_s: float,
           alert_subject: str) -> None:
    """Create group NAME: a stream partitioned by device, a consumer per partition, its KV buckets."""
    from edge_runtime.integrations.nats.admin import create_group
    from edge_runtime.integrations.nats.groups import GroupConfig, GroupError, template_subject

    cfg = _config(config_file, servers)
    subject = subject or template_subject(cfg.topics[0])
    alerts = "" if alert_subject == "-" else alert_subject or template_subject(cfg.alert_topic)
    try:
        group = GroupConfig(name, stream, subject, partitions, replicas, pin_ttl_s, ack_wait_s, member_ttl_s,
                            max_age_s).validate()
    except GroupError as exc:
        _fail(str(exc))
    _run(cfg, lambda nc: create_group(nc, group, alerts))
    click.echo(f"group {name}: stream {stream} on {subject}, {partitions} partitions, R{replicas}"
               + (f", alerts kept in {stream}_ALERTS ({alerts})" if alerts else ""))


@group_command.command("status")
@click.argument("name")
@_common
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def status(name: str, config_file: str | None, servers: str | None, as_json: bool) -> None:
    """Show group NAME: its settings, live workers and each partition's owner, pin and backlog."""
    from edge_runtime.integrations.nats.admin import load_group, members, pinned
    from edge_runtime.integrations.nats.groups import describe

    async def job(nc: Any) -> dict[str, Any]:
        group = await load_group(nc, name)
        live = await members(nc, group)
        pins = await pinned(nc, group)
        doc = describe(group, live, {k: v["pinned"] for k, v in pins.items()})
        for row in doc["partitions"]:
            row.update(pending=pins[row["partition"]]["pending"], ack_pending=pins[row["partition"]]["ack_pending"])
        return doc

    doc = _run(_config(config_file, servers), job)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    g = doc["group"]
    click.echo(f"group {g['name']}: stream {g['stream']} ({g['subject']}), {g['partitions']} partitions, "
               f"R{g['replicas']}, pin ttl {g['pin_ttl_s']:g} s, member ttl {g['member_ttl_s']:g} s")
    click.echo(f"workers: {', '.join(doc['members']) or '(none)'}"
               + (f"; drained: {', '.join(g['drained'])}" if g["drained"] else ""))
    for row in doc["partitions"]:
        click.echo(f"  p{row['partition']:<4} {row['assigned'] or '-':<24} {'pinned' if row['pinned'] else 'free':<7}"
                   f" pending {row['pending']}, unacknowledged {row['ack_pending']}")


def _drain(name: str, worker: str, config_file: str | None, servers: str | None, drained: bool) -> None:
    from edge_runtime.integrations.nats.admin import set_drained

    group = _run(_config(config_file, servers), lambda nc: set_drained(nc, name, worker, drained))
    click.echo(f"group {name}: drained workers: {', '.join(group.drained) or '(none)'}")


@group_command.command("remove")
@click.argument("name")
@click.argument("worker")
@_common
def remove(name: str, worker: str, config_file: str | None, servers: str | None) -> None:
    """Drain WORKER: its partitions move to the others within about a second; it stays a stand-by."""
    _drain(name, worker, config_file, servers, True)


@group_command.command("add")
@click.argument("name")
@click.argument("worker")
@_common
def add(name: str, worker: str, config_file: str | None, servers: str | None) -> None:
    """Take a drained WORKER back: partitions are shared with it again (workers join by themselves)."""
    _drain(name, worker, config_file, servers, False)
