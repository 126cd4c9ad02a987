"""How a command ends: its exit code, or one line on stderr naming what went wrong (never a traceback).

``finish`` is the CLI's error boundary. Errors of the ``sandboxd.errors`` tree print their message; a few
library and OS errors that a user can cause (a missing file, a refused permission) print their own words;
anything else prints its class and text. Every line goes through the command's ``Redaction`` (the one its
logs use, taught the secrets of the settings the command read) whatever raised it. ``SANDBOXD_DEBUG=1``
re-raises instead, for a traceback (which is not scrubbed: a debugging aid for one's own terminal). A reader
that goes away (``sandboxctl status -o json | head -1``) ends the command quietly with 141, as SIGPIPE ends
other CLIs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable

import anyio
from pydantic import ValidationError

from sandboxd.cli.terminal import printable
from sandboxd.errors import SandboxdError
from sandboxd.models.base import describe
from sandboxd.telemetry import logs

OK = 0
FAILED = 1
INTERRUPTED = 130
BROKEN_PIPE = 128 + signal.SIGPIPE


class CommandError(SandboxdError):
    """A command cannot do what was asked (no such sandbox, no such dead letter, an unreadable file)."""

    reason = "CommandFailed"


def leaf(exc: BaseException) -> BaseException:
    """The one error inside (nested) exception groups that task groups wrap around it."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def one_line(exc: BaseException) -> str:
    exc = leaf(exc)
    if isinstance(exc, SandboxdError):
        text = exc.message
    elif isinstance(exc, ValidationError):
        text = describe(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    elif isinstance(exc, BaseExceptionGroup):
        text = "; ".join(one_line(e) for e in exc.exceptions)
    else:
        text = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
    return printable(" ".join(text.split()))


def _reader_gone() -> int:
    """Point stdout at /dev/null, so flushing it at exit does not fail a second time; the SIGPIPE exit code."""
    with contextlib.suppress(OSError, ValueError):  # stdout replaced (a test's capture) or already closed
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return BROKEN_PIPE


def finish(prog: str, main: Callable[[], Awaitable[int]], *, redaction: logs.Redaction) -> int:
    """Run ``main`` on an event loop and turn every failure into one line (through ``redaction``) and exit
    code 1."""
    try:
        return anyio.run(main)
    except (KeyboardInterrupt, BaseExceptionGroup, Exception) as exc:
        if isinstance(leaf(exc), KeyboardInterrupt):
            return INTERRUPTED
        if isinstance(leaf(exc), BrokenPipeError):
            return _reader_gone()
        if os.environ.get("SANDBOXD_DEBUG"):
            raise
        print(f"{prog}: error: {redaction.scrub(one_line(exc))}", file=sys.stderr)
        return FAILED
