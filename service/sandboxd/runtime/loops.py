"""How a background loop outlives a failed iteration: ``LoopGuard`` logs it once, counts it, and backs off.

Every long-running loop (the consume loop's fetch, the dead-letter mover, resync, the sweeper, the monitor, the
activity feeds, the scaler's fetch) catches whatever one iteration raises and hands it to its guard:

- logged once per run of failures (and again when the kind of failure changes), with the exception's class,
  and the traceback only for an exception outside the error tree (a bug); never the text of a foreign
  exception, which may quote a payload;
- counted through ``record(loop, error_class)`` (the service's ``sandboxd.loop.errors`` counter);
- followed by a pause that grows with consecutive failures (``retry.Backoff``, jittered, capped) so a broker
  that is down is not hammered;
- ``succeeded()`` ends the run (logged once) and resets the pause.

``failing_for(now)`` says how long the loop has failed without a success in between, for readiness (a broker
unavailable for longer than a moment turns ``/readyz`` to 503). Cancellation is never caught: only a signal,
or a connection that closed for good (the service's monitor), ends the process.

``FailureLog`` is that logging rule on its own, for code that retries by other means (the keyed queue: a
reconcile that fails on a broker outage is nak'd, not slept on): one WARNING line without a traceback per run of
failures from the error tree, one line again when they end.

``until_done`` is the start-up twin: a step (provision the topology, bind a consumer, open a bucket) retried
while it fails transiently, so replicas started during a leader election or before ``sandboxd init`` wait
instead of exiting; a permanent failure still raises and ends the start-up with its message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from sandboxd.errors import RetryableError, SandboxdError
from sandboxd.runtime.retry import Backoff

log = logging.getLogger(__name__)

Record = Callable[[str, str], None]  # (loop name, error class name)
T = TypeVar("T")


def _ignore(_loop: str, _error: str) -> None:
    return None


class FailureLog:
    """Logs a run of failures once (and again when the kind changes), then once when it ends.

    An exception from the error tree is logged as a WARNING with its message and no traceback (expected: a broker
    that is down, a target that is unreachable); any other exception with its class name and its traceback.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.failures = 0
        self._kind = ""

    def failed(self, exc: BaseException, *, of: str | None = None) -> None:
        """One more failure (``of``: what it happened to, such as a sandbox id, for the log line)."""
        self.failures += 1
        kind = exc.__class__.__name__
        if kind == self._kind:
            return
        self._kind = kind
        foreign = not isinstance(exc, SandboxdError)
        what = exc.message if isinstance(exc, SandboxdError) else f"unexpected {kind}"
        name = self.name if of is None else f"{self.name} of {of}"
        log.warning("%s failed: %s; retrying", name, what, exc_info=exc if foreign else None)

    def succeeded(self) -> None:
        if self.failures:
            log.info("%s recovered after %d failed attempts", self.name, self.failures)
        self.failures, self._kind = 0, ""


class LoopGuard:
    def __init__(
        self,
        name: str,
        *,
        record: Record | None = None,
        backoff: Backoff = Backoff(0.5, 10.0),  # noqa: B008 - frozen, shared safely
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._record = record or _ignore
        self._backoff = backoff
        self._clock = clock
        self._log = FailureLog(name)
        self.total = 0
        self.last_error: SandboxdError | None = None
        self._since: float | None = None

    @property
    def failures(self) -> int:
        """Consecutive failures: the current run's length (0 after a success)."""
        return self._log.failures

    def count(self, exc: BaseException) -> None:
        """Count a failure this loop handled itself (no pause, no log)."""
        self.total += 1
        self._record(self.name, exc.__class__.__name__)

    async def failed(self, exc: BaseException) -> None:
        """Log (once per run), count, remember and pause after a failed iteration."""
        self.count(exc)
        self._log.failed(exc)
        if self._since is None:
            self._since = self._clock()
        self.last_error = exc if isinstance(exc, SandboxdError) else None
        await anyio.sleep(self._backoff.delay(self.failures))

    def succeeded(self) -> None:
        self._log.succeeded()
        self._since, self.last_error = None, None

    def failing_for(self) -> float:
        """Seconds since the first failure of the current run; 0 when the last iteration succeeded."""
        return 0.0 if self._since is None else self._clock() - self._since

    async def forever(self, step: Callable[[], Awaitable[object]], *, every_s: Callable[[], float]) -> None:
        """Run ``step`` (a coroutine function) every ``every_s()`` seconds until cancelled, guarded."""
        while True:
            try:
                await step()
            except Exception as exc:  # noqa: BLE001 - one failed iteration never ends the loop
                await self.failed(exc)
            else:
                self.succeeded()
            await anyio.sleep(every_s())


async def until_done(step: Callable[[], Awaitable[T]], guard: LoopGuard) -> T:
    """``step()`` until it does not fail with a ``RetryableError`` (paused and logged by ``guard``)."""
    while True:
        try:
            result = await step()
        except RetryableError as exc:
            await guard.failed(exc)
            continue
        guard.succeeded()
        return result
