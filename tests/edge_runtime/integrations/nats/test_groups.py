"""The group's pure rules: assignment, subjects, keys, configuration (no network), and the partition
function checked against a real nats-server's subject transform."""

from __future__ import annotations

import asyncio

import nats
import pytest

from edge_runtime.integrations.nats.groups import (
    GroupConfig,
    GroupError,
    assign,
    kv_key,
    partition_of,
    stored_to_topic,
    template_subject,
)
from edge_runtime.tools.localnats import NatsServer
from tests.edge_runtime.integrations.nats.natsgroup import create_group


@pytest.mark.parametrize("members,drained,sizes", [
    (["a"], [], {"a": 16}),
    (["b", "a"], [], {"a": 8, "b": 8}),
    (["a", "b", "c"], [], {"a": 6, "b": 5, "c": 5}),
    (["a", "b", "c", "d"], ["d"], {"a": 6, "b": 5, "c": 5, "d": 0}),
    (["a", "b"], ["a", "b"], {"a": 8, "b": 8}),  # all drained: better than nobody
    ([], [], {}),
])
def test_assign_shares_every_partition_once_and_evenly(members: list[str], drained: list[str],
                                                        sizes: dict[str, int]) -> None:
    plan = assign(16, members, drained)
    assert {m: len(ps) for m, ps in plan.items()} == sizes
    owned = sorted(p for ps in plan.values() for p in ps)
    assert owned == (list(range(16)) if members else [])
    assert assign(16, list(reversed(members)), drained) == plan  # every member computes the same plan


def test_subjects_and_keys() -> None:
    assert template_subject("sensors/{device}/data") == "sensors.*.data"
    assert stored_to_topic("p.3.sensors.pump-7.data") == (3, "sensors/pump-7/data")
    assert stored_to_topic("sensors.pump-7.data") == (-1, "")
    assert kv_key("alerts.a:b@c.state") == "alerts.a=3ab=40c.state"
    cfg = GroupConfig("g", "S", "sensors.*.data", partitions=4)
    assert cfg.transform() == {"src": "sensors.*.data", "dest": "p.{{partition(4,1)}}.sensors.{{wildcard(1)}}.data"}
    assert GroupConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("bad", [dict(name="a b"), dict(subject="sensors.>"), dict(subject="a.*.*"),
                                 dict(partitions=0), dict(replicas=2), dict(pin_ttl_s=0.5)])
def test_bad_group_configs_are_refused(bad: dict) -> None:
    args = dict(name="g", stream="S", subject="sensors.*.data") | bad
    with pytest.raises(GroupError):
        GroupConfig(**args).validate()


def test_partition_of_matches_the_servers_transform(nats_server: NatsServer) -> None:
    g = create_group(nats_server.url, "hash", partitions=7)
    devices = [f"dev-{i}" for i in range(40)] + ["a", "pump:7", "x@y"]

    async def go() -> dict[str, int]:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        for d in devices:
            await js.publish(f"sensors.{d}.data", b"{}")
        out = {}
        for seq in range(1, len(devices) + 1):
            k, topic = stored_to_topic((await js.get_msg(g.stream, seq)).subject)
            out[topic.split("/")[1]] = k
        await nc.close()
        return out

    assert asyncio.run(go()) == {d: partition_of(d, 7) for d in devices}


def test_subject_matching_follows_the_servers_wildcards() -> None:
    from edge_runtime.integrations.nats.groups import subject_matches

    assert subject_matches("alerts.*", "alerts.d0") and not subject_matches("alerts.*", "alerts.d0.x")
    assert subject_matches("health.>", "health.d0.alerts") and not subject_matches("health.>", "health")
    assert subject_matches("a.*.c", "a.b.c") and not subject_matches("a.b*", "a.bc")
    assert not subject_matches("edgewatch.alerts.*", "edgewatch.alerts.")  # an empty token: no stream stores it


def test_a_second_group_on_another_groups_stream_is_refused(nats_server: NatsServer) -> None:
    """Its consumers beside the first group's would make both score every message (and share the alert stream)."""
    from edge_runtime.integrations.nats import admin

    first = create_group(nats_server.url, "one", partitions=2)

    async def go(cfg: GroupConfig) -> None:
        nc = await nats.connect(nats_server.url)
        try:
            await admin.create_group(nc, cfg)
        finally:
            await nc.close()

    with pytest.raises(GroupError, match="stream 'EW_one' belongs to group 'one': give group 'two' its own"):
        asyncio.run(go(GroupConfig("two", first.stream, "sensors.*.data", partitions=2)))
    asyncio.run(go(GroupConfig("two", "EW_two", "site2.*.data", partitions=2)))  # its own stream: created
