"""Issue 20 (10): Home Assistant ids are injective: ``pump.1`` and ``pump_1`` are two devices (before: one
entity, and forgetting either removed both)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from edge_runtime.integrations.homeassistant import Discovery, DiscoverySettings, device_config, ha_id
from edge_runtime.pipeline.topics import sanitize_id

S = DiscoverySettings(instance="gw1")
ALLOWED = re.compile(r"[a-zA-Z0-9_-]+")


def ids(device: str) -> set[str]:
    topic, payload = device_config(device, S)
    return {topic, *payload["device"]["identifiers"], *(c["unique_id"] for c in payload["components"].values())}


def test_pump_dot_1_and_pump_underscore_1_do_not_share_anything() -> None:
    devices = ["pump.1", "pump_1", "pump:1", "pump@1"]  # all valid daemon device ids (sanitize_id keeps them)
    assert [sanitize_id(d) for d in devices] == devices
    for i, a in enumerate(devices):
        for b in devices[i + 1:]:
            assert not ids(a) & ids(b), (a, b)


def test_removing_one_leaves_the_other() -> None:
    d = Discovery(S)
    d.on_device("pump.1")
    kept = d.on_device("pump_1")
    gone = d.remove("pump.1")
    assert not {t for t, _ in gone} & {t for t, _ in kept}
    assert d.devices == {"pump_1"}


@given(st.text(max_size=12), st.text(max_size=12))
def test_distinct_ids_stay_distinct(a: str, b: str) -> None:
    assert ALLOWED.fullmatch(ha_id(a))
    if a != b:
        assert ha_id(a) != ha_id(b)


@given(st.text(alphabet="ab._:@-", max_size=8), st.text(alphabet="ab._:@-", max_size=8))
def test_distinct_ids_from_the_daemons_alphabet_stay_distinct(a: str, b: str) -> None:
    if a != b:  # a small alphabet: collisions of a lossy mapping are found at once
        assert ha_id(a) != ha_id(b)
