"""Hostile input, property-based: every decoder and the topic parser never raise, and every
rejection is counted by reason. No network (the MQTT callback is driven with paho's own
message objects); the Ingest path uses a real ONNX model."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge_runtime.config import build_config
from edge_runtime.pipeline import decode as decode_mod
from edge_runtime.pipeline.batcher import WindowBuffer
from edge_runtime.pipeline.decode import REASONS, DecodeError, Decoder, parse_timestamp
from edge_runtime.pipeline.stats import Stats
from edge_runtime.pipeline.topics import TopicRouter, TopicTemplate, format_topic, sanitize_id
from edge_runtime.service.model import load_model
from edge_runtime.service.mqtt import MqttLink
from tests.edge_runtime.onnx_models import CHANNELS4, make_metadata, write_model

C = len(CHANNELS4)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SAFE_ID = re.compile(r"^[A-Za-z0-9_.:@-]+$")

# -- strategies ---------------------------------------------------------------------------
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-(10**400), max_value=10**400),  # beyond float64
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.sampled_from([*CHANNELS4, "ts", "values", "x"]) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=40,
)
timestamps = st.one_of(
    numbers, st.text(max_size=70), st.none(), st.booleans(), st.lists(numbers, max_size=3),
    st.datetimes().map(lambda d: d.isoformat()), st.just("2024-01-01T00:00:00Z"),
)
sample_values = st.lists(st.one_of(numbers, scalars), min_size=0, max_size=C + 2)


@st.composite
def payload_docs(draw) -> object:
    """Documents shaped like (or almost like) every supported payload format."""
    kind = draw(st.sampled_from(["single", "keyed", "batch", "list", "any"]))
    if kind == "single":
        doc = {"values": draw(sample_values)}
        if draw(st.booleans()):
            doc["ts"] = draw(timestamps)
        return doc
    if kind == "keyed":
        doc = {ch: draw(st.one_of(numbers, scalars)) for ch in CHANNELS4 if draw(st.integers(0, 9))}
        if draw(st.booleans()):
            doc["ts"] = draw(timestamps)
        return doc
    if kind == "batch":
        rows = draw(st.lists(sample_values, max_size=5))
        doc = {"values": rows}
        if draw(st.booleans()):
            doc["ts"] = draw(st.one_of(st.lists(timestamps, max_size=6), timestamps))
        return doc
    if kind == "list":
        return draw(st.lists(st.one_of(st.fixed_dictionaries({"values": sample_values}),
                                       st.fixed_dictionaries({"ts": timestamps, "values": sample_values}),
                                       json_values), max_size=5))
    return draw(json_values)


def to_bytes(doc: object) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


csv_text = st.lists(
    st.lists(st.one_of(st.floats().map(repr), st.integers().map(str), st.text(alphabet="0123456789.eE+-naif ", max_size=8)),
             min_size=0, max_size=C + 2).map(",".join),
    max_size=5,
).map("\n".join)


# -- checks -------------------------------------------------------------------------------
def check_decode(decoder: Decoder, payload: bytes) -> str | None:
    """Decode; assert the contract of the result. Returns the rejection reason or None."""
    try:
        s = decoder.decode(payload, 1_700_000_000.0)
    except DecodeError as exc:
        assert exc.reason in REASONS, exc.reason
        assert len(str(exc)) < 400  # a log line, never the whole payload
        return exc.reason
    n = s.ts.shape[0]
    assert 1 <= n <= decoder.max_samples
    assert s.values.shape == (n, C) and s.values.dtype == np.float32
    assert s.ts.dtype == np.float64 and np.isfinite(s.ts).all() and (s.ts >= 0).all()
    assert np.isfinite(s.values).all()
    return None


DECODER = Decoder(CHANNELS4, max_payload_bytes=4096, max_samples=50)


@SETTINGS
@given(st.binary(max_size=600))
def test_decoder_arbitrary_bytes_never_raise(payload: bytes) -> None:
    check_decode(DECODER, payload)


@SETTINGS
@given(payload_docs())
def test_decoder_json_shapes_never_raise(doc: object) -> None:
    check_decode(DECODER, to_bytes(doc))


@SETTINGS
@given(csv_text)
def test_decoder_csv_never_raise(text: str) -> None:
    check_decode(DECODER, text.encode())


@SETTINGS
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=C, max_size=C))
def test_non_finite_and_float32_overflow_rejected(vals: list[float]) -> None:
    reason = check_decode(DECODER, to_bytes({"values": vals}))
    ok32 = all(math.isfinite(v) and abs(v) <= float(np.finfo(np.float32).max) for v in vals)
    # a finite float64 that rounds to float32 max is still finite; everything else is non_finite
    if not all(math.isfinite(v) for v in vals):
        assert reason == "non_finite"
    elif ok32:
        assert reason is None


@SETTINGS
@given(st.text(max_size=20).filter(lambda s: s.strip() != ""), st.sampled_from(["single", "keyed"]))
def test_unicode_and_wrong_types_rejected_by_reason(junk: str, kind: str) -> None:
    doc = {"values": [junk, 1.0, 2.0, 3.0]} if kind == "single" else {**dict.fromkeys(CHANNELS4, 1.0), "Pressure": junk}
    reason = check_decode(DECODER, to_bytes(doc))
    assert reason == "non_numeric"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[" * 100_000, "malformed_json"),  # deep nesting: RecursionError inside json
        (b'{"values": ' + b"[" * 3000 + b"]" * 3000 + b"}", None),  # deep but parseable
        (b"{" + b'"a":{' * 2000 + b"}" * 2001, None),
        (b'{"values": [' + b"1" * 5000 + b', 1, 1, 1]}', None),  # a 5000-digit integer
        (b'{"values": [1e999, 1, 1, 1]}', "non_finite"),
        (b'{"values": [1e39, 1, 1, 1]}', "non_finite"),  # finite float64, beyond float32
        (b'{"values": [-Infinity, 1, 1, 1]}', "non_finite"),
        (b'{"ts": 1e400, "values": [1, 1, 1, 1]}', "bad_timestamp"),
        (b'{"ts": ' + b"9" * 400 + b', "values": [1, 1, 1, 1]}', "bad_timestamp"),
        (b'{"ts": -5, "values": [1, 1, 1, 1]}', "bad_timestamp"),
        (b'{"ts": [1, 2], "values": [[1, 1, 1, 1]]}', "bad_timestamp"),
        (b'{"values": [[1, 1, 1, 1]], "ts": {"a": 1}}', "bad_timestamp"),
        ('{"values": [1, 1, 1, 1], "ts": "\u00e9t\u00e9"}'.encode(), "bad_timestamp"),
        (b"\xff\xfe{}", "bad_encoding"),
        (b'{"values": "\xff"}', "bad_encoding"),
        (b"", "empty"),
        (b"   \n\t ", "empty"),
        (b"[]", "empty"),
        (b"null", "wrong_channels"),  # not JSON-looking: read as a one-field CSV line
        (b'{"values": [' + b"[1,1,1,1]," * 60 + b"[1,1,1,1]]}", "too_many_samples"),
        (b"1,1,1,1\n" * 60, "too_many_samples"),
        (b'"just a string"', "wrong_channels"),
        (b'"a","b","c","d"', "non_numeric"),
    ],
)
def test_hostile_examples(payload: bytes, reason: str | None) -> None:
    """``reason`` None: either outcome is fine, as long as nothing but DecodeError escapes."""
    got = check_decode(Decoder(CHANNELS4, max_payload_bytes=1 << 20, max_samples=50), payload)
    if reason is not None:
        assert got == reason


@SETTINGS
@given(timestamps)
def test_parse_timestamp_only_raises_decode_error(ts: object) -> None:
    try:
        v = parse_timestamp(ts)
    except DecodeError as exc:
        assert exc.reason == "bad_timestamp"
    else:
        assert math.isfinite(v) and v >= 0


def test_max_payload_enforced_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counts calls through json.loads and through every parser the Decoder keeps on itself (its fast
    path's C scanner, stored at construction): none for an oversize payload, and, so that the test
    cannot pass by missing a new parse path, at least one for a small payload."""
    calls: list[str] = []

    def counted(name: str, fn):
        def wrapper(*a, **k):
            calls.append(name)
            return fn(*a, **k)
        return wrapper

    monkeypatch.setattr(decode_mod.json, "loads", counted("json.loads", decode_mod.json.loads))
    dec = Decoder(CHANNELS4, max_payload_bytes=4096)
    parsers = [k for k, v in vars(dec).items() if callable(v)]  # e.g. _scan = JSONDecoder().scan_once
    for name in parsers:
        setattr(dec, name, counted(name, getattr(dec, name)))
    big = b'{"values": [' + b"1," * 3000 + b"1]}"
    with pytest.raises(DecodeError) as exc:
        dec.decode(big, 0.0)
    assert exc.value.reason == "oversize"
    assert calls == [], f"parsed an oversize payload via {calls}"
    big_csv = b"1,2,3,4\n" * 1000
    with pytest.raises(DecodeError) as exc:
        dec.decode(big_csv, 0.0)
    assert exc.value.reason == "oversize"
    assert calls == []
    dec.decode(b'{"values": [1, 2, 3, 4]}', 0.0)  # the same patches do see a payload that is parsed
    assert calls, f"no parse went through json.loads or the Decoder's own parsers {parsers}: the test is blind"


