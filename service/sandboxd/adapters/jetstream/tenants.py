"""The tenant bridge on JetStream: ``catalyst.tenant.sandbox_requested`` (stream ``CATALYST_ORG``) → ``sandbox.create``.

Its own durable pull consumer (``DURABLE``, filtered to ``SUBJECT``, explicit ack, deliver all) on the tenant
service's stream, which this process does not own or create: ``start`` waits for the stream and makes the
consumer. Each message is translated by ``reconcile.tenants.create_event`` and:

- published as a create (``Nats-Msg-Id`` = ``tenant:<tenant event id>``) and then acked: a redelivery, or a crash
  between the publish and the ack, publishes the same create again, which JetStream stores once;
- dead-lettered (``SANDBOX_DLQ``, ``Sandboxd-*`` headers with the reason, the tenant body kept) and termed when
  it cannot be a create (``InvalidEvent``);
- nak'd with ``RETRY_DELAY_S`` when the create could not be published (``RetryableError``), never dropped.

Upstream acked and skipped a malformed payload silently and gave up for good when the subscribe failed (§6,
G12); here a failed fetch is retried by the caller's loop guard.

What it deliberately does not do: create the tenant stream, or decide anything about the sandbox (the create
goes through intake like any publisher's).
"""

from __future__ import annotations

import logging
from typing import Final

from nats.js import JetStreamContext, api

from sandboxd.adapters.jetstream.deliveries import EventSource, JetStreamDelivery
from sandboxd.adapters.jetstream.errors import boundary
from sandboxd.adapters.jetstream.headers import MSG_ID
from sandboxd.adapters.jetstream.publishing import JetStreamDeadLetters, publish_event
from sandboxd.adapters.jetstream.topology import ensure_consumer
from sandboxd.errors import InvalidEvent, RetryableError
from sandboxd.reconcile.tenants import create_event

log = logging.getLogger(__name__)

STREAM: Final = "CATALYST_ORG"
SUBJECT: Final = "catalyst.tenant.sandbox_requested"
DURABLE: Final = "sandboxd-tenant-bridge"
RETRY_DELAY_S: Final = 5.0
ACK_WAIT_S: Final = 30.0


class TenantBridge:
    def __init__(self, js: JetStreamContext, *, stream: str = STREAM, durable: str = DURABLE) -> None:
        self._js = js
        self._stream = stream
        self._durable = durable
        self._source: EventSource | None = None
        self._dead = JetStreamDeadLetters(js, stream=stream)

    async def start(self) -> None:
        """Make (or keep) the bridge's consumer and bind it; ``BrokerUnavailable`` while the stream is missing."""
        config = api.ConsumerConfig(
            durable_name=self._durable,
            filter_subject=SUBJECT,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=ACK_WAIT_S,
        )
        with boundary(f"making consumer {self._stream}/{self._durable}"):
            await ensure_consumer(self._js, self._stream, config)
        self._source = await EventSource.bind(self._js, stream=self._stream, durable=self._durable)

    async def bridge_once(self, *, batch: int = 16, timeout_s: float = 1.0) -> int:
        """Fetch and settle one batch; returns how many messages it settled."""
        assert self._source is not None, "start() first"
        deliveries = await self._source.fetch(batch, timeout_s)
        for delivery in deliveries:
            await self._settle(delivery)
        return len(deliveries)

    async def _settle(self, delivery: JetStreamDelivery) -> None:
        try:
            event = create_event(delivery.data, message_id=delivery.headers.get(MSG_ID))
        except InvalidEvent as exc:
            log.warning("tenant event #%d dead-lettered: %s", delivery.stream_sequence, exc.message)
            await self._dead.send(delivery, reason=exc.reason, message=exc.message)
            await delivery.term()
            return
        try:
            await publish_event(self._js, event)
        except RetryableError as exc:
            log.warning("tenant event #%d: create not published (%s); retried", delivery.stream_sequence, exc.message)
            await delivery.nak(RETRY_DELAY_S)
            return
        await delivery.ack()

    async def close(self) -> None:
        if self._source is not None:
            await self._source.close()
