"""A consumer group's configuration and the pure rules it runs by: subjects, partitions, assignment.

A group is one JetStream stream whose subject transform puts a partition number in front of every
sensor subject: ``sensors.pump-7.data`` is stored as ``p.<k>.sensors.pump-7.data`` with
``k = fnv1a32("pump-7") % partitions`` (nats-server's ``{{partition(n, i)}}``, reproduced by
:func:`partition_of`). Each partition has one durable consumer with a pinned-client priority group, so
at most one worker receives it at a time. Which worker pulls which partition: :func:`assign`, over the
live members (their heartbeats in a KV bucket) less the drained ones.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

GROUPS_BUCKET = "edgewatch_groups"  # group name -> GroupConfig JSON
PREFIX = "p"  # stored subjects: p.<partition>.<sensor subject>
PIN_GROUP = "edgewatch"  # the priority group name on every partition consumer
_KEY_BAD = re.compile(r"[^-_=./A-Za-z0-9]")


class GroupError(ValueError):
    """A group configuration or name that cannot work (the message says why)."""


@dataclass
class GroupConfig:
    """What ``edgewatch group create`` stores in the ``edgewatch_groups`` KV bucket (JSON)."""

    name: str
    stream: str
    subject: str  # the sensor subjects, one '*' for the device: sensors.*.data
    partitions: int = 16
    replicas: int = 1
    pin_ttl_s: float = 5.0  # a pinned worker silent this long loses its partitions (server side)
    ack_wait_s: float = 10.0
    member_ttl_s: float = 5.0  # a worker whose heartbeat is this old is no member
    max_age_s: float = 86400.0  # how long the stream keeps sensor messages
    drained: list[str] = field(default_factory=list)  # workers that own no partition (maintenance)

    def validate(self) -> GroupConfig:
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise GroupError(f"group name {self.name!r}: letters, digits, - and _ only")
        if self.subject.count("*") != 1 or ">" in self.subject:
            raise GroupError(f"subject {self.subject!r}: needs exactly one '*' (the device) and no '>'")
        if not 1 <= self.partitions <= 1024:
            raise GroupError(f"partitions {self.partitions}: between 1 and 1024")
        if self.replicas not in (1, 3, 5):
            raise GroupError(f"replicas {self.replicas}: 1, 3 or 5")
        if self.pin_ttl_s < 2 or self.member_ttl_s < 2 or self.ack_wait_s < 2:
            raise GroupError("pin_ttl_s, member_ttl_s and ack_wait_s: at least 2 s")
        return self

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> GroupConfig:
        try:
            doc = json.loads(raw)
            known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
            return cls(**known).validate()
        except (ValueError, TypeError, AttributeError) as exc:
            raise GroupError(f"group configuration is not valid: {exc}") from None

    @property
    def members_bucket(self) -> str:
        return f"edgewatch_members_{self.name}"

    @property
    def retained_bucket(self) -> str:
        return f"edgewatch_retained_{self.name}"

    def consumer(self, partition: int) -> str:
        return f"{self.name}-p{partition}"

    def partition_filter(self, partition: int) -> str:
        return f"{PREFIX}.{partition}.>"

    @property
    def device_token(self) -> int:
        """0-based index of the device token in :attr:`subject`."""
        return self.subject.split(".").index("*")

    def transform(self) -> dict[str, str]:
        """The stream's subject transform: ``sensors.*.data`` -> ``p.{{partition(n,1)}}.sensors.{{wildcard(1)}}.data``."""
        dest = self.subject.replace("*", "{{wildcard(1)}}")
        return {"src": self.subject, "dest": f"{PREFIX}.{{{{partition({self.partitions},1)}}}}.{dest}"}


def topic_to_subject(topic: str) -> str:
    """An MQTT-style topic as a NATS subject (``/`` -> ``.``, as the NATS MQTT gateway maps them)."""
    return topic.replace("/", ".")


def template_subject(template: str) -> str:
    """An input template ``sensors/{device}/data`` as the stream's subject ``sensors.*.data``."""
    return topic_to_subject(template.replace("{device}", "*"))


def stored_to_topic(subject: str) -> tuple[int, str]:
    """A stored subject ``p.3.sensors.d1.data`` -> (3, ``sensors/d1/data``); (-1, "") when it is not one."""
    parts = subject.split(".", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1].isdigit():
        return -1, ""
    return int(parts[1]), parts[2].replace(".", "/")


def subject_matches(pattern: str, subject: str) -> bool:
    """Does NATS subject ``pattern`` (``*`` one token, ``>`` the rest) match ``subject``?"""
    pat, sub = pattern.split("."), subject.split(".")
    if "" in sub:  # not a subject a stream stores (an empty token): none matches it
        return False
    for i, tok in enumerate(pat):
        if tok == ">":
            return len(sub) > i
        if i >= len(sub) or (tok != "*" and tok != sub[i]):
            return False
    return len(pat) == len(sub)


def kv_key(subject: str) -> str:
    """A subject as a KV key (characters KV keys refuse become ``=hh``)."""
    return _KEY_BAD.sub(lambda m: "".join(f"={b:02x}" for b in m.group().encode()), subject)


def partition_of(token: str, partitions: int) -> int:
    """The partition nats-server's ``{{partition(partitions, 1)}}`` gives a one-token key (FNV-1a 32)."""
    h = 0x811C9DC5
    for b in token.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h % partitions


def assign(partitions: int, members: Sequence[str], drained: Sequence[str] = ()) -> dict[str, list[int]]:
    """Partitions per member: the live, undrained members sorted by name take partition ``k`` in turn
    (``k % len``), so every member computes the same answer and the load is even (within one partition).
    All members drained: the drained ones keep working rather than nobody."""
    active = sorted(set(members) - set(drained)) or sorted(set(members))
    out: dict[str, list[int]] = {m: [] for m in members}
    for k in range(partitions):
        if active:
            out[active[k % len(active)]].append(k)
    return out


def describe(cfg: GroupConfig, members: list[str], pinned: dict[int, str]) -> dict[str, Any]:
    """``edgewatch group status``'s document: the config, the members and each partition's planned owner."""
    plan = assign(cfg.partitions, members, cfg.drained)
    owner = {k: m for m, ks in plan.items() for k in ks}
    return {
        "group": asdict(cfg),
        "members": sorted(members),
        "partitions": [{"partition": k, "assigned": owner.get(k), "pinned": bool(pinned.get(k))}
                       for k in range(cfg.partitions)],
    }
