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

import anyio
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from sandboxd import naming
from sandboxd.adapters.jetstream.deliveries import EventSource
from sandboxd.adapters.jetstream.publishing import JetStreamDeadLetters
from sandboxd.errors import RetryableError

log = logging.getLogger(__name__)

REASON = "MaxDeliveries"
Stranded = Callable[[str, str], Awaitable[None]]  # (subject, message) → e.g. write the sandbox's status


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

    async def run(self) -> None:
        """Move stranded events until cancelled; then unsubscribe, so draining the connection does not wait
        for the answer to a fetch nobody is reading any more."""
        try:
            while True:
                try:
                    await self.move_once(timeout=5.0)
                except RetryableError as exc:
                    log.warning("dead-letter mover: %s", exc.message)
                    await anyio.sleep(5.0)
        finally:
            with anyio.CancelScope(shield=True):
                await self._source.close()

    async def move_once(self, *, timeout: float = 1.0) -> int:
        """Handle the advisories waiting now; returns how many events were dead-lettered."""
        moved = 0
        for advisory in await self._source.fetch(64, timeout):
            try:
                body = json.loads(advisory.data)
                sequence, deliveries = int(body["stream_seq"]), int(body.get("deliveries", 0))
            except (ValueError, KeyError, TypeError):
                log.warning("dead-letter mover: an advisory it cannot read was dropped")
                await advisory.term()
                continue
            if await self._move(sequence, deliveries):
                moved += 1
            await advisory.ack()
        self.moved += moved
        return moved

    async def _move(self, sequence: int, deliveries: int) -> bool:
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
