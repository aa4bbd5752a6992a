"""Rollout documents (pure): target patterns, manifest and command parsing, what a signature covers."""

from __future__ import annotations

import pytest

from edge_runtime.pipeline.manifest import (
    ManifestError,
    Topics,
    command_doc,
    manifest_doc,
    parse_command,
    parse_manifest,
    signed_bytes,
    target_matches,
)
from edge_runtime.pipeline.shadow import within_bound


@pytest.mark.parametrize(("pattern", "target", "hit"), [
    ("site1/line1/*", "site1/line1/gw3", True),
    ("site1/line1/*", "site1/line2/gw3", False),
    ("site1/line1/*", "site1/line1", False),
    ("site1/line1/*", "site1/line1/gw3/x", False),
    ("site1/**", "site1/line1/gw3", True),
    ("site1/**", "site1", True),
    ("site1/**", "site2/line1", False),
    ("**", "anything/at/all", True),
    ("site1/line1/gw-?", "site1/line1/gw-7", True),
    ("site1/*/gw[12]", "site1/l9/gw2", True),
    ("site1/line1/a, site2/**", "site2/x", True),
    ("gw3", "gw3", True),
    ("gw3", "gw33", False),
    ("", "gw3", False),
])
def test_target_patterns(pattern: str, target: str, hit: bool) -> None:
    assert target_matches(pattern, target) is hit


def _doc(**kw):
    doc = manifest_doc("v2", 1000, "a" * 64, 256, ["x", "y"], 16, 0.5, "2026-01-01", "site1/*", 1.7e9)
    doc.update(kw)
    return doc


def test_manifest_round_trip_and_chunk_lengths() -> None:
    m = parse_manifest(_doc(signature="c2ln"))
    assert (m.chunks, m.chunk_length(0), m.chunk_length(3)) == (4, 256, 1000 - 3 * 256)
    assert m.channels == ("x", "y") and m.signature == "c2ln"


@pytest.mark.parametrize(("change", "field"), [
    ({"manifest_version": 2}, "manifest_version"),
    ({"model_id": "a/b"}, "model_id"),
    ({"model_id": "+"}, "model_id"),
    ({"chunks": 5}, "chunks"),
    ({"size": 0}, "size"),
    ({"sha256": "A" * 64}, "sha256"),
    ({"channels": []}, "channels"),
    ({"window": "16"}, "window"),
    ({"size": True}, "size"),
    ({"signature": 3}, "signature"),
])
def test_malformed_manifests_name_the_field(change: dict, field: str) -> None:
    with pytest.raises(ManifestError, match=field):
        parse_manifest(_doc(**change))


def test_signature_covers_everything_but_itself() -> None:
    a = signed_bytes(_doc(signature="x"))
    assert a == signed_bytes(_doc(signature="y"))
    assert a != signed_bytes(_doc(sha256="b" * 64)) and a != signed_bytes(_doc(size=1001, chunks=4))


def test_topics_parse() -> None:
    t = Topics("fleet")
    assert t.parse("fleet/models/v2/manifest") == ("manifest", "v2", -1)
    assert t.parse("fleet/models/v2/chunks/17") == ("chunk", "v2", 17)
    assert t.parse("fleet/commands") == ("command", "", -1)
    for bad in ("fleet/models/v2/chunks/x", "fleet/models/v2", "other/models/v2/manifest", "fleet/models/v2/chunks/1234567"):
        assert t.parse(bad)[0] == ""


def test_commands() -> None:
    c = parse_command({**command_doc("promote", "v2", "site1/*", 1.7e9, "id1"), "signature": "s"})
    assert (c.action, c.model_id, c.command_id) == ("promote", "v2", "id1")
    with pytest.raises(ManifestError, match="action"):
        parse_command(command_doc("delete", "v2", "*", 1.7e9, "id1"))


@pytest.mark.parametrize(("alerts", "baseline", "ok"), [
    (0, 0, True), (3, 0, True), (4, 0, False),  # no baseline: only the extra-alert bound
    (2, 1, True), (7, 4, True), (8, 4, False),  # small counts: + 3 at most decides (8 is also above 1.5 x 4)
    (32, 28, True), (42, 28, True), (43, 28, False),  # large counts: 1.5 x decides (43 is also + 15)
])
def test_promotion_rule(alerts: int, baseline: int, ok: bool) -> None:
    assert within_bound(alerts, baseline, 1.5, 3) is ok


@pytest.mark.parametrize(("alerts", "expected", "ok"), [
    (1, 0.5, True),  # the trial's case: one real fault right after a promotion rolled it back
    (5, 0.5, True), (6, 0.5, False), (20, 12.0, True), (25, 12.0, False),
])
def test_rollback_rule_needs_more_than_2x_and_more_than_5_extra(alerts: int, expected: float, ok: bool) -> None:
    assert within_bound(alerts, expected, 2.0, 5) is ok
