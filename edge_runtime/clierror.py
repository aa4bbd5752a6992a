"""The one way every command reports a user's mistake: ``PROG: error: MESSAGE``, one line on stderr, then exit.

Used by ``edgewatch``, its tools and ``edgewatch-train``, so a script or a person reads the same shape everywhere.
"""

from __future__ import annotations

from typing import NoReturn

import click


def error_line(message: str, prog: str) -> str:
    """``PROG: error: MESSAGE`` with the message's whitespace collapsed to one line."""
    return f"{prog}: error: {' '.join(str(message).split())}"


def fail(message: str, code: int = 2, prog: str = "edgewatch") -> NoReturn:
    """Print :func:`error_line` on stderr and exit with ``code`` (no traceback)."""
    click.echo(error_line(message, prog), err=True)
    raise SystemExit(code)
