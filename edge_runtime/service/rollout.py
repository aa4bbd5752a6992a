"""Model rollout on a gateway: download -> verify -> validate -> stage and shadow -> promote / roll back.

The MQTT network thread hands manifests and commands to a small queue and writes the chunks of the one
download in progress to ``staging_dir/<model_id>.part/`` (so a restarted daemon resumes it);
everything else runs on the housekeeping thread in :meth:`Rollout.tick`. Order of checks for an announced
model (docs/FLEET.md): target match, manifest signature (over size and SHA-256), the pin and the live model's
window and channels, the size bound; then the download, each chunk's length, the assembled file's size and
SHA-256, and only then :func:`~edge_runtime.service.model.load_model` (contract, test run) and the pin
again. No byte of a model reaches onnxruntime before its hash and signature are checked.

A staged candidate runs as a shadow: :meth:`observe` (the scoring thread, one extra ``session.run`` per
batch) feeds a :class:`~edge_runtime.pipeline.shadow.ShadowComparison`; it publishes nothing on alert
topics. Every transition is an event on ``fleet.rollout_topic`` and is kept in the status document
(``models``: live, shadow, previous) and in ``staging_dir/state.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.config import Config
from edge_runtime.pipeline.batcher import WindowItem
from edge_runtime.pipeline.documents import Outbound, to_json
from edge_runtime.pipeline.guards import saturate_non_finite
from edge_runtime.pipeline.hysteresis import AlertPolicy
from edge_runtime.pipeline.manifest import (
    Manifest,
    ManifestError,
    Topics,
    parse_command,
    parse_manifest,
    signed_bytes,
    target_matches,
)
from edge_runtime.pipeline.pin import pin_mismatch
from edge_runtime.pipeline.shadow import ShadowComparison, within_bound
from edge_runtime.pipeline.stats import RateLimitedLog, Stats
from edge_runtime.pipeline.topics import format_topic
from edge_runtime.service.model import EdgeModel, ModelError, PinError, check_pin, load_model
from edge_runtime.service.publisher import Publisher

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
MAX_QUEUED = 64  # manifests/commands waiting for the housekeeping tick
MAX_REMEMBERED = 256  # manifest digests and command ids remembered (never handled twice)


@dataclass
class Download:
    manifest: Manifest
    doc: dict[str, Any]
    dir: Path
    have: set[int] = field(default_factory=set)
    resumed: int = 0
    failed: str = ""

    @property
    def complete(self) -> bool:
        return len(self.have) == self.manifest.chunks


def _entry(model: EdgeModel) -> dict[str, Any]:
    return {"model_id": model.model_id, "sha256": model.sha256, "file": str(model.path)}


def read_state(staging_dir: str | Path) -> dict[str, Any]:
    """``staging_dir/state.json`` ({} when absent or unreadable: a warning)."""
    path = Path(staging_dir) / STATE_FILE
    try:
        doc = json.loads(path.read_text())
        if isinstance(doc, dict):
            return doc
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("rollout state %s unreadable (%s): starting afresh", path, exc)
    return {}


def shape_mismatch(channels: list[str], window: int, live_channels: list[str], live_window: int) -> str:
    """Why a model of ``channels`` and ``window`` cannot be shadowed beside the live one ("" when it can): only
    what differs, and how to fit one that can."""
    parts = []
    if window != live_window:
        parts.append(f"its window W={window} is not the live model's W={live_window}")
    if channels != live_channels:
        if sorted(channels) == sorted(live_channels):
            parts.append("its channels are the live model's in another order")
        else:
            gone, new = sorted(set(live_channels) - set(channels)), sorted(set(channels) - set(live_channels))
            parts.append("its channels differ from the live model's"
                         + (f" (missing {', '.join(map(repr, gone[:4]))})" if gone else "")
                         + (f" (not in it: {', '.join(map(repr, new[:4]))})" if new else ""))
    if not parts:
        return ""
    return (f"{' and '.join(parts)}: it cannot be shadowed on the same windows (fit it with "
            "`edgewatch-train fit --like LIVE.onnx`, which takes the live model's window, channels and units)")


def _load_known(cfg: Config, entry: dict[str, Any]) -> EdgeModel:
    """A model file this gateway verified before; refused unless its SHA-256 is still the verified one."""
    m = load_model(str(entry.get("file", "")), cfg.provider, cfg.intra_op_threads, cfg.max_model_bytes)
    if m.sha256 != entry.get("sha256"):
        raise ModelError(f"{m.path}: SHA-256 changed since it was verified")
    check_pin(m, cfg.pin)
    return m


def start_model(cfg: Config, configured: EdgeModel) -> EdgeModel:
    """The model to serve at start: the one promoted before a restart (its file's SHA-256 re-checked), else
    ``configured``."""
    live = read_state(cfg.staging_dir).get("live")
    if not isinstance(live, dict) or live.get("sha256") in (None, configured.sha256):
        return configured
    try:
        model = _load_known(cfg, live)
    except (ModelError, OSError) as exc:
        log.warning("rollout: the promoted model %s cannot be used (%s): serving %s", live.get("model_id"), exc,
                    configured.model_id)
        return configured
    log.info("rollout: serving %s, promoted before the restart (%s)", model.model_id, model.path)
    return model


class Rollout:
    """The gateway side of fleet rollout. ``swap(model, why)`` serves a model (the housekeeping's);
    ``status()`` is the retained status message, republished after each transition."""

    def __init__(self, cfg: Config, scorer: Any, publisher: Publisher, stats: Stats, instance: str,
                 swap: Callable[[EdgeModel, str], None], status: Callable[[], Outbound],
                 subscribe: Callable[[str], None], unsubscribe: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.scorer = scorer
        self.publisher = publisher
        self.stats = stats
        self.instance = instance
        self.target = cfg.fleet_target
        self.topics = Topics(cfg.fleet_topic)
        self._swap, self._status, self._subscribe, self._unsubscribe = swap, status, subscribe, unsubscribe
        self.rollout_topic = format_topic(cfg.rollout_topic, instance=instance)
        self.shadow_topic = format_topic(cfg.shadow_topic, instance=instance)
        self.dir = Path(cfg.staging_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._public_key = None
        if cfg.public_key_file:
            from edge_runtime.service.signing import load_public_key

            self._public_key = load_public_key(cfg.public_key_file)  # SigningError: the daemon refuses to start
        self._rl = RateLimitedLog(log, cfg.log_interval_s)
        self._lock = threading.Lock()  # the download (network thread) and the comparison (scoring thread)
        self._inbox: deque[tuple[str, bytes]] = deque()
        self.download: Download | None = None
        self.candidate: EdgeModel | None = None
        self.comparison: ShadowComparison | None = None
        self.shadow_started = 0.0
        self.shadow_done = False  # the shadow period ended; the candidate waits for a promote command
        self.previous: EdgeModel | None = None
        self.watch: dict[str, float] | None = None
        self._next_comparison = 0.0
        self.state = read_state(self.dir)

    # -- persistent state ---------------------------------------------------------------
    def _save_state(self) -> None:
        st = self.state
        st["live"] = _entry(self.scorer.model)
        st["previous"] = _entry(self.previous) if self.previous is not None else st.get("previous")
        st["shadow"] = ({**_entry(self.candidate), "digest": (st.get("shadow") or {}).get("digest", "")}
                        if self.candidate is not None else None)
        for key in ("done", "commands"):
            st[key] = list(st.get(key, []))[-MAX_REMEMBERED:]
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(st, indent=1))
        tmp.replace(self.dir / STATE_FILE)

    def _remember(self, key: str, value: str) -> None:
        self.state.setdefault(key, []).append(value)

    def resume(self, configured: EdgeModel) -> None:
        """After a restart: remember the configured model as the previous one when a promoted model serves
        (see :func:`start_model`), and shadow a staged candidate again from zero."""
        prev, shadow = self.state.get("previous"), self.state.get("shadow")
        if (isinstance(prev, dict) and prev.get("sha256") == configured.sha256
                and configured is not self.scorer.model):
            self.previous = configured
        if isinstance(shadow, dict) and shadow.get("file"):
            try:
                self._stage(_load_known(self.cfg, shadow), str(shadow.get("digest", "")), restarted=True)
            except (ModelError, OSError) as exc:
                log.warning("rollout: staged model %s dropped at restart: %s", shadow.get("model_id"), exc)
                self.state["shadow"] = None

    # -- network thread -------------------------------------------------------------------
    def on_message(self, topic: str, payload: bytes | bytearray) -> None:
        """A message on a fleet topic (paho's network thread): chunks are written now, the rest queued."""
        kind, model_id, index = self.topics.parse(topic)
        if kind == "chunk":
            self._on_chunk(model_id, index, bytes(payload))
        elif kind in ("manifest", "command") and payload:
            if len(self._inbox) >= MAX_QUEUED:
                self.stats.drop("rollout_queue_full")
                return
            self._inbox.append((kind, bytes(payload)))

    def _on_chunk(self, model_id: str, index: int, payload: bytes) -> None:
        with self._lock:
            dl = self.download
            if dl is None or dl.manifest.model_id != model_id or dl.failed or index in dl.have:
                return
            m = dl.manifest
            if index >= m.chunks:
                dl.failed = f"chunk {index} beyond the manifest's {m.chunks}"
                return
            if len(payload) != m.chunk_length(index):
                dl.failed = f"chunk {index} has {len(payload)} bytes, the manifest says {m.chunk_length(index)}"
                return
            part = dl.dir / f"{index:06d}"
            try:
                tmp = part.with_suffix(".tmp")
                tmp.write_bytes(payload)
                tmp.replace(part)
            except OSError as exc:
                dl.failed = f"cannot write {part}: {exc.strerror or exc}"
                return
            dl.have.add(index)

    # -- scoring thread -----------------------------------------------------------------------
    def observe(self, items: list[WindowItem], batch: np.ndarray, live_score: np.ndarray) -> None:
        """The shadow run: score ``batch`` (B, W, C) with the candidate and compare with ``live_score`` (B,)."""
        cand, comp = self.candidate, self.comparison
        if cand is None or comp is None or self.shadow_done:
            return
        try:
            score, ce = cand.run(batch)
            score, _, _ = saturate_non_finite(score, ce)
            with self._lock:
                comp.update([it.device for it in items], [it.n for it in items], live_score, score)
            self.stats.incr("shadow_windows", int(batch.shape[0]))
        except Exception as exc:  # the candidate must never break live scoring
            self.stats.drop("shadow_error", int(batch.shape[0]))
            self._rl.log(logging.ERROR, "shadow_error", "shadow model %s failed on a batch: %s: %s",
                         cand.model_id, type(exc).__name__, str(exc)[:200])

    # -- housekeeping thread ------------------------------------------------------------
    def tick(self, now: float) -> None:
        while self._inbox:
            kind, payload = self._inbox.popleft()
            try:
                doc = json.loads(payload)
            except (ValueError, RecursionError):
                self._bad(kind, "not JSON")
                continue
            if kind == "manifest":
                self._on_manifest(doc)
            else:
                self._on_command(doc, time.time())
        dl = self.download
        if dl is not None and (dl.failed or dl.complete):
            self._finish(dl)
        if self.candidate is not None and not self.shadow_done:
            self._check_shadow(now)
        if self.watch is not None:
            self._check_watch(now)

    def _bad(self, kind: str, why: str) -> None:
        self.stats.drop(f"bad_{kind}")
        self._rl.log(logging.WARNING, f"bad_{kind}", "fleet %s refused: %s", kind, why)

    def _signed(self, doc: dict[str, Any], signature: str) -> str:
        """'' when ``doc`` is acceptably signed; else why not."""
        if self.cfg.allow_unsigned:
            return ""
        if not signature:
            return "unsigned (fleet.allow_unsigned is off)"
        from edge_runtime.service.signing import verify

        if self._public_key is None or not verify(self._public_key, signed_bytes(doc), signature):
            return "bad signature (not made with the key of fleet.public_key_file)"
        return ""

    def _on_manifest(self, doc: Any) -> None:
        try:
            m = parse_manifest(doc)
        except ManifestError as exc:
            self._bad("manifest", str(exc))
            return
        if not target_matches(m.target, self.target):
            log.debug("rollout: %s is for %r, not %r", m.model_id, m.target, self.target)
            return
        live = self.scorer.model
        if m.digest in self.state.get("done", []) or m.sha256 == live.sha256:
            return
        if self.candidate is not None and m.sha256 == self.candidate.sha256:
            return
        if self.download is not None and self.download.manifest.digest == m.digest:
            return
        why = self._signed(doc, m.signature)
        if not why:
            why = pin_mismatch(self.cfg.pin, m.channels, m.window, "")
            if why:
                self.stats.incr("pin_refused")
        if not why:
            why = shape_mismatch(list(m.channels), m.window, live.metadata.channels, live.window)
        if not why and m.size > self.cfg.max_model_bytes:
            why = f"{m.size} bytes, more than model.max_model_bytes {self.cfg.max_model_bytes}"
        if why:
            self._refuse(m, why)
            return
        if self.download is not None:
            self._cancel_download("superseded by " + m.model_id)
        self._start_download(m, doc)

    def _start_download(self, m: Manifest, doc: dict[str, Any]) -> None:
        part = self.dir / f"{m.model_id}.part"
        dl = Download(m, doc, part)
        try:
            old = json.loads((part / "manifest.json").read_text())
            same = parse_manifest(old).digest == m.digest
        except (OSError, ValueError):
            same = False
        if same:  # a restart during this download: keep the chunks already written whole
            for i in range(m.chunks):
                f = part / f"{i:06d}"
                if f.is_file() and f.stat().st_size == m.chunk_length(i):
                    dl.have.add(i)
            dl.resumed = len(dl.have)
        else:
            shutil.rmtree(part, ignore_errors=True)
            part.mkdir(parents=True)
            (part / "manifest.json").write_text(json.dumps(doc))
        with self._lock:
            self.download = dl
        self._subscribe(self.topics.chunks(m.model_id))
        self.event("download_started", m.model_id, chunks=m.chunks, size=m.size, resumed_chunks=dl.resumed)

    def _cancel_download(self, why: str) -> None:
        dl = self.download
        with self._lock:
            self.download = None
        if dl is not None:
            self._unsubscribe(self.topics.chunks(dl.manifest.model_id))
            shutil.rmtree(dl.dir, ignore_errors=True)
            self.event("download_cancelled", dl.manifest.model_id, reason=why)

    def _finish(self, dl: Download) -> None:
        m = dl.manifest
        with self._lock:
            self.download = None
        self._unsubscribe(self.topics.chunks(m.model_id))
        if dl.failed:
            shutil.rmtree(dl.dir, ignore_errors=True)
            self._refuse(m, dl.failed)
            return
        final = self.dir / f"{m.model_id}-{m.sha256[:12]}.onnx"
        tmp = final.with_suffix(".tmp")
        h, size = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as out:
                for i in range(m.chunks):
                    data = (dl.dir / f"{i:06d}").read_bytes()
                    h.update(data)
                    size += len(data)
                    out.write(data)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            shutil.rmtree(dl.dir, ignore_errors=True)
            self._refuse(m, f"cannot assemble the download: {exc.strerror or exc}")
            return
        shutil.rmtree(dl.dir, ignore_errors=True)
        if size != m.size or h.hexdigest() != m.sha256:
            tmp.unlink(missing_ok=True)
            self._refuse(m, f"downloaded {size} bytes with SHA-256 {h.hexdigest()[:16]}..., the signed manifest "
                         f"says {m.size} bytes, {m.sha256[:16]}... (a tampered or corrupt chunk)")
            return
        tmp.replace(final)
        self.event("downloaded", m.model_id, size=size, sha256=m.sha256)
        try:  # hash and signature checked: now the contract, a test run and the pin
            model = load_model(final, self.cfg.provider, self.cfg.intra_op_threads, self.cfg.max_model_bytes)
            check_pin(model, self.cfg.pin)
            if model.sha256 != m.sha256 or model.metadata.channels != list(m.channels) or model.window != m.window:
                raise ModelError("the file's metadata (channels, window) differ from its manifest's")
        except ModelError as exc:
            final.unlink(missing_ok=True)
            if isinstance(exc, PinError):
                self.stats.incr("pin_refused")
            self._refuse(m, str(exc))
            return
        self._stage(model, m.digest)

    def _refuse(self, m: Manifest, why: str) -> None:
        self.stats.incr("rollout_refused")
        log.error("rollout of %s refused, keeping %s: %s", m.model_id, self.scorer.model.model_id, why)
        self._remember("done", m.digest)
        self.event("refused", m.model_id, reason=why[:300])

    def _stage(self, model: EdgeModel, digest: str, restarted: bool = False) -> None:
        old = self.candidate
        self.scorer.shadow = None
        self.state["shadow"] = {"digest": digest}
        if digest:
            self._remember("done", digest)
        live_thr = self.cfg.threshold or self.scorer.model.threshold
        cand_thr = self.cfg.threshold or model.threshold
        cfg = self.cfg
        policy = AlertPolicy(cfg.raise_after, cfg.clear_after, cfg.clear_ratio, cfg.top_channels)
        with self._lock:
            self.comparison = ShadowComparison(policy, live_thr, cand_thr)
        self.shadow_started, self.shadow_done = time.monotonic(), False
        self._next_comparison = self.shadow_started + self._comparison_every()
        self.candidate = model
        self.scorer.shadow = self.observe
        log.info("rollout: %s staged%s, shadowing beside %s", model.model_id, " again after a restart" if
                 restarted else "", self.scorer.model.model_id)
        if old is not None:  # its file goes (the new candidate is in place: kept)
            self.event("dropped", old.model_id, reason="superseded by " + model.model_id)
        self.event("staged", model.model_id, shadow_windows=cfg.shadow_windows, shadow_s=cfg.shadow_s)

    def _comparison_every(self) -> float:
        return self.cfg.stats_interval_s if self.cfg.stats_interval_s > 0 else 10.0

    def _check_shadow(self, now: float) -> None:
        comp = self.comparison
        assert comp is not None
        cfg = self.cfg
        by_windows = cfg.shadow_windows and comp.windows >= cfg.shadow_windows
        by_time = cfg.shadow_s and now - self.shadow_started >= cfg.shadow_s
        if by_windows or by_time:
            self._end_shadow("windows" if by_windows else "time")
        elif now >= self._next_comparison:
            self._next_comparison = now + self._comparison_every()
            self._publish_comparison(final=False)

    def comparison_doc(self, final: bool) -> dict[str, Any]:
        with self._lock:
            summary = self.comparison.summary() if self.comparison is not None else {}
        cand = self.candidate
        return {"instance": self.instance, "model_id": cand.model_id if cand else None,
                "live_model_id": self.scorer.model.model_id, "final": final,
                "shadow_s": round(time.monotonic() - self.shadow_started, 3), "time": time.time(), **summary}

    def _publish_comparison(self, final: bool) -> dict[str, Any]:
        doc = self.comparison_doc(final)
        self.publisher.send([Outbound(self.shadow_topic, to_json(doc), qos=1, retain=True, reassert=False)])
        return doc

    def _end_shadow(self, why: str) -> None:
        self.shadow_done = True
        self.scorer.shadow = None  # no more extra session.run
        doc = self._publish_comparison(final=True)
        cand = self.candidate
        assert cand is not None
        self.event("shadow_ended", cand.model_id, reason=f"{why} limit reached",
                   windows_compared=doc["windows_compared"], live_alerts=doc["live"]["alerts"],
                   candidate_alerts=doc["candidate"]["alerts"])
        if not self.cfg.auto_promote:
            return
        live_a, cand_a = doc["live"]["alerts"], doc["candidate"]["alerts"]
        rule = (f"candidate alerts {cand_a} vs live {live_a} on {doc['windows_compared']} windows "
                f"(refused above both {self.cfg.promote_max_ratio:g}x and +{self.cfg.promote_max_extra_alerts})")
        if doc["windows_compared"] and within_bound(cand_a, live_a, self.cfg.promote_max_ratio,
                                                    self.cfg.promote_max_extra_alerts):
            self.promote(f"automatic: {rule}")
        else:
            self.candidate, self.comparison, self.shadow_done = None, None, False
            self.state["shadow"] = None
            self.event("rejected", cand.model_id, reason=f"automatic promotion refused: {rule}")

    def promote(self, why: str) -> bool:
        cand = self.candidate
        if cand is None:
            return False
        final = self.shadow_done
        doc = self.comparison_doc(final=True) if self.comparison is not None else {}
        if not final and doc:
            self._publish_comparison(final=True)
        self.scorer.shadow = None
        old = self.scorer.model
        self.candidate, self.comparison, self.shadow_done = None, None, False
        self._swap(cand, f"promoted ({why})")
        self.previous = old
        self.stats.incr("promotions")
        compared = doc.get("windows_compared") or 0
        self.watch = {"since": time.monotonic(), "alerts": self.stats.counts["alerts_raised"],
                      "windows": self.stats.counts["windows_scored"],
                      "baseline_rate": (doc["live"]["alerts"] / compared) if compared else -1.0}
        self.event("promoted", cand.model_id, reason=why, previous=old.model_id)
        return True

    def rollback(self, why: str) -> bool:
        prev = self.previous
        if prev is None:
            entry = self.state.get("previous")
            if not isinstance(entry, dict):
                self.event("rollback_refused", self.scorer.model.model_id, reason="no previous model")
                return False
            try:
                prev = _load_known(self.cfg, entry)
            except (ModelError, OSError) as exc:
                self.event("rollback_refused", self.scorer.model.model_id, reason=str(exc)[:300])
                return False
        old = self.scorer.model
        self._swap(prev, f"rolled back ({why})")
        self.previous, self.watch = old, None
        self.stats.incr("rollbacks")
        self.event("rolled_back", prev.model_id, reason=why, previous=old.model_id)
        return True

    def _check_watch(self, now: float) -> None:
        w = self.watch
        assert w is not None
        if not self.cfg.watch_s or w["baseline_rate"] < 0:
            self.watch = None
            return
        alerts = self.stats.counts["alerts_raised"] - w["alerts"]
        windows = self.stats.counts["windows_scored"] - w["windows"]
        expected = w["baseline_rate"] * windows
        if not within_bound(alerts, expected, self.cfg.rollback_max_ratio, self.cfg.rollback_max_extra_alerts):
            self.rollback(f"automatic: {alerts} alerts on {windows} windows since the promotion, the previous model "
                          f"raised {expected:.1f} at its shadow rate (above both {self.cfg.rollback_max_ratio:g}x and "
                          f"+{self.cfg.rollback_max_extra_alerts})")
        elif now - w["since"] >= self.cfg.watch_s:
            self.watch = None
            self.event("watch_passed", self.scorer.model.model_id, alerts=alerts, windows=windows)

    def _on_command(self, doc: Any, now: float) -> None:
        try:
            c = parse_command(doc)
        except ManifestError as exc:
            self._bad("command", str(exc))
            return
        if not target_matches(c.target, self.target) or c.command_id in self.state.get("commands", []):
            return
        self._remember("commands", c.command_id)
        why = self._signed(doc, c.signature)
        if not why and now - c.time > self.cfg.max_command_age_s:
            why = f"stamped {now - c.time:.0f} s ago, more than fleet.max_command_age_s"
        if not why and c.action == "promote" and (self.candidate is None or c.model_id != self.candidate.model_id):
            why = f"{c.model_id} is not the staged model ({self.candidate.model_id if self.candidate else 'none'})"
        if not why and c.action == "rollback" and c.model_id and c.model_id != self.scorer.model.model_id:
            why = f"{c.model_id} is not the live model ({self.scorer.model.model_id})"
        if why:
            self.stats.incr("rollout_refused")
            log.error("rollout command %s %s refused: %s", c.action, c.model_id, why)
            self.event("command_refused", c.model_id, reason=f"{c.action}: {why}")
            return
        if c.action == "promote":
            self.promote(f"command {c.command_id}")
        else:
            self.rollback(f"command {c.command_id}")

    # -- documents ----------------------------------------------------------------------
    def models(self) -> dict[str, Any]:
        """``live``, ``shadow`` and ``previous`` model ids (the status document's ``models``)."""
        prev = self.previous.model_id if self.previous is not None else (self.state.get("previous") or {}).get(
            "model_id")
        return {"live": self.scorer.model.model_id,
                "shadow": self.candidate.model_id if self.candidate is not None else None, "previous": prev,
                "phase": ("downloading" if self.download is not None else "shadow" if self.candidate is not None
                          and not self.shadow_done else "staged" if self.candidate is not None else
                          "watching" if self.watch is not None else "idle")}

    def _prune(self) -> None:
        """Delete staged model files that are neither live, previous nor the candidate (bounded disk use)."""
        keep = {m.path.resolve() for m in (self.scorer.model, self.previous, self.candidate) if m is not None}
        prev = self.state.get("previous")
        if isinstance(prev, dict) and prev.get("file"):
            keep.add(Path(prev["file"]).resolve())
        for f in self.dir.glob("*.onnx"):
            if f.resolve() not in keep:
                f.unlink(missing_ok=True)

    def event(self, kind: str, model_id: str, **fields: Any) -> None:
        """Publish one transition (``fleet.rollout_topic``), persist the state and republish the status."""
        doc = {"instance": self.instance, "event": kind, "model_id": model_id, "time": time.time(), **fields,
               "models": self.models()}
        log.info("rollout: %s %s%s", kind, model_id, f" ({fields['reason']})" if "reason" in fields else "")
        try:  # state and files first: when the event arrives, a dropped model's file is gone
            self._save_state()
            if kind in ("dropped", "rejected", "promoted", "rolled_back"):
                self._prune()
        except OSError as exc:
            self._rl.log(logging.ERROR, "rollout_state", "cannot write the rollout state in %s: %s", self.dir, exc)
        self.publisher.send([Outbound(self.rollout_topic, to_json(doc), qos=1), self._status()])
