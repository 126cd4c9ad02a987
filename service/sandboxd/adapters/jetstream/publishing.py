"""Publishing to JetStream: lifecycle events (sandboxctl, tests), dead letters and idle-scale commands.

Every publish names its dedupe key in ``Nats-Msg-Id`` (the CloudEvents id, ``dlq:<stream>:<seq>``, or the
scale command id), so retried publishes are stored once. Headers are passed as fresh dicts (nats-py mutates
the dict it is given). Events and scale commands are published inside a PRODUCER ``send`` span and carry its
W3C ``traceparent`` (a caller's own ``traceparent`` header wins); dead letters keep the original event's.
"""

from __future__ import annotations

from collections.abc import Mapping

from nats.js import JetStreamContext

from sandboxd import naming
from sandboxd.adapters.jetstream.errors import boundary
from sandboxd.models.activity import ScaleCommand
from sandboxd.models.events import Envelope
from sandboxd.reconcile.ports import Delivery
from sandboxd.telemetry import tracing

# Dead-letter headers (also documented in contracts/asyncapi.yaml).
H_REASON = "Sandboxd-Dead-Reason"
H_MESSAGE = "Sandboxd-Dead-Message"
H_SUBJECT = "Sandboxd-Original-Subject"
H_SEQUENCE = "Sandboxd-Original-Sequence"
H_DELIVERIES = "Sandboxd-Deliveries"


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
        return await publish(js, subject, event.to_json(), {**traced, **(headers or {}), "Nats-Msg-Id": event.id})


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
        headers: Mapping[str, str],
        sequence: int,
        deliveries: int,
        reason: str,
        message: str,
    ) -> None:
        """Dead-letter a message of ``stream`` known by its sequence (a delivery, or one read back)."""
        out = {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")}
        original_id = headers.get("Nats-Msg-Id")
        if original_id:
            out["Sandboxd-Original-Msg-Id"] = original_id
        out.update(
            {
                "Nats-Msg-Id": f"dlq:{self._stream}:{sequence}",
                H_REASON: reason,
                H_MESSAGE: " ".join(message.split())[:4000],
                H_SUBJECT: subject,
                H_SEQUENCE: str(sequence),
                H_DELIVERIES: str(deliveries),
            }
        )
        await publish(self._js, naming.dlq_subject(subject), data, out)


async def publish_scale(
    js: JetStreamContext, command: ScaleCommand, *, headers: Mapping[str, str] | None = None
) -> tuple[int, bool]:
    subject = naming.scale_subject(command.sandbox_id)
    with tracing.sending(subject, message_id=command.command_id, sandbox_id=command.sandbox_id) as traced:
        return await publish(
            js, subject, command.to_json(), {**traced, **(headers or {}), "Nats-Msg-Id": command.command_id}
        )
