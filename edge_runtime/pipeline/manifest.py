"""Model rollout documents: the signed manifest, the promote/rollback command, target matching, topics. Pure.

A workstation announces a model on ``{root}/models/{model_id}/manifest`` (retained) and its bytes as
``chunks`` retained messages on ``{root}/models/{model_id}/chunks/{i}`` (raw bytes, ``chunk_size`` each, the
last one shorter); commands go to ``{root}/commands`` (QoS 1, not retained). Manifests and commands are signed
(Ed25519) over :func:`signed_bytes`: the canonical JSON of the document without its ``signature`` field, so the
signature covers the model's size and SHA-256. See docs/FLEET.md.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any

MANIFEST_VERSION = 1
COMMAND_VERSION = 1
ACTIONS = ("promote", "rollback")
MAX_CHUNKS = 1 << 16
_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A manifest or command document is malformed; the message names the field."""


def signed_bytes(doc: dict[str, Any]) -> bytes:
    """What a signature covers: ``doc`` without ``signature`` as canonical JSON (sorted keys, no spaces)."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class Topics:
    """The fleet topics under ``root`` (``fleet.topic``)."""

    root: str

    @property
    def manifests(self) -> str:
        return f"{self.root}/models/+/manifest"

    @property
    def commands(self) -> str:
        return f"{self.root}/commands"

    def manifest(self, model_id: str) -> str:
        return f"{self.root}/models/{model_id}/manifest"

    def chunks(self, model_id: str) -> str:
        return f"{self.root}/models/{model_id}/chunks/+"

    def chunk(self, model_id: str, index: int) -> str:
        return f"{self.root}/models/{model_id}/chunks/{index}"

    def parse(self, topic: str) -> tuple[str, str, int]:
        """``(kind, model_id, chunk index)`` of a fleet topic: kind ``manifest``, ``chunk``, ``command`` or ''."""
        if topic == self.commands:
            return "command", "", -1
        head = f"{self.root}/models/"
        if not topic.startswith(head):
            return "", "", -1
        parts = topic[len(head):].split("/")
        if len(parts) == 2 and parts[1] == "manifest":
            return "manifest", parts[0], -1
        if len(parts) == 3 and parts[1] == "chunks" and parts[2].isdigit() and len(parts[2]) <= 6:
            return "chunk", parts[0], int(parts[2])
        return "", "", -1


def target_matches(pattern: str, target: str) -> bool:
    """Does a gateway at ``target`` (``site/line1/gw3``) match ``pattern``? Levels split on ``/``; each level
    is a shell pattern (``*``, ``gw-?``, ``[ab]``); a final ``**`` matches any remaining levels (or none).
    Several patterns may be given separated by commas."""
    for pat in (p.strip() for p in pattern.split(",")):
        if not pat:
            continue
        want, have = pat.split("/"), target.split("/")
        if want[-1] == "**":
            want = want[:-1]
            if len(have) < len(want):
                continue
            have = have[: len(want)]
        if len(want) == len(have) and all(fnmatch.fnmatchcase(h, w) for h, w in zip(have, want, strict=True)):
            return True
    return False


@dataclass(frozen=True)
class Manifest:
    """A model announced for rollout (the fields :func:`manifest_doc` writes)."""

    model_id: str
    size: int
    sha256: str
    chunk_size: int
    chunks: int
    channels: tuple[str, ...]
    window: int
    threshold: float
    created: str
    target: str
    published: float
    key_id: str
    signature: str

    @property
    def digest(self) -> str:
        """Tells two announcements of the same model id apart: the file's SHA-256 and the publish time."""
        return f"{self.sha256[:16]}-{int(self.published * 1000)}"

    def chunk_length(self, index: int) -> int:
        """The byte length chunk ``index`` must have."""
        return self.chunk_size if index < self.chunks - 1 else self.size - self.chunk_size * (self.chunks - 1)


