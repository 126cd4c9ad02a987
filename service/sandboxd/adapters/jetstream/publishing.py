"""Publishing to JetStream: lifecycle events (sandboxctl, tests, expiry), dead letters and idle-scale commands.

Every publish names its dedupe key in ``Nats-Msg-Id`` (the CloudEvents id, ``dlq:<stream>:<seq>``, or the
scale command id), so retried publishes are stored once. Headers are passed as fresh dicts (nats-py mutates
the dict it is given). Events and scale commands are published inside a PRODUCER ``send`` span and carry its
W3C ``traceparent`` (a caller's own ``traceparent`` header wins); dead letters keep the original event's.
A dead letter is built by ``headers.dead_letter``: the publisher's headers kept, ASCII-safe ``Sandboxd-*``
headers added, cut to fit the server's max payload.
"""

from __future__ import annotations

from collections.abc import Mapping

from nats.js import JetStreamContext

from sandboxd import naming
from sandboxd.adapters.jetstream import headers as dead
from sandboxd.adapters.jetstream.errors import boundary
from sandboxd.adapters.jetstream.headers import MSG_ID
from sandboxd.models.activity import ScaleCommand
from sandboxd.models.events import DeleteEvent, Envelope
from sandboxd.reconcile.ports import Delivery
from sandboxd.telemetry import tracing


async def publish(js: JetStreamContext, subject: str, data: bytes, headers: Mapping[str, str]) -> tuple[int, bool]:
    """Publish and wait for the stream's ack; (sequence, whether deduplicated). Errors per ``errors.translate``."""
    with boundary(f"publish to {subject}"):
        ack = await js.publish(subject, data, headers=dict(headers))
    return int(ack.seq), bool(ack.duplicate)


async def publish_event(
    js: JetStreamContext, event: Envelope, *, headers: Mapping[str, str] | None = None
) -> tuple[int, bool]:
    """Publish one lifecycle event; returns (stream sequence, whether JetStream deduplicated it)."""
    subject = naming.event_subject(event.verb, event.subject)
    with tracing.sending(subject, message_id=event.id, sandbox_id=event.subject) as traced:
        return await publish(js, subject, event.to_json(), {**traced, **(headers or {}), MSG_ID: event.id})


class JetStreamEvents:
    """``reconcile.expiry.EventPublisher`` on SANDBOX_EVENTS: the delete events expiry publishes."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def publish(self, event: DeleteEvent) -> None:
        await publish_event(self._js, event)


class JetStreamDeadLetters:
    """``reconcile.ports.DeadLetters`` on the SANDBOX_DLQ stream, for deliveries of ``stream``."""

    def __init__(self, js: JetStreamContext, *, stream: str = naming.EVENTS_STREAM) -> None:
        self._js = js
        self._stream = stream

    async def send(self, delivery: Delivery, *, reason: str, message: str) -> None:
        await self.send_stored(
            subject=delivery.subject,
            data=delivery.data,
            headers=delivery.headers,
            sequence=delivery.stream_sequence,
            deliveries=delivery.num_delivered,
            reason=reason,
            message=message,
        )

    async def send_stored(
        self,
        *,
        subject: str,
        data: bytes,
        headers: Mapping[str, object],
        sequence: int,
        deliveries: int,
        reason: str,
        message: str,
    ) -> None:
        """Dead-letter a message of ``stream`` known by its sequence (a delivery, or one read back)."""
        origin = dead.Origin(
            stream=self._stream,
            subject=subject,
            sequence=sequence,
            deliveries=deliveries,
            reason=reason,
            message=message,
        )
        # The server's limit, read at each send: a reconnect may land on a server with another one.
        max_payload = int(self._js._nc.max_payload)
        body, out = dead.dead_letter(data, headers, origin, max_payload=max_payload)
        await publish(self._js, naming.dlq_subject(subject), body, out)


async def publish_scale(
    js: JetStreamContext, command: ScaleCommand, *, headers: Mapping[str, str] | None = None
) -> tuple[int, bool]:
    subject = naming.scale_subject(command.sandbox_id)
    with tracing.sending(subject, message_id=command.command_id, sandbox_id=command.sandbox_id) as traced:
        return await publish(js, subject, command.to_json(), {**traced, **(headers or {}), MSG_ID: command.command_id})