# -- topics and device ids ----------------------------------------------------------------
topic_levels = st.one_of(st.text(max_size=12), st.sampled_from(["+", "#", "", "sensors", "data", "\x00", "a/b"]))
topics = st.lists(topic_levels, min_size=1, max_size=5).map("/".join)


@SETTINGS
@given(topics, st.integers(min_value=8, max_value=80))
@example("sensors/a b/data", 8)  # sanitize_id('a b', 8) once gave 'a-7dbde935' (10 chars)
@example("sensors/a b/data", 16)  # the config minimum of input.max_device_id_len
def test_topic_parsing_and_sanitising(topic: str, max_len: int) -> None:
    router = TopicRouter(["sensors/{device}/data", "site/+/{device}"])
    raw = router.device(topic)
    if raw is None:
        return
    assert raw and "/" not in raw
    dev = sanitize_id(raw, max_len)
    assert SAFE_ID.match(dev), dev
    assert len(dev) <= max_len
    for template in ("alerts/{device}", "alerts/{device}/state", "scores/{device}"):
        out = format_topic(template, device=dev)
        assert out.split("/")[0] in ("alerts", "scores")
        assert len(out.split("/")) == len(template.split("/"))  # never outside its alert tree
        assert "+" not in out and "#" not in out


@SETTINGS
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200), st.text(max_size=200))
def test_sanitize_unicode_and_control_chars(a: str, b: str) -> None:
    sa, sb = sanitize_id(a), sanitize_id(b)
    for s in (sa, sb):
        assert SAFE_ID.match(s) and len(s) <= 64
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in s)
    if a != b and (sa != a or sb != b):  # two different raw ids stay apart (unless hashes collide)
        assert sa != sb or (sa == b or sb == a)


