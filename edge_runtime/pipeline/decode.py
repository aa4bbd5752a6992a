"""Payload bytes -> ``(timestamps (n,) float64 epoch s, values (n, C) float32)``. Pure.

Accepted payloads (C = number of model channels):

- JSON single sample ``{"ts": 1700000000.1, "values": [v1, ..., vC]}``
- JSON keyed by channel name ``{"ts": "2024-01-01T00:00:00Z", "Pressure": 1.2, ...}``
- JSON batch ``{"ts": [t1, ..., tn], "values": [[...], ..., [...]]}`` (the fast path)
- JSON list of samples ``[{"ts": t1, "values": [...]}, ...]`` (values lists gathered in one array)
- CSV line(s) ``ts,v1,...,vC`` or ``v1,...,vC`` (no timestamp)

``ts`` is optional (arrival time is used; the result is then *unstamped*), an epoch
number in s, ms, us or ns (told apart by magnitude) or an ISO 8601 string (naive means
UTC): :mod:`edge_runtime.pipeline.timestamps`.

Every rejection raises :class:`DecodeError` with a stable reason code from
:data:`REASONS`; nothing else escapes :meth:`Decoder.decode`.

With ``missing=True`` (sensor health on) a missing value keeps the rest of its sample: ``null``, NaN, an
infinite or beyond-float32 value, an empty CSV cell or a channel absent from a keyed message becomes NaN
(:mod:`edge_runtime.pipeline.health` fills it), counted in :attr:`Samples.missing` by reason
(:data:`MISSING_REASONS`); a message with no value at all is still refused.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_runtime.pipeline import timestamps
from edge_runtime.pipeline.timestamps import MS, NS, US, TimestampError

REASONS = (
    "oversize",  # payload larger than max_payload_bytes (checked before decoding)
    "empty",  # no bytes, or no samples
    "bad_encoding",  # not UTF-8
    "malformed_json",  # not parseable JSON (or nested too deep)
    "bad_structure",  # valid JSON of a shape that is not a supported payload
    "wrong_channels",  # a sample does not have exactly C values / a named channel is missing
    "non_numeric",  # a value is not a number (string, null, object; true/false read as 1/0)
    "non_finite",  # NaN or +-inf (also finite JSON numbers beyond float32 range)
    "bad_timestamp",  # unparseable, non-finite or negative timestamp; ts/values lengths differ
    "future",  # a timestamp more than max_future_s after the arrival time (a wrong clock)
    "too_many_samples",  # more samples in one message than max_samples
)

MISSING_REASONS = ("null", "nan", "non_finite", "absent", "empty_cell")

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]


class DecodeError(ValueError):
    """A payload was rejected; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Samples:
    """Decoded samples: ``ts`` (n,) float64 epoch s, ``values`` (n, C) float32, ``stamped``: ts came from the payload.

    A single plain sample (the common message) is kept as ``t`` (epoch s) and ``row`` (a list of C numbers)
    without building arrays; ``ts`` and ``values`` are then made on first use. ``row`` is None otherwise.
    (This is the one cut across decode -> window: the window store writes ``row`` straight into a ring.)
    """

    __slots__ = ("stamped", "row", "t", "_ts", "_values", "missing")

    def __init__(self, ts: FloatArray, values: F32Array, stamped: bool) -> None:
        self._ts: FloatArray | None = ts
        self._values: F32Array | None = values
        self.stamped = stamped
        self.row: list[float] | None = None
        self.t = 0.0
        self.missing: dict[str, int] | None = None  # values missing (NaN in ``values``) by reason, None: none

    @classmethod
    def one(cls, t: float, row: list[float], stamped: bool) -> Samples:
        """One plain sample at epoch ``t``: ``row`` is C numbers within float32 range."""
        s = cls.__new__(cls)
        s._ts = s._values = None
        s.t, s.row, s.stamped, s.missing = t, row, stamped, None
        return s

    @property
    def ts(self) -> FloatArray:
        if self._ts is None:
            self._ts = np.array([self.t], dtype=np.float64)
        return self._ts

    @property
    def values(self) -> F32Array:
        if self._values is None:
            self._values = np.array((self.row,), dtype=np.float32)
        return self._values

    def __len__(self) -> int:
        return 1 if self.row is not None else int(self.ts.shape[0])

    def __repr__(self) -> str:
        return f"Samples(n={len(self)}, stamped={self.stamped})"


