"""Payload decoding: every format, timestamps, and every rejection reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.pipeline.decode import REASONS, DecodeError, Decoder

CH = ["a", "b", "c"]
ARRIVAL = 1_800_000_000.0  # after every timestamp used here (a later one is refused as future)


@pytest.fixture
def dec() -> Decoder:
    return Decoder(CH, max_payload_bytes=4096, max_samples=100)


def test_single_sample_json(dec: Decoder) -> None:
    s = dec.decode(b'{"ts": 1700000000.5, "values": [1, 2.5, -3]}', ARRIVAL)
    assert s.stamped
    np.testing.assert_array_equal(s.ts, [1700000000.5])
    assert s.values.dtype == np.float32 and s.values.shape == (1, 3)
    np.testing.assert_array_equal(s.values, [[1, 2.5, -3]])


def test_keyed_by_channel_name_ignores_other_keys(dec: Decoder) -> None:
    s = dec.decode(b'{"ts": "2024-01-01T00:00:00Z", "c": 3, "a": 1, "b": 2, "device": "x"}', ARRIVAL)
    np.testing.assert_array_equal(s.values, [[1, 2, 3]])
    assert s.ts[0] == 1704067200.0


def test_keyed_names_match_as_fit_reads_them_but_for_case_and_blanks() -> None:
    dec = Decoder(["pressure", "Flow Rate", "temp"])
    s = dec.decode(b'{"ts": 1700000000, "Pressure": 1, "flow rate ": 2, "TEMP": 3}', ARRIVAL)
    np.testing.assert_array_equal(s.values, [[1, 2, 3]])
    with pytest.raises(DecodeError) as e:  # two keys that fold alike: neither is taken
        dec.decode(b'{"ts": 1700000000, "PRESSURE": 1, "pressure ": 9, "Flow Rate": 2, "temp": 3}', ARRIVAL)
    assert e.value.reason == "wrong_channels" and "'pressure'" in e.value.detail
    with pytest.raises(DecodeError) as e:  # a misspelt one is named
        dec.decode(b'{"ts": 1700000000, "pressure": 1, "Flow Rate": 2, "temperatur": 3}', ARRIVAL)
    assert e.value.detail == "missing channel 'temp' (unknown key(s): 'temperatur')"
    s = Decoder(["pressure", "temp"], missing=True).decode(b'{"Pressure": 1, "temperatur": 3}', ARRIVAL)
    assert s.values[0, 0] == 1 and np.isnan(s.values[0, 1]) and s.missing == {"absent": 1}
    two = Decoder(["a", "A", "b"], missing=True)  # channels that differ only in case: matched exactly only
    s = two.decode(b'{"a": 1, "B": 3}', ARRIVAL)
    assert s.values[0, 0] == 1 and np.isnan(s.values[0, 1]) and s.values[0, 2] == 3 and s.missing == {"absent": 1}


def test_json_batch_and_list_of_samples_agree(dec: Decoder) -> None:
    vals = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    ts = [1700000000000, 1700000001000, 1700000002000]  # ms
    a = dec.decode(json.dumps({"ts": ts, "values": vals}).encode(), ARRIVAL)
    b = dec.decode(json.dumps([{"ts": t, "values": v} for t, v in zip(ts, vals, strict=True)]).encode(), ARRIVAL)
    c = dec.decode(json.dumps([{"ts": t, "a": v[0], "b": v[1], "c": v[2]} for t, v in zip(ts, vals, strict=True)]).encode(), ARRIVAL)
    for s in (a, b, c):
        assert s.stamped
        np.testing.assert_array_equal(s.ts, [1700000000.0, 1700000001.0, 1700000002.0])
        np.testing.assert_array_equal(s.values, vals)


def test_csv_with_and_without_timestamp(dec: Decoder) -> None:
    s = dec.decode(b"1700000000,1,2,3\n1700000001,4,5,6\n", ARRIVAL)
    assert s.stamped and s.values.shape == (2, 3)
    np.testing.assert_array_equal(s.ts, [1700000000, 1700000001])
    u = dec.decode(b"1,2,3", ARRIVAL)
    assert not u.stamped and u.ts[0] == ARRIVAL
    iso = dec.decode(b"2024-01-01T00:00:01+00:00,1,2,3", ARRIVAL)
    assert iso.ts[0] == 1704067201.0


def test_missing_ts_uses_arrival_time(dec: Decoder) -> None:
    s = dec.decode(b'{"values": [1, 2, 3]}', ARRIVAL)
    assert not s.stamped and s.ts[0] == ARRIVAL
    b = dec.decode(b'{"values": [[1, 2, 3], [1, 2, 3]]}', ARRIVAL)
    assert not b.stamped and b.ts.tolist() == [ARRIVAL, ARRIVAL]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"[" * 2000 + b"]" * 2000, "malformed_json"),
        (b'{"values": [1, 2]}', "wrong_channels"),
        (b'{"values": [[1, 2, 3], [1, 2]]}', "wrong_channels"),
        (b'{"a": 1, "b": 2}', "wrong_channels"),
        (b"1,2", "wrong_channels"),
        (b'{"values": [1, "x", 3]}', "non_numeric"),
        (b'{"values": [1, null, 3]}', "non_numeric"),
        (b'{"values": ["1", "2", "3"]}', "non_numeric"),
        (b"1,abc,3", "non_numeric"),
        (b'{"values": [1, NaN, 3]}', "non_finite"),
        (b'{"values": [1, Infinity, 3]}', "non_finite"),
        (b'{"values": [1, 1e300, 3]}', "non_finite"),
        (b"nan,1,2,3", "bad_timestamp"),
        (b"1,2,nan", "non_finite"),
        (b'{"ts": "yesterday", "values": [1, 2, 3]}', "bad_timestamp"),
        (b'{"ts": -5, "values": [1, 2, 3]}', "bad_timestamp"),
        (b'{"ts": true, "values": [1, 2, 3]}', "bad_timestamp"),
        (b'{"ts": [1, 2], "values": [[1, 2, 3]]}', "bad_timestamp"),
        (b'[{"ts": 1, "values": [1, 2, 3]}, {"values": [1, 2, 3]}]', "bad_timestamp"),
        (b'{"values": 5}', "bad_structure"),
        (b"[1, 2, 3]", "bad_structure"),
        (b"", "empty"),
        (b"   ", "empty"),
        (b"[]", "empty"),
        (b"\xff\xfe,1,2", "bad_encoding"),
        (b'{"values": [1, 2, 3], "x": "\xff"}', "bad_encoding"),
        (b"x" * 5000, "oversize"),
        (json.dumps({"values": [[1, 2, 3]] * 101}).encode(), "too_many_samples"),
    ],
)
def test_rejections_have_a_reason(dec: Decoder, payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        dec.decode(payload, ARRIVAL)
    assert info.value.reason == reason
    assert reason in REASONS


def test_oversize_checked_before_parsing() -> None:
    d = Decoder(CH, max_payload_bytes=20)
    with pytest.raises(DecodeError) as info:
        d.decode(b'{"values": [1, 2, 3]} ', ARRIVAL)  # valid JSON, 22 bytes
    assert info.value.reason == "oversize"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape(payload: bytes) -> None:
    d = Decoder(CH, max_payload_bytes=256)
    try:
        s = d.decode(payload, ARRIVAL)
    except DecodeError as exc:
        assert exc.reason in REASONS
    else:
        assert s.values.shape[1] == 3 and np.isfinite(s.values).all() and s.ts.shape[0] == s.values.shape[0]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(["ts", "values", "a", "b", "c"]), kids, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_never_escapes(doc) -> None:
    d = Decoder(CH)
    try:
        payload = json.dumps(doc).encode()
    except ValueError:
        return
    try:
        s = d.decode(payload, ARRIVAL)
    except DecodeError as exc:
        assert exc.reason in REASONS
    else:
        assert s.values.dtype == np.float32 and np.isfinite(s.values).all()
        assert np.isfinite(s.ts).all() and (s.ts >= 0).all()


FAST_CASES = [
    b'{"ts": 1700000000.5, "values": [1, 2.5, -3]}',
    b'{"ts": 1700000000500, "values": [1, 2, 3]}',  # ms
    b'{"values": [1, 2, 3]}',  # unstamped
    b'  {"ts": "2024-01-01T00:00:00Z", "values": [1, 2, 3]}  \n',
    b'{"ts": -1, "values": [1, 2, 3]}',
    b'{"ts": true, "values": [1, 2, 3]}',
    b'{"ts": 1700000000, "values": [1, 2]}',
    b'{"ts": 1700000000, "values": [1, "x", 3]}',
    b'{"ts": 1700000000, "values": [1, NaN, 3]}',
    b'{"ts": 1700000000, "values": [1, 1e39, 3]}',
    b'{"ts": 1700000000, "values": [1, true, 3]}',
    b'{"ts": 1700000000, "values": [1, 2, 3]} x',  # extra data
    b'{"ts": 1700000000, "values": [1, 2, 3]',  # truncated
    b'{"ts": 1700000000, "values": [[1, 2, 3]]}',
    b'{"ts": 1700000000, "a": 1, "b": 2, "c": 3}',
    b'[{"ts": 1, "values": [1, 2, 3]}]',
    b'{"ts": 1700000000, "values": [1, 2, 3]}'.decode().encode("utf-16-le"),
    b'{"ts": 1700000000, "values": [1, 2, \xff]}',
]


def _outcome(dec: Decoder, payload: bytes) -> tuple[str, list, list, bool] | str:
    try:
        s = dec.decode(payload, ARRIVAL)
    except DecodeError as exc:
        return exc.reason
    return "ok", s.ts.tolist(), s.values.tolist(), s.stamped


@pytest.mark.parametrize("payload", FAST_CASES)
def test_fast_path_decides_exactly_like_the_batch_path(dec: Decoder, payload: bytes) -> None:
    """A single sample (kept as ``Samples.one``, no arrays) is accepted, rejected and stamped exactly as the same
    sample sent as a one-row batch (the array path) is."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not (isinstance(doc, dict) and isinstance(doc.get("values"), list) and doc["values"]
            and not isinstance(doc["values"][0], list)):
        out = _outcome(dec, payload)  # not a single-sample payload: decoded, or refused for a known reason
        assert out in REASONS or out[0] == "ok", out
        return
    batch = {"values": [doc["values"]], **({"ts": [doc["ts"]]} if "ts" in doc else {})}
    assert _outcome(dec, payload) == _outcome(dec, json.dumps(batch).encode())