@SETTINGS
@given(st.text(max_size=40), st.integers(min_value=1, max_value=24))
@example("a b", 8)
@example("a b", 9)
@example("a b", 2)
def test_sanitized_id_never_longer_than_max_len(raw: str, max_len: int) -> None:
    dev = sanitize_id(raw, max_len)
    assert SAFE_ID.match(dev) and 1 <= len(dev) <= max_len, (raw, max_len, dev)


def test_sanitize_lone_surrogates() -> None:
    assert SAFE_ID.match(sanitize_id("dev\udcff"))


@SETTINGS
@given(st.text(max_size=30).filter(lambda t: "{" not in t and "}" not in t))
def test_topic_template_without_device_level_refused(template: str) -> None:
    with pytest.raises(ValueError):
        TopicTemplate(template)


# -- the MQTT callback: counted, never raised -----------------------------------------------
@pytest.fixture(scope="module")
def link_and_stats(tmp_path_factory: pytest.TempPathFactory):
    from edge_runtime.service.ingest import Ingest

    path = write_model(tmp_path_factory.mktemp("m") / "m.onnx", make_metadata(window=8, hop=2))
    cfg = build_config(None, {"path": str(path), "instance": "hostile", "max_payload_bytes": 4096,
                              "max_samples_per_message": 50, "log_interval_s": 3600.0})
    model = load_model(path)
    stats = Stats()
    ingest = Ingest(cfg, model, stats, WindowBuffer(64).put)
    link = MqttLink(cfg, ingest.router.filters, ingest.handle, "edgewatch/hostile/status", dict, stats)
    return link, ingest, stats


SAMPLE_REASONS = {"duplicate", "out_of_order", "queue_full"}


