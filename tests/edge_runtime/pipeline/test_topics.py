"""Topic templates and device id sanitising (no network)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_runtime.pipeline.topics import (
    TopicError,
    TopicRouter,
    TopicTemplate,
    device_level_problem,
    format_topic,
    sanitize_id,
)


@pytest.mark.parametrize(
    ("template", "filt", "topic", "device"),
    [
        ("sensors/{device}/data", "sensors/+/data", "sensors/pump-1/data", "pump-1"),
        ("sensors/{device}/data", "sensors/+/data", "sensors/pump-1/other", None),
        ("sensors/{device}/data", "sensors/+/data", "sensors/a/b/data", None),
        ("sensors/{device}/data", "sensors/+/data", "sensors//data", None),
        ("{device}", "+", "dev", "dev"),
        ("site/+/{device}", "site/+/+", "site/berlin/valve", "valve"),
    ],
)
def test_template_filter_and_device(template, filt, topic, device) -> None:
    t = TopicTemplate(template)
    assert t.filter == filt
    assert t.device(topic) == device


@pytest.mark.parametrize("bad", ["sensors/data", "a/{device}/{device}", "a/x{device}/b", "a/#/{device}", "a/b+/{device}"])
def test_bad_templates_refused(bad: str) -> None:
    with pytest.raises(TopicError):
        TopicTemplate(bad)


def test_router_first_match() -> None:
    r = TopicRouter(["a/{device}", "b/{device}/x"])
    assert r.filters == ["a/+", "b/+/x"]
    assert r.device("b/d/x") == "d"
    assert r.device("c/d") is None


def test_sanitize_keeps_clean_ids() -> None:
    assert sanitize_id("pump-1.a_b:c@d") == "pump-1.a_b:c@d"


@pytest.mark.parametrize("raw", ["a+b", "a#", "a/b", "a\x00b", "a\nb", "dev ice", "énergie", "x" * 200, ""])
def test_sanitize_removes_dangerous_chars_and_bounds_length(raw: str) -> None:
    out = sanitize_id(raw, max_len=32)
    assert len(out) <= 32 and out
    assert not set(out) & set("+#/\x00\n ")
    assert out.isascii()


def test_sanitize_keeps_distinct_ids_distinct() -> None:
    assert sanitize_id("a+b") != sanitize_id("a#b")
    assert sanitize_id("x" * 100 + "1") != sanitize_id("x" * 100 + "2")


@given(st.text(max_size=300))
def test_sanitize_property(raw: str) -> None:
    out = sanitize_id(raw, 64)
    assert 0 < len(out) <= 64
    assert all(c.isascii() and (c.isalnum() or c in "_.:@-") for c in out)
    assert format_topic("alerts/{device}", device=out).count("/") == 1


def test_format_topic() -> None:
    assert format_topic("edgewatch/{instance}/status", instance="gw1") == "edgewatch/gw1/status"


@pytest.mark.parametrize(("device", "ok"), [("pump-7", True), ("Kessel-Süd", True), ("a b", True), ("a/b", False),
                                             ("x+", False), ("#", False), ("", False), ("  ", False), ("a\0b", False)])
def test_a_device_level_is_one_level_and_no_wildcard(device: str, ok: bool) -> None:
    assert (device_level_problem(device) is None) == ok
    if ok:  # what the daemon would read back from sensors/{device}/data
        assert TopicTemplate("sensors/{device}/data").device(f"sensors/{device}/data") == device