def test_fast_path_returns_plain_single_samples_without_arrays(dec: Decoder) -> None:
    s = dec.decode(b'{"ts": 1700000000500, "values": [1, 2.5, 3]}', ARRIVAL)
    assert (s.t, s.row, s.stamped, len(s)) == (1700000000.5, [1, 2.5, 3], True, 1)
    u = dec.decode(b'{"values": [1, 2, 3]}', ARRIVAL)
    assert (u.t, u.row, u.stamped) == (ARRIVAL, [1, 2, 3], False)
    np.testing.assert_array_equal(u.values, [[1, 2, 3]])
    assert u.values.dtype == np.float32 and u.ts.tolist() == [ARRIVAL]
    assert dec.decode(b'{"ts": [1, 2], "values": [[1, 2, 3], [4, 5, 6]]}', ARRIVAL).row is None


# -- missing values (sensor health on) ------------------------------------------------------------------
@pytest.fixture
def lenient() -> Decoder:
    return Decoder(CH, max_payload_bytes=4096, max_samples=100, missing=True)


@pytest.mark.parametrize(("payload", "row", "missing"), [
    (b'{"ts": 1700000000, "values": [1, null, 3]}', [1, None, 3], {"null": 1}),
    (b'{"values": [NaN, 2, Infinity]}', [None, 2, None], {"nan": 1, "non_finite": 1}),
    (b'{"values": [1, 2, 1e300]}', [1, 2, None], {"non_finite": 1}),
    (b'{"ts": 1700000000, "a": 1.5, "c": 3}', [1.5, None, 3], {"absent": 1}),
    (b'{"ts": 1700000000, "a": 1.5, "b": null, "c": 3}', [1.5, None, 3], {"null": 1}),
    (b"1700000000,1,,3", [1, None, 3], {"empty_cell": 1}),
    (b"1,nan,3", [1, None, 3], {"nan": 1}),
    (b'{"values": [[1, null, 3], [4, 5, null]]}', None, {"null": 2}),
    (b'[{"a": 1, "b": 2}, {"a": 1, "b": 2, "c": 3}]', None, {"absent": 1}),
])
def test_a_missing_value_keeps_the_rest_of_the_sample(lenient: Decoder, payload: bytes, row: list | None,
                                                       missing: dict) -> None:
    s = lenient.decode(payload, ARRIVAL)
    assert s.missing == missing
    assert int(np.isnan(s.values).sum()) == sum(missing.values())
    if row is not None:
        want = np.array([[np.nan if v is None else v for v in row]], dtype=np.float32)
        np.testing.assert_array_equal(s.values, want)


