"""NATS JetStream input: a partitioned consumer group of edgewatch workers (``input.source = nats``).

Imported only when the NATS source or ``edgewatch group`` is used; the client is the official ``nats-py``
(the ``edgewatch[nats]`` extra). nats-py 2.16 has no priority-group API yet, so the pinned-client pull
(``group``/``id`` in the pull request, the ``Nats-Pin-Id`` header, status 423, ``CONSUMER.UNPIN``) is
spoken directly on the client's connection in :mod:`.pull`. See docs/NATS.md.

- :mod:`.groups`: the group's configuration, subjects and partition assignment (pure).
- :mod:`.admin`: create / inspect / drain a group (stream, consumers, KV buckets).
- :mod:`.pull`: pinned pull requests on one partition's consumer.
- :mod:`.link`: the daemon's NATS link (membership, partitions, ack after scoring, outputs).
"""

from __future__ import annotations


class NatsUnavailable(RuntimeError):
    """``nats-py`` is not installed (``pip install 'edgewatch[nats]'``)."""


def require_nats(what: str = "input.source = nats") -> None:
    """Raise :class:`NatsUnavailable` with the install hint when ``nats-py`` is missing (``what`` needs it)."""
    try:
        import nats  # noqa: F401
    except ImportError:
        raise NatsUnavailable(f"{what} needs the NATS client: pip install 'edgewatch[nats]'") from None