def deliver(link: MqttLink, topic: bytes, payload: bytes) -> None:
    msg = paho.MQTTMessage(mid=1, topic=topic)
    msg.payload = payload
    link._handle_message(link.client, None, msg)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(topics.map(str.encode), st.binary(max_size=30), st.just(b"sensors/\xff\xfe/data"),
              st.text(max_size=20).map(lambda d: f"sensors/{d}/data".encode("utf-8", "surrogatepass"))),
    st.one_of(st.binary(max_size=200), payload_docs().map(to_bytes), csv_text.map(str.encode)),
)
def test_mqtt_callback_counts_every_message(link_and_stats, topic: bytes, payload: bytes) -> None:
    """Each message: exactly one message-level drop, or its decoded samples all accounted for."""
    link, ingest, stats = link_and_stats
    before_msgs, before_samples = stats.counts["messages"], stats.counts["samples"]
    before = dict(stats.drops)
    deliver(link, topic, payload)  # must not raise
    assert stats.counts["messages"] == before_msgs + 1
    delta = {k: v - before.get(k, 0) for k, v in stats.drops.items() if v != before.get(k, 0)}
    d_samples = stats.counts["samples"] - before_samples
    assert "internal_error" not in delta
    msg_level = {k: v for k, v in delta.items() if k not in SAMPLE_REASONS}
    if msg_level:
        assert list(msg_level.values()) == [1] and d_samples == 0, (delta, d_samples)
        assert set(msg_level) <= {*REASONS, "unknown_topic", "bad_topic"}
    else:
        n = ingest.decoder.decode(payload, time.time()).ts.shape[0]  # it decoded: re-decode (arrival now) to know n
        assert d_samples + delta.get("duplicate", 0) + delta.get("out_of_order", 0) == n


def test_callback_survives_a_handler_bug(link_and_stats, monkeypatch: pytest.MonkeyPatch) -> None:
    link, ingest, stats = link_and_stats
    before = stats.drops["internal_error"]
    monkeypatch.setattr(link, "_on_message", lambda t, p: 1 / 0)
    deliver(link, b"sensors/x/data", b"1,2,3,4")
    assert stats.drops["internal_error"] == before + 1


def test_logged_device_ids_are_sanitised(link_and_stats, caplog: pytest.LogCaptureFixture) -> None:
    link, ingest, stats = link_and_stats
    ingest.rl._last.clear()
    evil = "evil\n[CRITICAL] fake line\x1b[31m#+"
    deliver(link, f"sensors/{evil}/data".encode(), b"{oops")
    line = [r.getMessage() for r in caplog.records if "malformed_json" in r.getMessage()][-1]
    assert "\n" not in line and "\x1b" not in line and "#" not in line.split("device ")[1].split(":")[0]


def test_sanitised_alert_topics_end_to_end(mosquitto, tmp_path: Path) -> None:
    """A sensor topic level full of spaces, quotes, unicode and length cannot steer the
    daemon's outgoing topics: its scores land on exactly one level under scores/."""
    from tests.edge_runtime.mqtt_helpers import idle, running_daemon
    from tests.reliability.harness import Client, wait_until

    model = write_model(tmp_path / "m.onnx", make_metadata(window=8, hop=4))
    evil = "a b\u00e9\u202e\"';:" + "z" * 100  # Mosquitto itself refuses +, #, NUL and control chars
    with running_daemon(mosquitto.url, model, publish_scores=True) as d:
        col = Client(mosquitto.port, "col", ("#",), persistent=False)
        pub = Client(mosquitto.port, "pub", persistent=False)
        for i in range(8):
            pub.publish(f"sensors/{evil}/data", json.dumps({"ts": 1e9 + i, "values": [0.0, 1.0, 2.0, float(i)]}))
        wait_until(lambda: pub.unacked() == 0, 10, "published")
        pub.close()
        wait_until(lambda: d.stats.counts["samples"] == 8, 10, "samples")
        idle(d)
        wait_until(lambda: bool(col.docs("scores/")), 5, "a score message")
        topics_out = {t for t, _, _, _ in col.messages if not t.startswith("sensors/")}
        col.close()
    score_topics = [t for t in topics_out if t.startswith("scores/")]
    assert len(score_topics) == 1
    level = score_topics[0].split("/", 1)[1]
    assert SAFE_ID.match(level) and len(level) <= 64
    assert all(t.split("/")[0] in ("scores", "alerts", "edgewatch", "health") for t in topics_out)
    assert all(t.split("/")[1] == level for t in topics_out if t.startswith("health/"))  # the same safe id