@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"values": [1, "x", 3]}', "non_numeric"),
    (b'{"values": [1, null]}', "wrong_channels"),
    (b'{"ts": 1700000000, "d": 1}', "wrong_channels"),  # no model channel at all: not a sample of this model
    (b"1,x,3", "non_numeric"),
])
def test_what_is_not_a_missing_value_is_still_refused(lenient: Decoder, payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        lenient.decode(payload, ARRIVAL)
    assert exc.value.reason == reason


def test_a_plain_sample_has_no_missing_values(lenient: Decoder) -> None:
    assert lenient.decode(b'{"values": [1, 2, 3]}', ARRIVAL).missing is None


@pytest.mark.parametrize("missing", [False, True])
def test_true_and_false_are_one_and_zero_alone_or_beside_numbers(missing: bool) -> None:
    """A digital input sends true/false: 1/0 in every payload form, with or without missing-value handling."""
    dec = Decoder(["a", "b", "c"], missing=missing)
    for payload in (b'{"values": [true, false, true]}', b'{"values": [1.5, true, 0]}',
                    b'{"values": [[1.5, true, 0], [2, false, 1]]}', b'{"a": 1.5, "b": true, "c": 0}',
                    b'[{"ts": 1, "a": 1.5, "b": true, "c": 0}]'):
        v = dec.decode(payload, ARRIVAL).values
        assert v[0].tolist() in ([1.0, 0.0, 1.0], [1.5, 1.0, 0.0]), payload
    assert dec.decode(b'{"values": [[1.5, true, 0], [2, false, 1]]}', ARRIVAL).values[1].tolist() == [2, 0, 1]


@pytest.mark.parametrize(("payload", "missing", "detail"), [
    (b'{"a": 1, "b": "high", "c": 2}', False, "channel 'b': 'high' is not a number (a str)"),
    (b'{"values": [[1, 2, 3], [1, 2, {"x": 1}]]}', True, "channel 'c': {'x': 1} is not a number (a dict)"),
    (b'{"values": [1, null, 3]}', False, "channel 'b': null is not a number"),
    (b'{"values": [1, "' + b"x" * 60 + b'", 3]}', False, "channel 'b': 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."),
])
def test_a_value_that_is_not_a_number_is_named_by_its_channel(payload: bytes, missing: bool, detail: str) -> None:
    with pytest.raises(DecodeError) as err:
        Decoder(["a", "b", "c"], missing=missing).decode(payload, ARRIVAL)
    assert err.value.reason == "non_numeric" and err.value.detail.startswith(detail), err.value.detail
