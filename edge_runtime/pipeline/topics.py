"""Topic templates and device ids. Pure.

A template such as ``sensors/{device}/data`` gives both the subscription filter
(``sensors/+/data``) and the device id of a received topic. Device ids come from
the network, so before one goes into an outgoing topic or a log line it is
sanitised: only ``[A-Za-z0-9_.:@-]`` survive, anything else (``+``, ``#``, ``/``,
control characters, spaces, other unicode) becomes ``_``, the length is bounded,
and a changed id gets a short hash suffix so two different raw ids stay apart.
"""

from __future__ import annotations

import hashlib
import re

PLACEHOLDER = "{device}"
_SAFE = re.compile(r"[^A-Za-z0-9_.:@-]")


class TopicError(ValueError):
    """A topic template is unusable."""


class TopicTemplate:
    """``sensors/{device}/data``: one level is ``{device}``, the others literal (``+`` allowed)."""

    def __init__(self, template: str) -> None:
        levels = template.split("/")
        if levels.count(PLACEHOLDER) != 1:
            raise TopicError(f"topic template {template!r} needs exactly one whole level '{{device}}'")
        for lv in levels:
            if lv != PLACEHOLDER and ("{" in lv or "}" in lv or "#" in lv or ("+" in lv and lv != "+")):
                raise TopicError(f"topic template {template!r}: bad level {lv!r}")
        self.template = template
        self.levels = levels
        self.index = levels.index(PLACEHOLDER)
        self.filter = "/".join("+" if lv == PLACEHOLDER else lv for lv in levels)

    def device(self, topic: str) -> str | None:
        """The raw device id in ``topic``, or None when the topic does not fit the template."""
        parts = topic.split("/")
        if len(parts) != len(self.levels):
            return None
        for i, (p, lv) in enumerate(zip(parts, self.levels, strict=True)):
            if i != self.index and lv != "+" and p != lv:
                return None
        dev = parts[self.index]
        return dev or None


class TopicRouter:
    """Several templates; the first that fits a topic names its device."""

    def __init__(self, templates: list[str]) -> None:
        if not templates:
            raise TopicError("at least one input topic template is required")
        self.templates = [TopicTemplate(t) for t in templates]

    @property
    def filters(self) -> list[str]:
        return [t.filter for t in self.templates]

    def device(self, topic: str) -> str | None:
        for t in self.templates:
            d = t.device(topic)
            if d is not None:
                return d
        return None


def device_level_problem(device: str) -> str | None:
    """Why ``device`` cannot be the ``{device}`` level of a topic a publisher or recorder names, else None:
    ``a/b`` makes the topic deeper than ``sensors/+/data`` (the daemon never sees it), ``+``/``#`` are wildcards."""
    if not device.strip() or any(c in device for c in "/+#\0"):
        return "a device id is one topic level: not empty, without / + # or NUL"
    return None


def sanitize_id(raw: str, max_len: int = 64) -> str:
    """A device/instance id safe for an MQTT topic level and a log line (see module docstring).

    The result is never longer than ``max_len`` (>= 1). A changed id is ``<prefix>-<hash>``
    with an 8-hex-digit hash, shortened only where ``max_len`` < 10 leaves no room for it.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    clean = _SAFE.sub("_", raw)
    if clean == raw and 0 < len(raw) <= max_len:
        return raw
    digest = hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()
    if max_len < 3:  # no room for "x-h": the hash alone
        return digest[:max_len]
    n_hex = min(8, max_len - 2)
    keep = max_len - 1 - n_hex
    return f"{clean[:keep] or '_'}-{digest[:n_hex]}"


def format_topic(template: str, **fields: str) -> str:
    """Fill ``{device}`` / ``{instance}`` in an outgoing topic template with already sanitised ids."""
    out = template
    for k, v in fields.items():
        out = out.replace("{" + k + "}", v)
    return out
