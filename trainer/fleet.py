"""The workstation side of fleet rollout: key pairs, announcing a model, promote/rollback commands.

:func:`publish_model` validates the model as a gateway would (:func:`edge_runtime.service.model.load_model`),
publishes its bytes as retained chunks and then the signed, retained manifest; :func:`send_command` a
signed command. Topics and documents: :mod:`edge_runtime.pipeline.manifest`; docs/FLEET.md.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.pipeline.documents import to_json
from edge_runtime.pipeline.manifest import (
    ACTIONS,
    Topics,
    command_doc,
    manifest_doc,
    parse_manifest,
    signed_bytes,
)
from edge_runtime.pipeline.topics import sanitize_id
from edge_runtime.service.model import load_model
from edge_runtime.service.mqtt import ClientOptions, connect, parse_broker_url

# The deploy kit's Mosquitto refuses packets over 64 KiB (deploy/mosquitto/mosquitto.conf max_packet_size):
# a chunk and its topic must stay below that.
DEFAULT_CHUNK = 48 * 1024


@dataclass(frozen=True)
class Connection:
    """How the workstation reaches the broker."""

    broker: str
    username: str = ""
    password: str | None = None
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


def _client(conn: Connection) -> Any:
    opts = ClientOptions(client_id=f"edgewatch-publish-{uuid.uuid4().hex[:8]}", username=conn.username,
                         password=conn.password, ca_file=conn.ca_file, cert_file=conn.cert_file,
                         key_file=conn.key_file, max_inflight=100, buffered=False)
    return connect(parse_broker_url(conn.broker), opts)


def _send_all(client: Any, messages: list[tuple[str, bytes | str, bool]], timeout: float) -> None:
    infos = [client.publish(t, p, qos=1, retain=r) for t, p, r in messages]
    deadline = time.monotonic() + timeout
    for info in infos:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        if not info.is_published():
            raise OSError(f"the broker did not acknowledge every message within {timeout:.0f} s")


def _signed(doc: dict[str, Any], key_file: Path | None) -> dict[str, Any]:
    if key_file is None:
        return doc
    from edge_runtime.service.signing import key_id, load_private_key, sign

    key = load_private_key(key_file)
    doc = {**doc, "key_id": key_id(key.public_key())} if "key_id" in doc else dict(doc)
    doc["signature"] = sign(key, signed_bytes(doc))
    return doc


def build_manifest(model_path: Path, target: str, key_file: Path | None, chunk_size: int = DEFAULT_CHUNK,
                   now: float | None = None) -> tuple[dict[str, Any], bytes]:
    """The (signed when ``key_file`` is given) manifest of ``model_path`` and the file's bytes; the model is
    loaded and test-run first, so a file a gateway would refuse is refused here."""
    if chunk_size < 256:
        raise ValueError("--chunk-size: at least 256 bytes")
    if not target.strip():
        raise ValueError("--target: give a pattern such as 'site1/line1/*' (or '**' for every gateway)")
    model = load_model(model_path, "cpu")
    data = Path(model_path).read_bytes()
    meta = model.metadata
    doc = manifest_doc(sanitize_id(model.model_id, 64), len(data), hashlib.sha256(data).hexdigest(), chunk_size,
                       meta.channels, meta.window, meta.threshold.value, meta.created, target,
                       time.time() if now is None else now)
    doc = _signed(doc, key_file)
    parse_manifest(doc)  # what a gateway checks first
    return doc, data


def publish_model(conn: Connection, model_path: Path, target: str, key_file: Path | None, root: str = "fleet",
                  chunk_size: int = DEFAULT_CHUNK, timeout: float = 60.0) -> dict[str, Any]:
    """Announce ``model_path`` to the gateways matching ``target``: retained chunks first, then the retained
    manifest (so a gateway that reads the manifest finds every chunk)."""
    doc, data = build_manifest(model_path, target, key_file, chunk_size)
    publish_parts(conn, doc, data, range(doc["chunks"]), root, manifest=True, timeout=timeout)
    return doc


def publish_parts(conn: Connection, doc: dict[str, Any], data: bytes, chunks: Iterable[int], root: str = "fleet",
                  manifest: bool = True, timeout: float = 60.0) -> None:
    """Publish the chunks ``chunks`` of ``data`` (retained) and then, with ``manifest``, the manifest ``doc``."""
    topics, mid, size = Topics(root), doc["model_id"], doc["chunk_size"]
    msgs: list[tuple[str, bytes | str, bool]] = [
        (topics.chunk(mid, i), data[i * size: (i + 1) * size], True) for i in chunks]
    if manifest:
        msgs.append((topics.manifest(mid), to_json(doc), True))
    client = _client(conn)
    try:
        _send_all(client, msgs, timeout)
    finally:
        client.disconnect()
        client.loop_stop()


def send_command(conn: Connection, action: str, model_id: str, target: str, key_file: Path | None,
                 root: str = "fleet", timeout: float = 30.0) -> dict[str, Any]:
    """Publish a (signed) ``promote`` / ``rollback`` command for the gateways matching ``target``."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
    doc = _signed(command_doc(action, model_id, target, time.time(), uuid.uuid4().hex), key_file)
    client = _client(conn)
    try:
        _send_all(client, [(Topics(root).commands, to_json(doc), False)], timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return doc
