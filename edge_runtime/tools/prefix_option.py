"""``--topic-prefix`` for the tools that talk to a running daemon: its ``topics.prefix``, as ``edgewatch run
--topic-prefix`` sets it, so a tool reaches a daemon of a prefixed site without a config file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def daemon_prefix_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--topic-prefix PREFIX`` (parameter ``topic_prefix``, None when not given: the config's applies)."""
    return click.option(
        "--topic-prefix", "topic_prefix", default=None, metavar="PREFIX",
        help="The daemon's topics.prefix (`edgewatch run --topic-prefix site-1`: its topics under site-1/); "
             "overrides the config's.")(fn)
