"""Event deliveries from the shared durable consumer, seen through the runtime's ``Delivery`` protocol.

One fetch loop per process calls ``EventSource.fetch``; a fetch never carries ``heartbeat=`` (nats-py 2.16
mishandles it) and always has a finite timeout. An empty fetch returns ``[]`` instead of raising; every other
failure is translated by ``adapters.jetstream.errors`` (a leader election or a reconnect is ``BrokerUnavailable``).
``JetStreamEventLog`` reads an event back from the stream, for intake's one question about events in flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from sandboxd import naming
from sandboxd.adapters.jetstream.errors import boundary
from sandboxd.errors import BrokerUnavailable
from sandboxd.naming import SandboxId


class JetStreamDelivery:
    """One delivered event; settled exactly once by the runtime's disposition module."""

    __slots__ = (
        "_msg",
        "data",
        "headers",
        "num_delivered",
        "num_pending",
        "published_at",
        "stream_sequence",
        "subject",
    )

    def __init__(self, msg: Msg) -> None:
        meta = msg.metadata
        self._msg = msg
        self.subject: str = msg.subject
        self.data: bytes = msg.data
        self.headers: Mapping[str, str] = msg.headers or {}
        self.stream_sequence: int = int(meta.sequence.stream)
        self.num_delivered: int = int(meta.num_delivered)
        self.num_pending: int = int(meta.num_pending or 0)
        stamp = meta.timestamp
        self.published_at: datetime = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)

    async def ack(self) -> None:
        await self._msg.ack()

    async def nak(self, delay: float | None = None) -> None:
        await self._msg.nak(delay=delay)

    async def term(self) -> None:
        await self._msg.term()

    async def in_progress(self) -> None:
        await self._msg.in_progress()


class EventSource:
    """Pull deliveries from the durable reconciler consumer (bound, never re-created with drifted config)."""

    def __init__(self, subscription: JetStreamContext.PullSubscription) -> None:
        self._sub = subscription

    @classmethod
    async def bind(
        cls, js: JetStreamContext, *, stream: str = naming.EVENTS_STREAM, durable: str = naming.EVENTS_CONSUMER
    ) -> EventSource:
        with boundary(f"binding consumer {stream}/{durable}"):
            try:
                return cls(await js.pull_subscribe_bind(durable, stream=stream))
            except NotFoundError as exc:
                raise BrokerUnavailable(f"consumer {stream}/{durable} does not exist; run `sandboxd init`") from exc

    async def fetch(self, batch: int, timeout: float) -> list[JetStreamDelivery]:
        with boundary("fetching deliveries"):
            try:
                msgs = await self._sub.fetch(batch=batch, timeout=timeout)
            except TimeoutError:  # nats.errors.TimeoutError, or asyncio's from inside _fetch_n: both mean empty
                return []
        return [JetStreamDelivery(m) for m in msgs]

    async def close(self) -> None:
        try:
            await self._sub.unsubscribe()
        except Exception:  # noqa: BLE001 - closing a subscription on a closed connection is not an error
            return


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event read back from the stream (``reconcile.ports.InboundEvent``)."""

    subject: str
    data: bytes
    stream_sequence: int
    headers: Mapping[str, str]


class JetStreamEventLog:
    """``reconcile.ports.EventLog`` over SANDBOX_EVENTS: a "next message on this subject" request to the stream's
    leader (``$JS.API.STREAM.MSG.GET``, which the reconciler's role already has for the dead-letter mover), and the
    shared consumer's ack floor (everything at or below it has been settled)."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def create_after(self, sandbox_id: SandboxId, sequence: int) -> StoredEvent | None:
        subject = naming.event_subject("create", sandbox_id)
        with boundary(f"looking for a create of {sandbox_id} in {naming.EVENTS_STREAM}"):
            try:
                msg = await self._js.get_msg(naming.EVENTS_STREAM, seq=sequence + 1, subject=subject, next=True)
            except NotFoundError:
                return None
        return StoredEvent(msg.subject or subject, msg.data or b"", int(msg.seq or 0), dict(msg.headers or {}))

    async def settled(self, sequence: int) -> bool:
        with boundary(f"reading the {naming.EVENTS_CONSUMER} consumer's ack floor"):
            consumer = await self._js.consumer_info(naming.EVENTS_STREAM, naming.EVENTS_CONSUMER)
        return sequence <= (consumer.ack_floor.stream_seq if consumer.ack_floor else 0)
