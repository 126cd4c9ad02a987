"""The tenant bridge's consumer on JetStream: the tenant service's stream (upstream ``CATALYST_ORG``).

Its own durable pull consumer (filtered to the sandbox-request subject, explicit ack, deliver all, unlimited
deliveries like upstream's) on a stream this process does not own and never creates: ``bind_tenant_requests``
makes (or updates) the consumer and binds it, and raises ``BrokerUnavailable`` while the stream is missing (the
tenant service makes it, never ``sandboxd init``); the caller retries. Deliveries are the same
``JetStreamDelivery`` the reconciler's consumer hands out, so the runtime's disposition settles them and
``JetStreamDeadLetters(js, stream=...)`` dead-letters them (the tenant body kept, ``Sandboxd-Stream`` naming the
tenant stream).

What it deliberately does not do: translate or publish (``app.tenants``), or create the tenant stream.
"""

from __future__ import annotations

from typing import Final

from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from sandboxd.adapters.jetstream.deliveries import EventSource
from sandboxd.adapters.jetstream.errors import boundary
from sandboxd.adapters.jetstream.topology import ensure_consumer
from sandboxd.errors import BrokerUnavailable

#: Redelivery after this long without an ack; a translation and one publish take far less (upstream 30 s).
ACK_WAIT_S: Final = 30.0


def tenant_consumer_config(*, subject: str, durable: str) -> api.ConsumerConfig:
    return api.ConsumerConfig(
        durable_name=durable,
        filter_subject=subject,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_wait=ACK_WAIT_S,
    )


async def bind_tenant_requests(js: JetStreamContext, *, stream: str, subject: str, durable: str) -> EventSource:
    """Make (or keep) the bridge's consumer and bind it; a tree error (translated) while the stream is missing."""
    with boundary(f"making consumer {stream}/{durable}"):
        try:
            await ensure_consumer(js, stream, tenant_consumer_config(subject=subject, durable=durable))
        except NotFoundError as exc:  # not `sandboxd init`'s to make: the tenant service owns the stream
            raise BrokerUnavailable(f"stream {stream} does not exist yet (the tenant service makes it)") from exc
    return await EventSource.bind(js, stream=stream, durable=durable)
