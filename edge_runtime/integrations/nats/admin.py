"""Create, inspect and drain a consumer group on a NATS JetStream server (``edgewatch group ...``).

The JetStream API is called by subject (``$JS.API...``) where nats-py 2.16 has no call for it: consumers
with a pinned-client priority group and the unpin request.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from edge_runtime.integrations.nats.groups import GROUPS_BUCKET, PIN_GROUP, GroupConfig, GroupError

NS = 1_000_000_000


class ApiError(RuntimeError):
    """The JetStream API answered with an error (its code and description)."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"JetStream API error {code}: {description}")
        self.code = code


async def api(nc: Any, subject: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """One JetStream API request; the answer as a dict, :class:`ApiError` when it carries an error."""
    msg = await nc.request(f"$JS.API.{subject}", json.dumps(body or {}).encode(), timeout=timeout)
    doc: dict[str, Any] = json.loads(msg.data or b"{}")
    err = doc.get("error")
    if err:
        raise ApiError(int(err.get("err_code") or err.get("code") or 0), str(err.get("description", "")))
    return doc


def consumer_config(cfg: GroupConfig, partition: int) -> dict[str, Any]:
    """The durable pull consumer of one partition: ack all (a batch is acknowledged by its last message),
    pinned to one client of priority group :data:`PIN_GROUP`, unpinned after ``pin_ttl_s`` of silence."""
    return {
        "durable_name": cfg.consumer(partition),
        "filter_subject": cfg.partition_filter(partition),
        "ack_policy": "all",
        "ack_wait": int(cfg.ack_wait_s * NS),
        "deliver_policy": "all",
        "max_ack_pending": 20_000,
        "max_waiting": 512,
        "priority_policy": "pinned_client",
        "priority_groups": [PIN_GROUP],
        "priority_timeout": int(cfg.pin_ttl_s * NS),
        "num_replicas": cfg.replicas,
    }


async def create_group(nc: Any, cfg: GroupConfig, alert_subject: str = "") -> None:
    """The stream (partitioned by device), one consumer per partition, the KV buckets, and, when
    ``alert_subject`` is given (``alerts.*``), a stream keeping the alerts (duplicates dropped by message id)."""
    from nats.js.api import KeyValueConfig, StorageType

    cfg.validate()
    js = nc.jetstream()
    groups = await js.create_key_value(KeyValueConfig(bucket=GROUPS_BUCKET, replicas=cfg.replicas,
                                                      storage=StorageType.FILE))
    try:
        await groups.get(cfg.name)
        raise GroupError(f"group {cfg.name!r} exists already (edgewatch group status {cfg.name})")
    except GroupError:
        raise
    except Exception as exc:  # KeyNotFoundError: a new group
        if type(exc).__name__ not in ("KeyNotFoundError", "NotFoundError", "KeyDeletedError"):
            raise
    owner = await _stream_owner(groups, cfg.stream)
    if owner is not None:  # its consumers beside the other's: both groups would score every message
        raise GroupError(f"stream {cfg.stream!r} belongs to group {owner!r}: give group {cfg.name!r} its own "
                         f"(--stream EDGEWATCH_{cfg.name.upper()}, on sensor subjects of its own: --subject)")
    await api(nc, f"STREAM.CREATE.{cfg.stream}", {
        "name": cfg.stream, "subjects": [cfg.subject], "subject_transform": cfg.transform(),
        "retention": "limits", "storage": "file", "num_replicas": cfg.replicas,
        "max_age": int(cfg.max_age_s * NS), "discard": "old", "duplicate_window": 120 * NS,
    })
    for k in range(cfg.partitions):
        await api(nc, f"CONSUMER.CREATE.{cfg.stream}.{cfg.consumer(k)}",
                  {"stream_name": cfg.stream, "config": consumer_config(cfg, k)})
    await js.create_key_value(KeyValueConfig(bucket=cfg.members_bucket, replicas=cfg.replicas, ttl=cfg.member_ttl_s,
                                             storage=StorageType.MEMORY if cfg.replicas == 1 else StorageType.FILE))
    await js.create_key_value(KeyValueConfig(bucket=cfg.retained_bucket, replicas=cfg.replicas,
                                             storage=StorageType.FILE))
    if alert_subject:
        await api(nc, f"STREAM.CREATE.{cfg.stream}_ALERTS", {
            "name": f"{cfg.stream}_ALERTS", "subjects": [alert_subject], "retention": "limits", "storage": "file",
            "num_replicas": cfg.replicas, "max_age": int(cfg.max_age_s * NS), "duplicate_window": 120 * NS,
        })
    await groups.put(cfg.name, cfg.to_json())


async def _stream_owner(groups: Any, stream: str) -> str | None:
    """The group (in the ``edgewatch_groups`` bucket ``groups``) whose stream is ``stream``, or None."""
    try:
        names = await groups.keys()
    except Exception as exc:  # an empty bucket: no keys
        if type(exc).__name__ not in ("NoKeysError", "NotFoundError"):
            raise
        return None
    for name in names:
        entry = await groups.get(name)
        try:
            if entry.value and GroupConfig.from_json(entry.value).stream == stream:
                return str(name)
        except (GroupError, ValueError, KeyError, TypeError):
            continue  # (another tool's key)
    return None


async def load_group(nc: Any, name: str) -> GroupConfig:
    """The group's configuration from the ``edgewatch_groups`` bucket (:class:`GroupError` when missing)."""
    js = nc.jetstream()
    try:
        kv = await js.key_value(GROUPS_BUCKET)
        entry = await kv.get(name)
    except Exception as exc:
        if type(exc).__name__ in ("BucketNotFoundError", "KeyNotFoundError", "NotFoundError", "KeyDeletedError"):
            raise GroupError(f"no consumer group {name!r} on this NATS server: create it with "
                             f"`edgewatch group create {name}`") from None
        raise
    return GroupConfig.from_json(entry.value or b"")


async def set_drained(nc: Any, name: str, worker: str, drained: bool) -> GroupConfig:
    """``group remove`` (drained: its partitions go to the others) / ``group add`` (back in)."""
    js = nc.jetstream()
    kv = await js.key_value(GROUPS_BUCKET)
    for _ in range(10):  # compare-and-set: another admin may write at the same time
        entry = await kv.get(name)
        cfg = GroupConfig.from_json(entry.value or b"")
        now = set(cfg.drained)
        now = now | {worker} if drained else now - {worker}
        cfg.drained = sorted(now)
        try:
            await kv.update(name, cfg.to_json(), last=entry.revision)
            return cfg
        except Exception as exc:
            if "wrong last sequence" not in str(exc).lower() and type(exc).__name__ != "KeyWrongLastSequenceError":
                raise
    raise GroupError(f"group {name!r}: the configuration kept changing under us; try again")


async def members(nc: Any, cfg: GroupConfig) -> list[str]:
    """Workers with a live heartbeat (their keys in the members bucket, expired after ``member_ttl_s``)."""
    js = nc.jetstream()
    kv = await js.key_value(cfg.members_bucket)
    try:
        keys = await kv.keys()
    except Exception as exc:
        if type(exc).__name__ == "NoKeysError":
            return []
        raise
    out = []
    for k in keys:
        try:
            entry = await kv.get(k)
        except Exception:
            continue
        doc = json.loads(entry.value or b"{}")
        out.append(str(doc.get("worker", k)))
    return sorted(out)


async def pinned(nc: Any, cfg: GroupConfig) -> dict[int, dict[str, Any]]:
    """Per partition: whether a worker is pinned, messages pending and acknowledgements pending."""
    out: dict[int, dict[str, Any]] = {}
    for k in range(cfg.partitions):
        info = await api(nc, f"CONSUMER.INFO.{cfg.stream}.{cfg.consumer(k)}")
        groups = info.get("priority_groups") or []
        out[k] = {"pinned": bool(groups and groups[0].get("pinned_client_id")),
                  "pending": info.get("num_pending", 0), "ack_pending": info.get("num_ack_pending", 0)}
    return out


async def unpin(nc: Any, cfg: GroupConfig, partition: int) -> None:
    """Release a partition now (its next owner need not wait for the pin to time out)."""
    await api(nc, f"CONSUMER.UNPIN.{cfg.stream}.{cfg.consumer(partition)}", {"group": PIN_GROUP})


async def delete_group(nc: Any, name: str) -> None:
    """Remove group ``name``: its stream (and its consumers), alert stream, buckets and configuration."""
    cfg = await load_group(nc, name)
    js = nc.jetstream()
    for stream in (cfg.stream, f"{cfg.stream}_ALERTS"):
        with contextlib.suppress(ApiError):  # (no alert stream)
            await api(nc, f"STREAM.DELETE.{stream}")
    for bucket in (cfg.members_bucket, cfg.retained_bucket):
        with contextlib.suppress(Exception):
            await js.delete_key_value(bucket)
    kv = await js.key_value(GROUPS_BUCKET)
    await kv.purge(name)
