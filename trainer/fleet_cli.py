"""``edgewatch-train keygen | publish | promote | rollback``: fleet rollout from the workstation (docs/FLEET.md)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edge_runtime import clierror
from edge_runtime.clierror import InputPath, fail

PROG = "edgewatch-train"


def _errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Known failures (bad key, unusable model, no broker) as one line, exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from edge_runtime.service.model import ModelError
        from edge_runtime.service.mqtt import MqttConnectError

        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError, ModelError, MqttConnectError) as exc:
            message = clierror.os_message(exc) if isinstance(exc, OSError) else str(exc)
            fail(message.splitlines()[0][:300] if message else type(exc).__name__, clierror.code_of(exc),
                 prog=clierror.command_path(PROG))

    return wrapper


def _broker_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--broker", required=True, help="Broker URL: mqtt://host[:1883] or mqtts://host[:8883]."),
        click.option("--username", default="", help="MQTT username (the workstation account of deploy/mosquitto/acl)."),
        click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="File whose first line is the MQTT password."),
        click.option("--ca-file", default="", help="CA certificate (PEM) to verify the broker."),
        click.option("--fleet-topic", default="fleet", show_default=True,
                     help="Root of the rollout topics (the gateways' fleet.fleet_topic)."),
        click.option("--key", "key_file", type=InputPath(dir_okay=False, path_type=Path),
                     help="Ed25519 private key from `keygen` to sign with. Without it the document is unsigned "
                     "and gateways refuse it unless they set fleet.allow_unsigned."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _connection(broker: str, username: str, password_file: Path | None, ca_file: str) -> Any:
    from trainer.fleet import Connection

    password = None
    if password_file is not None:
        lines = password_file.read_text().splitlines()
        password = lines[0] if lines else ""
    return Connection(broker, username, password, ca_file)


@click.command("keygen")
@click.argument("prefix", type=click.Path(dir_okay=False, path_type=Path))
@_errors
def keygen(prefix: Path) -> None:
    """Write an Ed25519 key pair: PREFIX.key (private, mode 0600: keep it on the workstation) and PREFIX.pub
    (give it to every gateway as fleet.public_key_file)."""
    from edge_runtime.service.signing import generate_keypair

    priv, pub = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    kid = generate_keypair(priv, pub)
    click.echo(f"wrote {priv} (private, 0600) and {pub} (public); key id {kid}")


@click.command("publish")
@click.argument("model", type=InputPath(dir_okay=False, path_type=Path))
@click.option("--target", required=True,
              help="Gateways to receive it: a pattern over fleet.target, levels split on '/', shell wildcards per "
              "level, a final '**' for any depth; comma-separated for several ('site1/line1/*', '**').")
@_broker_options
@click.option("--chunk-size", type=int, default=48 * 1024, show_default=True,
              help="Bytes per retained chunk message (keep it under the broker's max_packet_size).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@_errors
def publish(model: Path, target: str, broker: str, username: str, password_file: Path | None, ca_file: str,
            fleet_topic: str, key_file: Path | None, chunk_size: int, as_json: bool) -> None:
    """Announce MODEL to the fleet: retained chunks, then a retained signed manifest; matching gateways
    download, verify and shadow it."""
    from trainer.fleet import publish_model

    doc = publish_model(_connection(broker, username, password_file, ca_file), model, target, key_file,
                        fleet_topic, chunk_size)
    if as_json:
        click.echo(json.dumps(doc))
        return
    click.echo(f"published {doc['model_id']} ({doc['size']} bytes in {doc['chunks']} chunks, sha256 "
               f"{doc['sha256'][:16]}...) for {target!r}, {'signed, key ' + doc['key_id'] if key_file else 'UNSIGNED'}")


def _command(action: str) -> click.Command:
    @(click.argument("model_id") if action == "promote" else click.argument("model_id", required=False, default=""))
    @click.option("--target", required=True, help="Gateways the command is for (the same patterns as publish).")
    @_broker_options
    @_errors
    def command(model_id: str, target: str, broker: str, username: str, password_file: Path | None,
                ca_file: str, fleet_topic: str, key_file: Path | None) -> None:
        from trainer.fleet import send_command

        doc = send_command(_connection(broker, username, password_file, ca_file), action, model_id, target,
                           key_file, fleet_topic)
        click.echo(f"sent {action} {model_id or '(the live model)'} to {target!r} (command {doc['command_id']})")

    helps = {"promote": "Make the staged (shadowed) model MODEL_ID live on the matching gateways.",
             "rollback": "Return the matching gateways to their previous model (MODEL_ID, if given, must be "
                         "the live one)."}
    return click.command(action, help=helps[action])(command)


promote = _command("promote")
rollback = _command("rollback")
COMMANDS = (keygen, publish, promote, rollback)
