"""The one way every command reports a user's mistake: ``PROG: error: MESSAGE``, one line on stderr, then exit
with the code of :data:`EXIT_CODES`.

Used by ``edgewatch``, its tools, ``edgewatch-train`` and ``edgewatch-lab``, so a script or a person reads the
same shape and the same codes everywhere (docs/TOOLS.md#exit-codes). The codes are sysexits.h's where it has
one (a service manager can tell "fix the input" from "retry later"), argparse's and click's 2 for usage.

An exception says its own code with an ``exit_code`` attribute (class or instance: :func:`code_of`);
:class:`OneLineErrors` makes click's own errors (unknown flag, missing option, bad value) one line too.
"""

from __future__ import annotations

from typing import Any, NoReturn

import click

EXIT_OK = 0
EXIT_FAILURE = 1  # a refused request or nothing found (the message says which); also a bug (with a traceback)
EXIT_USAGE = 2  # the command line is wrong: unknown command or flag, a missing option, a bad or conflicting value
EXIT_DATAERR = 65  # EX_DATAERR: an input file is there but unusable (not CSV/ONNX, old model format, bad cells)
EXIT_NOINPUT = 66  # EX_NOINPUT: an input file or folder does not exist or cannot be read
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: a broker/server unreachable, no reply in time, an extra not installed
EXIT_SOFTWARE = 70  # EX_SOFTWARE: the daemon cannot go on (its MQTT network thread ended): restart it
EXIT_IOERR = 74  # EX_IOERR: a file cannot be read or written (permissions, a missing folder, disk full)
EXIT_CONFIG = 78  # EX_CONFIG: a configuration value (file, EDGEWATCH_* variable or flag) is wrong or missing
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)

#: ``(code, name, meaning)``: the table of docs/TOOLS.md's "Exit codes" (tests/test_cli_exits.py checks both).
EXIT_CODES: tuple[tuple[int, str, str], ...] = (
    (EXIT_OK, "ok", "done (also a clean stop of `edgewatch run` on SIGTERM)"),
    (EXIT_FAILURE, "failure", "the request was refused or found nothing (the line says which); with a "
     "traceback: a bug, please report it"),
    (EXIT_USAGE, "usage", "the command line is wrong: unknown command or flag, missing option, bad or "
     "conflicting value"),
    (EXIT_DATAERR, "data error", "an input file is unusable: not a CSV or ONNX file, not an edgewatch model or "
     "of an old format, no data rows, a non-numeric cell, a bad timestamp; also a model that cannot run as asked "
     "here: `--provider cuda` where this onnxruntime has no CUDA provider or its libraries do not load (no restart "
     "helps: the systemd unit does not restart on 65; `--provider auto` falls back to CPU)"),
    (EXIT_NOINPUT, "no input", "an input file or folder does not exist or cannot be read"),
    (EXIT_UNAVAILABLE, "unavailable", "a broker or server cannot be reached, a port cannot be opened, no reply "
     "came in time (retry later), or an optional part is not installed (the line says what to install)"),
    (EXIT_SOFTWARE, "software", "the daemon cannot go on: restart it"),
    (EXIT_IOERR, "i/o error", "a file cannot be read or written (permissions, a missing folder, disk full)"),
    (EXIT_CONFIG, "config error", "a configuration value (file, EDGEWATCH_* variable or flag) is wrong or "
     "missing"),
    (EXIT_INTERRUPTED, "interrupted", "stopped by Ctrl-C"),
)

DOCS = "docs/TOOLS.md#exit-codes"
#: The last paragraph of each command line's --help (click wraps it).
EPILOG = "Exit codes: " + ", ".join(f"{c} {name}" for c, name, _ in EXIT_CODES) + f" ({DOCS})."


def error_line(message: str, prog: str) -> str:
    """``PROG: error: MESSAGE`` with the message's whitespace collapsed to one line."""
    return f"{prog}: error: {' '.join(str(message).split())}"


def command_path(prog: str, top: str = "main") -> str:
    """``prog`` and the names of the running click commands below the top group ``top`` (``edgewatch-train fit``,
    ``edgewatch-train benchmark skab``), however the group was invoked; ``prog`` outside a command."""
    ctx = click.get_current_context(silent=True)
    names: list[str] = []
    while ctx is not None:
        if ctx.command.name and not (ctx.parent is None and ctx.command.name == top):
            names.append(ctx.command.name)
        ctx = ctx.parent
    return " ".join([prog.split()[0], *reversed(names)])


