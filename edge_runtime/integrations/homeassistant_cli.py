"""``edgewatch homeassistant remove|cleanup``: the explicit deletions of Home Assistant devices.

The daemon never deletes a device from Home Assistant (an idle one is marked unavailable, see
:mod:`edge_runtime.integrations.homeassistant`); these commands clear retained discovery configs on request.
"""

from __future__ import annotations

import threading
import time
import uuid

import click

from edge_runtime.config import Config
from edge_runtime.integrations.homeassistant import (
    DiscoverySettings,
    availability_of,
    availability_topic,
    device_object_id,
    device_topic,
    orphaned_configs,
)
from edge_runtime.pipeline.topics import sanitize_id
from edge_runtime.service.mqtt import MqttConnectError, client_options, connect, parse_broker_url
from edge_runtime.tools.prefix_option import daemon_prefix_option

QUIET_S = 0.5  # retained messages arrive right after the subscription: this long without one ends the read
MAX_READ_S = 5.0


def settings_of(cfg: Config) -> DiscoverySettings:
    return DiscoverySettings(instance=cfg.instance_name, prefix=cfg.homeassistant_prefix, state_topic=cfg.state_topic,
                             alert_topic=cfg.alert_topic, score_topic=cfg.score_topic, status_topic=cfg.status_topic)


def read_retained(client, filters: list[str]) -> dict[str, bytes]:
    """The retained messages on ``filters`` (``topic -> payload``), read until quiet."""
    got: dict[str, bytes] = {}
    last = [time.monotonic()]
    subscribed = threading.Event()

    def on_message(c, u, msg) -> None:
        if msg.retain:
            got[msg.topic] = bytes(msg.payload)
        last[0] = time.monotonic()

    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.subscribe([(f, 1) for f in filters])
    subscribed.wait(MAX_READ_S)
    last[0] = time.monotonic()
    deadline = time.monotonic() + MAX_READ_S
    while time.monotonic() - last[0] < QUIET_S and time.monotonic() < deadline:
        time.sleep(0.05)
    client.unsubscribe(filters)
    return got


def clear(client, topics: list[str], republish: dict[str, bytes] | None = None) -> None:
    """Empty retained payloads on ``topics`` (then ``republish`` retained again), waiting for the broker."""
    infos = [client.publish(t, b"", qos=1, retain=True) for t in topics]
    infos += [client.publish(t, p, qos=1, retain=True) for t, p in (republish or {}).items()]
    for info in infos:
        info.wait_for_publish(10)


@click.group("homeassistant")
def homeassistant_command() -> None:
    """Home Assistant discovery: delete devices explicitly, clear orphaned retained configs."""


def _session(config_file: str | None, broker: str | None, topic_prefix: str | None):
    from edge_runtime.cli import config_from_flags, fail

    cfg = config_from_flags(config_file, {"broker": broker, "prefix": topic_prefix})
    opts = client_options(cfg, f"edgewatch-ha-{uuid.uuid4().hex[:8]}", persistent=False)
    try:
        client = connect(parse_broker_url(cfg.broker), opts)
    except MqttConnectError as exc:
        fail(str(exc), exc.exit_code)  # as `edgewatch alerts` does
    return cfg, client


_config = click.option("--config", "config_file", type=click.Path(),
                       help="The daemon's config (instance, prefix, topics, broker, auth).")
_broker = click.option("--broker", default=None, help="Broker URL; overrides the config's.")


@homeassistant_command.command("remove")
@click.argument("devices", nargs=-1, required=True)
@_config
@_broker
@daemon_prefix_option
def remove_command(devices: tuple[str, ...], config_file: str | None, broker: str | None,
                   topic_prefix: str | None) -> None:
    """Delete DEVICES (their entities, names, areas) from Home Assistant: empty retained configs."""
    cfg, client = _session(config_file, broker, topic_prefix)
    s = settings_of(cfg)
    try:
        topics = []
        for raw in devices:
            dev = sanitize_id(raw, cfg.max_device_id_len)  # as the daemon names it
            topics += [device_topic(s.prefix, device_object_id(dev, s)), availability_topic(dev, s)]
        clear(client, topics)
    finally:
        client.disconnect()
        client.loop_stop()
    click.echo(f"removed {len(devices)} device(s) from Home Assistant discovery")


@homeassistant_command.command("cleanup")
@_config
@_broker
@daemon_prefix_option
@click.option("--all", "everything", is_flag=True, help="Every device of this instance, not only unavailable ones.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def cleanup_command(config_file: str | None, broker: str | None, topic_prefix: str | None, everything: bool,
                    dry_run: bool) -> None:
    """Clear this instance's orphaned retained configs: the earlier per-entity layout, and devices that are
    not online (idle or gone); the device-based configs kept are sent again for Home Assistant."""
    cfg, client = _session(config_file, broker, topic_prefix)
    s = settings_of(cfg)
    try:
        retained = read_retained(client, [f"{s.prefix}/#", f"{s.status}/+"])
        topics = orphaned_configs(retained, s, everything)
        for t in topics:
            click.echo(f"{'would remove' if dry_run else 'removing'} {t}")
        if not dry_run:
            avail = [a for t in topics for a in availability_of(retained[t])]
            keep = {t: p for t, p in retained.items()
                    if t.startswith(f"{s.prefix}/device/") and p and t not in topics}
            clear(client, topics + avail, republish=keep)
    finally:
        client.disconnect()
        client.loop_stop()
    click.echo(f"{len(topics)} orphaned config(s) {'found' if dry_run else 'removed'}")
