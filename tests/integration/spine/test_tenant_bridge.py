"""The tenant bridge on a real nats-server: a tenant ``sandbox_requested`` event becomes one ``sandbox.create``.

The test plays the tenant service (it owns stream ``CATALYST_ORG``) and reads SANDBOX_EVENTS and SANDBOX_DLQ
back as a console would; it runs the bridge one batch at a time instead of sleeping.
"""

from __future__ import annotations

import json

import pytest

from sandboxd import naming
from sandboxd.adapters.jetstream import headers as dead
from sandboxd.adapters.jetstream.publishing import JetStreamDeadLetters
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.app.tenants import TenantBridge
from sandboxd.models.events import CreateEvent, parse_event
from sandboxd.runtime.disposition import Disposition
from sandboxd.runtime.retry import Backoff
from sandboxd.settings import TenantBridgeSettings, TopologySettings
from support.spine import client
from support.tenants import TENANT_STREAM_CONFIG, tenant_request

pytestmark = pytest.mark.anyio

SETTINGS = TenantBridgeSettings(enabled=True)
STREAM, SUBJECT = SETTINGS.stream, SETTINGS.subject


async def test_a_redelivered_request_makes_one_create_and_a_malformed_one_is_dead_lettered(
    fresh_nats_server: NatsServer,
) -> None:
    async with client(fresh_nats_server.url) as c:
        await ensure_topology(c.js, TopologySettings())
        await c.js.add_stream(TENANT_STREAM_CONFIG)
        await c.js.publish(SUBJECT, tenant_request("evt-1"), headers={"Nats-Msg-Id": "evt-1"})
        dead_letters = JetStreamDeadLetters(c.js, stream=STREAM)
        disposition = Disposition(dead_letters=dead_letters, backoff=Backoff(0.1, 1.0), max_deliver=5)
        bridge = TenantBridge(c.js, SETTINGS, disposition=disposition)
        await bridge.start()
        try:
            assert await bridge.bridge_once() == 1
            # The tenant service publishes the same event again past its own dedupe window (a new stream
            # message, the same Nats-Msg-Id would have been refused): a second bridge pass, the same create.
            await c.js.publish(SUBJECT, tenant_request("evt-1"))
            await c.js.publish(SUBJECT, b'{"id": "evt-2", "data": {"org_slug": "acme"}}')
            assert await bridge.bridge_once() == 2
        finally:
            await bridge.close()

        events = await c.js.stream_info(naming.EVENTS_STREAM)
        assert events.state.messages == 1
        stored = await c.js.get_msg(naming.EVENTS_STREAM, seq=events.state.first_seq)
        create = parse_event(stored.data or b"")
        assert isinstance(create, CreateEvent)
        assert stored.subject == "sandbox.create.sandbox-ceo-at-acme-com"
        assert create.id == "tenant:evt-1"
        spec = create.data.spec
        assert (spec.owner.email, spec.owner.org_ref.slug, spec.plan_id) == ("ceo@acme.com", "acme", "sandbox-ent")
        assert (spec.quota.cpu, spec.quota.memory, spec.quota.storage) == ("8", "16Gi", "500Gi")
        assert spec.quota.concurrent_sessions == 10  # upstream's invalid 0 for sandbox-ent
        assert [a.value for a in spec.agent_catalogue] == ["claude-code"]

        dlq = await c.js.stream_info(naming.DLQ_STREAM)
        assert dlq.state.messages == 1
        letter = await c.js.get_msg(naming.DLQ_STREAM, seq=dlq.state.first_seq)
        headers = letter.headers or {}
        assert headers[dead.H_REASON] == "InvalidEvent"
        assert "owner_email" in headers[dead.H_MESSAGE]
        assert headers[dead.H_STREAM] == STREAM
        assert json.loads(letter.data or b"{}")["id"] == "evt-2"  # the tenant body, kept for a replay

        consumer = await c.js.consumer_info(STREAM, SETTINGS.consumer)
        assert consumer.num_ack_pending == 0 and consumer.num_pending == 0