def fail(message: str, code: int = EXIT_USAGE, prog: str = "edgewatch") -> NoReturn:
    """Print :func:`error_line` on stderr and exit with ``code`` (no traceback)."""
    click.echo(error_line(message, prog), err=True)
    raise SystemExit(code)


def code_of(exc: BaseException, default: int = EXIT_USAGE) -> int:
    """The exit code ``exc`` carries (its ``exit_code`` attribute), else ``default`` (an OSError without one:
    :data:`EXIT_IOERR`)."""
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return code
    return EXIT_IOERR if isinstance(exc, OSError) else default


def with_code(exc: Exception, code: int) -> Exception:
    """``exc`` with its exit code set (for raising one error class with several causes)."""
    exc.exit_code = code  # type: ignore[attr-defined]
    return exc


def os_message(exc: OSError) -> str:
    """``FILE: reason`` of an OSError (no ``[Errno 2]``)."""
    name = exc.filename if exc.filename is not None else ""
    return f"{name}: {exc.strerror}" if name and exc.strerror else str(exc)


def fail_on(exc: BaseException, prog: str, default: int = EXIT_USAGE) -> NoReturn:
    """:func:`fail` with ``exc``'s message (an OSError's file and reason) and :func:`code_of` it."""
    message = os_message(exc) if isinstance(exc, OSError) else (str(exc) or type(exc).__name__)
    fail(message, code_of(exc, default), prog)


class NoInputError(click.BadParameter):
    """A path argument or option names a file or folder that is not there (exit :data:`EXIT_NOINPUT`)."""

    exit_code = EXIT_NOINPUT


class InputPath(click.Path):
    """``click.Path(exists=True, ...)`` whose missing, unreadable or wrong-kind path exits :data:`EXIT_NOINPUT`, not 2."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(exists=True, **kwargs)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:  # not there, unreadable, or a folder where a file is wanted
            raise NoInputError(exc.message, ctx, param) from None


class _OneLine(click.ClickException):
    """A click error shown as :func:`error_line` (no usage block), with the original's exit code."""

    def __init__(self, message: str, exit_code: int, prog: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it a ClassVar; it is read per instance
        self.prog = prog

    def show(self, file: Any = None) -> None:
        click.echo(error_line(self.message, self.prog), err=True)


class OneLineErrors(click.Group):
    """A root command group whose click errors print one line naming the command, then exit with their code
    (usage 2, a missing input 66); Ctrl-C exits 130 with one line."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            raise _one_line(exc, info_name or self.name or "") from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            raise _one_line(exc, ctx.command_path) from None
        except KeyboardInterrupt:
            raise _OneLine("interrupted", EXIT_INTERRUPTED, ctx.command_path) from None

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            with_epilog(cmd)
        return cmd


def with_epilog(cmd: click.Command) -> click.Command:
    """``cmd`` (and, for a group, its commands) with :data:`EPILOG` as the last paragraph of --help when it has none."""
    if cmd.epilog is None:
        cmd.epilog = EPILOG
    for sub in getattr(cmd, "commands", {}).values():
        with_epilog(sub)
    return cmd


def usage_line(exc: click.UsageError, prog: str, help_command: str) -> click.ClickException:
    """``exc`` shown as one line of ``prog`` that points at ``help_command`` (a command reached under another
    name than its own, as ``edgewatch feedback ALERT_ID``)."""
    return _OneLine(f"{exc.format_message().rstrip('.')} (see `{help_command}`)", exc.exit_code, prog)


def _one_line(exc: click.ClickException, fallback: str) -> click.ClickException:
    if isinstance(exc, _OneLine):
        return exc
    ctx = getattr(exc, "ctx", None)
    prog = ctx.command_path if ctx is not None else fallback
    message = exc.format_message()
    if isinstance(exc, click.UsageError) and not isinstance(exc, NoInputError):
        message = f"{message.rstrip('.')} (see `{prog} --help`)"
    return _OneLine(message, exc.exit_code, prog)