def parse_timestamp(t: Any) -> float:
    """One timestamp -> epoch seconds (:func:`edge_runtime.pipeline.timestamps.parse_timestamp`); raises DecodeError."""
    try:
        return timestamps.parse_timestamp(t)
    except TimestampError as exc:
        raise DecodeError("bad_timestamp", str(exc)) from None


def _as_values(rows: Any, n_channels: int) -> np.ndarray:
    """Nested numeric lists -> (n, C) float32, classifying every failure. ``rows``: list of n lists."""
    try:
        arr = np.array(rows)
    except (ValueError, TypeError):
        raise DecodeError("wrong_channels", "samples have different numbers of values") from None
    except OverflowError:
        raise DecodeError("non_numeric", "integer too large") from None
    if arr.dtype.kind == "O" and arr.ndim == 2 and all(type(v) is int for v in arr.flat if type(v) is not float):
        # integers beyond int64 (10**30): read as the float they are, like the literal 1e30
        try:
            arr = np.array(rows, dtype=np.float64)
        except OverflowError:
            raise DecodeError("non_finite", "a value beyond float32 range") from None
    if arr.dtype.kind not in "fiub":  # b: JSON true/false, 1/0 as beside numbers (a digital input)
        if arr.dtype.kind == "O" and arr.ndim != 2:
            raise DecodeError("wrong_channels", "samples have different numbers of values")
        raise DecodeError("non_numeric", f"values of kind {arr.dtype.kind!r} (need numbers)")
    if arr.ndim != 2 or arr.shape[1] != n_channels:
        got = arr.shape[-1] if arr.ndim >= 1 and arr.size else 0
        raise DecodeError("wrong_channels", f"expected {n_channels} values per sample, got {got}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise DecodeError("non_finite", "NaN, infinity or a value beyond float32 range")
    return out


_F32_MAX = float(np.finfo(np.float32).max)
_INT_EXACT = 2**53


def _is_plain_row(vals: list[Any], n_channels: int) -> bool:
    """True when ``vals`` is C plain numbers within float32 range (checked without numpy temporaries)."""
    if len(vals) != n_channels:
        return False
    for v in vals:
        tv = type(v)
        if tv is float:
            if not -_F32_MAX <= v <= _F32_MAX:  # also False for NaN
                return False
        elif tv is not int or not -_INT_EXACT <= v <= _INT_EXACT:
            return False
    return True


def _merged(counts: list[dict[str, int] | None]) -> dict[str, int] | None:
    """Missing-value counts of several samples summed (None when none had any)."""
    out: dict[str, int] = {}
    for c in counts:
        for k, v in (c or {}).items():
            out[k] = out.get(k, 0) + v
    return out or None


def _lenient_values(rows: list[Any], n_channels: int) -> tuple[F32Array, dict[str, int]]:
    """Like :func:`_as_values`, but a missing value (null, NaN, inf, beyond float32) becomes NaN, counted by
    reason; true/false are 1/0 (as numpy reads them beside numbers); anything else that is not a number (a
    string, an object) still refuses the message."""
    out = np.empty((len(rows), n_channels), dtype=np.float32)
    counts: dict[str, int] = {}
    for i, r in enumerate(rows):
        if type(r) is not list or len(r) != n_channels:
            got = len(r) if isinstance(r, list) else 0
            raise DecodeError("wrong_channels", f"expected {n_channels} values per sample, got {got}")
        for j, v in enumerate(r):
            tv = type(v)
            if v is None:
                why = "null"
            elif tv is float or tv is int or tv is bool:
                fv = float(v) if tv is not int or -_INT_EXACT <= v <= _INT_EXACT else float("inf")
                if -_F32_MAX <= fv <= _F32_MAX:
                    out[i, j] = fv
                    continue
                why = "nan" if fv != fv else "non_finite"
            else:
                raise DecodeError("non_numeric", f"a value of type {tv.__name__} (need numbers)")
            out[i, j] = np.nan
            counts[why] = counts.get(why, 0) + 1
    return out, counts


def _as_timestamps(ts: Any, n: int) -> np.ndarray:
    """A list of n timestamps -> (n,) float64 epoch s."""
    if not isinstance(ts, list) or len(ts) != n:
        raise DecodeError("bad_timestamp", f"'ts' must be a list of {n} timestamps")
    if all(type(t) in (int, float) for t in ts):
        try:
            arr = np.array(ts, dtype=np.float64)
        except OverflowError:
            raise DecodeError("bad_timestamp", "timestamp out of range") from None
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise DecodeError("bad_timestamp", "timestamps must be finite epochs >= 0")
        return timestamps.epoch_seconds(arr)
    return np.array([parse_timestamp(t) for t in ts], dtype=np.float64)


class Decoder:
    """Decodes payloads for a model with ``channels`` (names, length C).

    ``max_payload_bytes`` is enforced before any parsing; ``max_samples`` bounds one message; a message with a
    timestamp more than ``max_future_s`` after its arrival is refused as ``future`` (0: no limit).
    """

    def __init__(
        self, channels: Sequence[str], max_payload_bytes: int = 1 << 20, max_samples: int = 100_000,
        max_future_s: float = 300.0, missing: bool = False,
    ) -> None:
        self.channels = list(channels)
        self.missing = missing  # null/NaN/absent values become NaN instead of refusing the message
        self.max_future_s = max_future_s if max_future_s > 0 else float("inf")
        self.n_channels = len(self.channels)
        self.max_payload_bytes = max_payload_bytes
        self.max_samples = max_samples
        self._channel_set = frozenset(self.channels)
        self._folds = Counter(c.strip().casefold() for c in self.channels)  # channels per name but for case
        # (str, index) -> (object, end index): the C scanner (``scan_once`` is not in the typeshed stubs)
        self._scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

    def decode(self, payload: bytes | bytearray, arrival: float) -> Samples:
        """Decode one MQTT payload; ``arrival`` (epoch s) stamps samples without ``ts``. A plain single sample
        (``{"ts": number, "values": [C plain numbers]}``, ``ts`` optional) comes back as :meth:`Samples.one`."""
        if len(payload) > self.max_payload_bytes:
            raise DecodeError("oversize", f"{len(payload)} bytes > max_payload_bytes {self.max_payload_bytes}")
        body = payload.lstrip()
        if not body:
            raise DecodeError("empty", "empty payload")
        if body[:1] in (b"{", b"["):
            doc = self._scan_json(body)
            if type(doc) is dict:
                vals = doc.get("values")
                if type(vals) is list and _is_plain_row(vals, self.n_channels):
                    t = doc.get("ts")
                    if t is None:
                        return Samples.one(arrival, vals, False)
                    tt = type(t)
                    if (tt is float or tt is int) and 0 <= t < NS:  # also False for NaN and inf
                        t = t * 1e-6 if t >= US else t * 1e-3 if t >= MS else float(t)
                    else:
                        t = parse_timestamp(t)
                    if t > arrival + self.max_future_s:
                        raise self._future(t, arrival)
                    return Samples.one(t, vals, True)
            samples = self._from_json(doc, arrival)
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError("bad_encoding", "payload is not UTF-8") from None
            samples = self._from_csv(text, arrival)
        if samples.stamped:
            latest = float(samples.ts.max())
            if latest > arrival + self.max_future_s:
                raise self._future(latest, arrival)
        return samples

    def _future(self, t: float, arrival: float) -> DecodeError:
        return DecodeError("future", f"timestamp {t:.0f} is {t - arrival:.0f} s after arrival "
                           f"(more than max_future_s {self.max_future_s:g})")

    def _values(self, rows: list[Any]) -> tuple[F32Array, dict[str, int] | None]:
        """Rows of numbers -> (n, C) float32; with :attr:`missing`, missing values are NaN and counted."""
        try:
            try:
                return _as_values(rows, self.n_channels), None
            except DecodeError as exc:
                if not self.missing or exc.reason not in ("non_numeric", "non_finite"):
                    raise
            return _lenient_values(rows, self.n_channels)
        except DecodeError as exc:
            if exc.reason == "non_numeric":
                raise self._non_numeric_named(rows) or exc from None
            raise

    def _non_numeric_named(self, rows: list[Any]) -> DecodeError | None:
        """The first value of ``rows`` that is not a number, named by its channel (the log line says which)."""
        for r in rows:
            for j, v in enumerate(r[: self.n_channels] if isinstance(r, list) else ()):
                if v is None and not self.missing or v is not None and type(v) not in (int, float, bool):
                    shown = "null" if v is None else repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "..."
                    kind = "" if v is None else f" (a {type(v).__name__})"
                    return DecodeError("non_numeric", f"channel {self.channels[j]!r}: {shown} is not a number{kind}")
        return None

    @staticmethod
    def _samples(ts: FloatArray, values: F32Array, stamped: bool, missing: dict[str, int] | None) -> Samples:
        s = Samples(ts, values, stamped)
        s.missing = missing or None
        return s

    # -- JSON -------------------------------------------------------------------------
    def _scan_json(self, body: bytes | bytearray) -> Any:
        """``json.loads(body)`` for a payload starting with ``{`` or ``[``. Valid UTF-8 JSON goes straight to
        the C scanner (skipping ``json.loads``' encoding detection and wrappers, ~1.5 us per small message);
        anything that fails there is re-parsed by ``json.loads`` itself, so errors are exactly as before."""
        try:
            text = body.decode()
            doc, end = self._scan(text, 0)
            if end == len(text) or not text[end:].strip(" \t\n\r"):
                return doc
        except (UnicodeDecodeError, StopIteration, ValueError, RecursionError):
            pass
        try:
            return json.loads(body)
        except UnicodeDecodeError:
            raise DecodeError("bad_encoding", "payload is not UTF-8") from None
        except (ValueError, RecursionError) as exc:
            raise DecodeError("malformed_json", str(exc)[:80]) from None

    def _from_json(self, doc: Any, arrival: float) -> Samples:
        if isinstance(doc, dict):
            if "values" in doc:
                vals = doc["values"]
                if not isinstance(vals, list):
                    raise DecodeError("bad_structure", "'values' must be a list")
                if vals and isinstance(vals[0], list):  # batch
                    return self._batch(vals, doc.get("ts"), arrival)
                return self._single(vals, doc.get("ts"), arrival)
            return self._keyed(doc, arrival)
        if isinstance(doc, list):
            if not doc:
                raise DecodeError("empty", "empty list")
            if len(doc) > self.max_samples:
                raise DecodeError("too_many_samples", f"{len(doc)} > max_samples {self.max_samples}")
            if not all(isinstance(s, dict) for s in doc):
                raise DecodeError("bad_structure", "a list payload must hold sample objects")
            if all("values" in s for s in doc):
                rows = [s["values"] for s in doc]
                if not all(isinstance(r, list) for r in rows):
                    raise DecodeError("bad_structure", "'values' must be a list")
                values, missing = self._values(rows)
            else:
                keyed = [self._keyed_values(s) for s in doc]
                values = np.concatenate([v for v, _ in keyed])
                missing = _merged([m for _, m in keyed])
            stamps = [s.get("ts") for s in doc]
            n_none = sum(t is None for t in stamps)
            if n_none == len(stamps):
                return self._samples(np.full(len(doc), arrival), values, False, missing)
            if n_none:
                raise DecodeError("bad_timestamp", "either every sample in a list has 'ts' or none has")
            return self._samples(_as_timestamps(stamps, len(doc)), values, True, missing)
        raise DecodeError("bad_structure", f"JSON {type(doc).__name__} is not a supported payload")

    def _single(self, vals: list[Any], ts: Any, arrival: float) -> Samples:
        if _is_plain_row(vals, self.n_channels):
            values, missing = np.array((vals,), dtype=np.float32), None
        else:
            values, missing = self._values([vals])
        if ts is None:
            return self._samples(np.array([arrival]), values, False, missing)
        return self._samples(np.array([parse_timestamp(ts)]), values, True, missing)

    def _batch(self, rows: list[Any], ts: Any, arrival: float) -> Samples:
        if len(rows) > self.max_samples:
            raise DecodeError("too_many_samples", f"{len(rows)} > max_samples {self.max_samples}")
        values, missing = self._values(rows)
        if ts is None:
            return self._samples(np.full(len(rows), arrival), values, False, missing)
        return self._samples(_as_timestamps(ts, len(rows)), values, True, missing)

    def _keyed_values(self, doc: dict[str, Any]) -> tuple[F32Array, dict[str, int] | None]:
        absent = [c for c in self.channels if c not in doc]
        if absent:  # names as fit reads them: case and surrounding blanks do not matter
            doc, absent = self._folded(doc, absent)
        if absent and (not self.missing or len(absent) == self.n_channels):
            unknown = [k for k in doc if k != "ts" and k not in self._channel_set]
            named = f" (unknown key(s): {', '.join(repr(k[:40]) for k in unknown[:3])})" if unknown else ""
            raise DecodeError("wrong_channels", f"missing channel {absent[0][:40]!r}{named}")
        row = [doc.get(c) for c in self.channels]
        if not absent and _is_plain_row(row, self.n_channels):
            return np.array((row,), dtype=np.float32), None
        values, missing = self._values([row])
        if absent and missing is not None:  # an absent channel reads as null: count it as absent
            missing["null"] -= len(absent)
            missing["absent"] = len(absent)
            if not missing["null"]:
                del missing["null"]
        return values, missing

    def _folded(self, doc: dict[str, Any], absent: list[str]) -> tuple[dict[str, Any], list[str]]:
        """``doc`` with each absent channel taken from the one key that matches it but for case and surrounding
        blanks (``"Pressure "`` for ``pressure``), and the channels still absent."""
        keys: dict[str, list[str]] = {}
        for k in doc:  # (a key naming a channel exactly is that channel's, never another's)
            if isinstance(k, str) and k != "ts" and k not in self._channel_set:
                keys.setdefault(k.strip().casefold(), []).append(k)
        found = {c: keys[f][0] for c in absent if len(keys.get(f := c.strip().casefold(), ())) == 1
                 and self._folds[f] == 1}  # (channels "a" and "A": neither is matched but for case)
        if not found:
            return doc, absent
        doc = {**{k: v for k, v in doc.items() if k not in found.values()}, **{c: doc[k] for c, k in found.items()}}
        return doc, [c for c in absent if c not in found]

    def _keyed(self, doc: dict[str, Any], arrival: float) -> Samples:
        values, missing = self._keyed_values(doc)
        ts = doc.get("ts")
        if ts is None:
            return self._samples(np.array([arrival]), values, False, missing)
        return self._samples(np.array([parse_timestamp(ts)]), values, True, missing)

    # -- CSV --------------------------------------------------------------------------
    def _from_csv(self, text: str, arrival: float) -> Samples:
        if "_" in text:  # Python's float() reads "1_7e9" as 1.7e10; no number has underscores
            raise DecodeError("non_numeric", "an underscore in a CSV number")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) > self.max_samples:
            raise DecodeError("too_many_samples", f"{len(lines)} > max_samples {self.max_samples}")
        c = self.n_channels
        fields = [ln.split(",") for ln in lines]
        widths = {len(f) for f in fields}
        if len(widths) != 1 or widths.pop() not in (c, c + 1):
            raise DecodeError("wrong_channels", f"CSV lines need {c} values, optionally after a timestamp")
        stamped = len(fields[0]) == c + 1
        empty = 0
        try:
            rows = [[float(v) for v in (f[1:] if stamped else f)] for f in fields]
        except ValueError:
            if not self.missing:
                raise DecodeError("non_numeric", "a CSV value is not a number") from None
            cells = [f[1:] if stamped else f for f in fields]
            empty = sum(not v.strip() for f in cells for v in f)
            try:
                rows = [[float(v) if v.strip() else None for v in f] for f in cells]  # type: ignore[misc]
            except ValueError:
                raise DecodeError("non_numeric", "a CSV value is not a number") from None
        values, missing = self._values(rows)
        if empty and missing is not None:  # an empty cell reads as null
            missing["null"] -= empty
            missing["empty_cell"] = empty
            if not missing["null"]:
                del missing["null"]
        if not stamped:
            return self._samples(np.full(len(rows), arrival), values, False, missing)
        raw = [f[0].strip() for f in fields]
        if all(not r for r in raw):
            return self._samples(np.full(len(rows), arrival), values, False, missing)
        return self._samples(np.array([parse_timestamp(r) for r in raw], dtype=np.float64), values, True, missing)
