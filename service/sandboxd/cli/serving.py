"""Running a long-lived process (the service, the scaler) until SIGTERM/SIGINT: what ``run``, ``dev`` and
``scaler`` share.

The first signal sets the stop event and the process drains (the service: stop fetching, hand back what has not
started, let in-flight reconciles finish within ``SANDBOXD_SHUTDOWN_GRACE_SECONDS``, flush acks); a second
signal exits at once (``cli.signals``). A stop that arrives while the first connect is still being retried has
nothing to drain and simply ends the run.

Before it runs, ``tune_gc`` sets the garbage collector for a long-lived process: the service allocates many
short-lived objects per event (messages, parsed models, rendered manifests) and keeps a large, stable set
(settings, caches, the desired-state replica the idle sweeper follows). With CPython's default thresholds the
collector runs a young-generation pass every 700 net allocations and keeps re-examining the stable set;
collecting less often and freezing what start-up built costs a little memory and gains throughput (``make
bench`` measures it; see docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Awaitable, Callable

import anyio

from sandboxd.cli.exits import OK
from sandboxd.cli.signals import stop_on_signals
from sandboxd.telemetry import logs

log = logging.getLogger("sandboxd")

Runner = Callable[[anyio.Event], Awaitable[None]]

#: Young-generation threshold: net allocations between collections (CPython's default is 700).
YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Freeze the objects start-up created (never scanned again) and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)


def configure_logging(*, verbose: bool = False, default_format: logs.Format = "json") -> logs.Redaction:
    """Log lines on stderr: ``SANDBOXD_LOG_LEVEL`` (``-v``: DEBUG) and ``SANDBOXD_LOG_FORMAT`` (json|text).

    Returns the lines' ``Redaction``, for the command to teach the secrets of the settings it reads.
    """
    redaction = logs.Redaction()
    logs.configure(default_format=default_format, level="DEBUG" if verbose else None, redaction=redaction)
    return redaction


async def serve(run: Runner, *, connected: Callable[[], bool], stop: anyio.Event | None = None) -> int:
    """``run(stop)`` until a signal (or ``stop``), then let it drain; exit code 0 after a clean stop.

    ``connected`` says whether the process got past its first connect; before that a stop cancels the run.
    """
    stop = stop or anyio.Event()
    tune_gc()
    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_on_signals, stop, name="signals")

        async def give_up_connecting() -> None:
            await stop.wait()
            if not connected():  # still retrying the first connect: nothing to drain
                tg.cancel_scope.cancel()

        tg.start_soon(give_up_connecting, name="stop-while-connecting")
        await run(stop)
        tg.cancel_scope.cancel()
    log.info("stopped")
    return OK
