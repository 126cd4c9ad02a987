"""The dead-letter mover: events the reconciler consumer gave up on, taken from their max-deliveries advisory.

The runtime dead-letters an event itself before its last delivery, so this only matters when deliveries ran
out without the runtime seeing the last one (say, an event that crashes the process each time). JetStream then
stops delivering it and says so in an advisory, which SANDBOX_ADVISORIES keeps. The mover reads each advisory
(durable consumer ``sandboxd-advisories``, shared by the replicas), copies the event from SANDBOX_EVENTS (limits
retention still holds it) to SANDBOX_DLQ with reason ``MaxDeliveries``, tells the caller which sandbox it was,
and acknowledges the advisory. The dead letter's ``Nats-Msg-Id`` (``dlq:SANDBOX_EVENTS:<seq>``) makes a copy
the runtime already made, or a second replica's, a duplicate that JetStream drops.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from sandboxd import naming
from sandboxd.adapters.jetstream.deliveries import EventSource
from sandboxd.adapters.jetstream.errors import boundary
from sandboxd.adapters.jetstream.publishing import JetStreamDeadLetters
from sandboxd.errors import RetryableError, SandboxdError

log = logging.getLogger(__name__)

REASON = "MaxDeliveries"
RETRY_S = 5.0  # how soon an advisory whose event could not be moved (broker busy) comes back, s
Stranded = Callable[[str, str], Awaitable[None]]  # (subject, message) → e.g. write the sandbox's status


class Guard(Protocol):
    """What the mover's loop does after a failed round (``runtime.loops.LoopGuard``: log, count, pause)."""

    async def failed(self, exc: BaseException) -> None: ...

    def succeeded(self) -> None: ...


class _Pause:
    async def failed(self, exc: BaseException) -> None:
        what = exc.message if isinstance(exc, SandboxdError) else f"unexpected {exc.__class__.__name__}"
        log.warning("dead-letter mover: %s", what)
        await anyio.sleep(RETRY_S)

    def succeeded(self) -> None:
        return None


class DeadLetterMover:
    def __init__(self, js: JetStreamContext, source: EventSource, *, on_stranded: Stranded | None = None) -> None:
        self._js = js
        self._source = source
        self._dead_letters = JetStreamDeadLetters(js)
        self._on_stranded = on_stranded
        self.moved = 0

    @classmethod
    async def bind(cls, js: JetStreamContext, *, on_stranded: Stranded | None = None) -> DeadLetterMover:
        source = await EventSource.bind(js, stream=naming.ADVISORY_STREAM, durable=naming.ADVISORY_CONSUMER)
        return cls(js, source, on_stranded=on_stranded)

    async def run(self, *, guard: Guard | None = None) -> None:
        """Move stranded events until cancelled; then unsubscribe, so draining the connection does not wait
        for the answer to a fetch nobody is reading any more. A failed round (a leader election, a reconnect,
        anything unforeseen) is logged, counted and retried after the guard's growing pause."""
        guard = guard or _Pause()
        try:
            while True:
                try:
                    await self.move_once(timeout=5.0)
                except Exception as exc:  # noqa: BLE001 - the mover outlives any one failed round
                    await guard.failed(exc)
                else:
                    guard.succeeded()
        finally:
            with anyio.CancelScope(shield=True):
                await self._source.close()

    async def move_once(self, *, timeout: float = 1.0) -> int:
        """Handle the advisories waiting now; returns how many events were dead-lettered.

        Each advisory is settled on its own: moved (or aged out) → ack; unreadable or refused for good → term,
        logged (the event stays in SANDBOX_EVENTS while its retention holds it); a transient failure → nak
        with a delay, so the advisory comes back (the advisory consumer allows 20 deliveries).
        """
        moved = 0
        for advisory in await self._source.fetch(64, timeout):
            try:
                body = json.loads(advisory.data)
                sequence, deliveries = int(body["stream_seq"]), int(body.get("deliveries", 0))
            except (ValueError, KeyError, TypeError):
                log.warning("dead-letter mover: an advisory it cannot read was dropped")
                await advisory.term()
                continue
            try:
                if await self._move(sequence, deliveries):
                    moved += 1
            except RetryableError as exc:
                log.warning("dead-letter mover: event %d: %s; retried", sequence, exc.message)
                await advisory.nak(RETRY_S)
                continue
            except Exception as exc:  # noqa: BLE001 - one advisory's failure never stops the mover
                what = exc.message if isinstance(exc, SandboxdError) else f"unexpected {exc.__class__.__name__}"
                log.error("dead-letter mover: event %d cannot be dead-lettered: %s", sequence, what)
                await advisory.term()
                continue
            await advisory.ack()
        self.moved += moved
        return moved

    async def _move(self, sequence: int, deliveries: int) -> bool:
        with boundary(f"reading event {sequence} of {naming.EVENTS_STREAM}"):
            try:
                stored = await self._js.get_msg(naming.EVENTS_STREAM, seq=sequence)
            except NotFoundError:
                log.warning("dead-letter mover: event %d aged out before it was moved", sequence)
                return False
        subject = str(stored.subject)
        message = f"gave up after {deliveries} deliveries without a result"
        await self._dead_letters.send_stored(
            subject=subject,
            data=stored.data or b"",
            headers=dict(stored.headers or {}),
            sequence=sequence,
            deliveries=deliveries,
            reason=REASON,
            message=message,
        )
        if self._on_stranded is not None:
            await self._on_stranded(subject, message)
        return True