def manifest_doc(model_id: str, size: int, sha256: str, chunk_size: int, channels: list[str], window: int,
                 threshold: float, created: str, target: str, published: float, key_id: str = "") -> dict[str, Any]:
    """The manifest document, unsigned (add ``signature`` over :func:`signed_bytes`)."""
    return {"manifest_version": MANIFEST_VERSION, "model_id": model_id, "size": size, "sha256": sha256,
            "chunk_size": chunk_size, "chunks": max(1, -(-size // chunk_size)), "channels": list(channels),
            "window": window, "threshold": threshold, "created": created, "target": target,
            "published": published, "key_id": key_id}


def _field(doc: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    v = doc.get(key)
    if not isinstance(v, kind) or isinstance(v, bool):
        raise ManifestError(f"{key}: missing or not {getattr(kind, '__name__', 'a number')}")
    return v


def _versioned(doc: Any, key: str, version: int) -> dict[str, Any]:
    """``doc`` when it is a JSON object whose ``key`` is ``version``."""
    if not isinstance(doc, dict):
        raise ManifestError("not a JSON object")
    if doc.get(key) != version:
        raise ManifestError(f"{key}: {doc.get(key)!r} is not {version}")
    return doc


def parse_manifest(doc: Any) -> Manifest:
    """A :class:`Manifest` from a received document, or :class:`ManifestError` naming the bad field."""
    doc = _versioned(doc, "manifest_version", MANIFEST_VERSION)
    model_id = _field(doc, "model_id", str)
    if not _ID.match(model_id):
        raise ManifestError(f"model_id: {model_id[:80]!r} must be 1-64 of [A-Za-z0-9_.:@-]")
    size, chunk_size, chunks = (_field(doc, k, int) for k in ("size", "chunk_size", "chunks"))
    if size < 1 or chunk_size < 1 or not 1 <= chunks <= MAX_CHUNKS or chunks != -(-size // chunk_size):
        raise ManifestError(f"size/chunk_size/chunks: {size}/{chunk_size}/{chunks} do not fit together")
    sha = _field(doc, "sha256", str)
    if not _HEX64.match(sha):
        raise ManifestError("sha256: not 64 lower-case hex digits")
    channels = _field(doc, "channels", list)
    if not channels or not all(isinstance(c, str) for c in channels):
        raise ManifestError("channels: a non-empty list of names")
    window = _field(doc, "window", int)
    threshold = float(_field(doc, "threshold", (int, float)))
    published = float(_field(doc, "published", (int, float)))
    signature = doc.get("signature", "")
    if not isinstance(signature, str):
        raise ManifestError("signature: not a string")
    return Manifest(model_id, size, sha, chunk_size, chunks, tuple(channels), window, threshold,
                    str(doc.get("created", "")), _field(doc, "target", str), published,
                    str(doc.get("key_id", "")), signature)


@dataclass(frozen=True)
class Command:
    """``promote`` (the staged model ``model_id``) or ``rollback`` (to the previous model) on ``target``."""

    action: str
    model_id: str
    target: str
    time: float
    command_id: str
    signature: str


def command_doc(action: str, model_id: str, target: str, now: float, command_id: str) -> dict[str, Any]:
    """A command document, unsigned."""
    return {"command_version": COMMAND_VERSION, "action": action, "model_id": model_id, "target": target,
            "time": now, "command_id": command_id}


def parse_command(doc: Any) -> Command:
    """A :class:`Command` from a received document, or :class:`ManifestError` naming the bad field."""
    doc = _versioned(doc, "command_version", COMMAND_VERSION)
    action = _field(doc, "action", str)
    if action not in ACTIONS:
        raise ManifestError(f"action: {action[:40]!r} is not one of {', '.join(ACTIONS)}")
    signature = doc.get("signature", "")
    if not isinstance(signature, str):
        raise ManifestError("signature: not a string")
    return Command(action, str(doc.get("model_id") or ""), _field(doc, "target", str),
                   float(_field(doc, "time", (int, float))), _field(doc, "command_id", str)[:64], signature)
