"""The model pin: what a gateway's job expects of any model it runs (``[model] channels``, ``window``,
``family``). Pure.

A model that breaks the pin is refused at start, on a reload and in a rollout, with one line saying how it
differs; an empty pin accepts any valid model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pin:
    """Expected channel names (in order; empty: any), window W (0: any) and model family (empty: any)."""

    channels: tuple[str, ...] = ()
    window: int = 0
    family: str = ""

    @property
    def empty(self) -> bool:
        return not (self.channels or self.window or self.family)


def model_family(architecture: Mapping[str, Any]) -> str:
    """The model family named in the metadata's ``architecture`` (``type``, e.g. ``conv1d_autoencoder``), or ''."""
    kind = architecture.get("type", "")
    return kind if isinstance(kind, str) else ""


def pin_mismatch(pin: Pin, channels: Sequence[str], window: int, family: str) -> str:
    """'' when a model of ``channels``, ``window`` and ``family`` fits ``pin``; else one line saying how it differs."""
    if pin.channels and tuple(channels) != pin.channels:
        want, got = set(pin.channels), set(channels)
        missing = [c for c in pin.channels if c not in got]
        extra = [c for c in channels if c not in want]
        parts = []
        if missing:
            parts.append("lacks " + ", ".join(repr(c) for c in missing[:5]) + (" ..." if len(missing) > 5 else ""))
        if extra:
            parts.append("adds " + ", ".join(repr(c) for c in extra[:5]) + (" ..." if len(extra) > 5 else ""))
        if not parts:
            parts.append("has them in another order")
        return (f"channels differ from the pin (model.channels, {len(pin.channels)} channels): the model has "
                f"{len(channels)} and {'; '.join(parts)}")
    if pin.window and window != pin.window:
        return f"window W={window} differs from the pin (model.window = {pin.window})"
    if pin.family and family != pin.family:
        return f"model family {family or '(none)'!r} differs from the pin (model.family = {pin.family!r})"
    return ""
