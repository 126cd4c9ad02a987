"""The tenant bridge on a real nats-server: a tenant ``sandbox_requested`` event becomes one ``sandbox.create``.

The test plays the tenant service (it owns stream ``CATALYST_ORG``) and reads SANDBOX_EVENTS and SANDBOX_DLQ
back as a console would; it runs the bridge one batch at a time instead of sleeping.
"""

from __future__ import annotations

import json

import anyio
import pytest

from integration.idle.rig import until
from sandboxd import naming
from sandboxd.adapters.jetstream import headers as dead
from sandboxd.adapters.jetstream.publishing import JetStreamDeadLetters
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.memory import MemoryApplier
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.app.tenants import TenantBridge
from sandboxd.models.events import CreateEvent, parse_event
from sandboxd.models.status import Phase
from sandboxd.runtime.disposition import Disposition
from sandboxd.runtime.retry import Backoff
from sandboxd.settings import TenantBridgeSettings, TopologySettings
from support.spine import Client, client, running_service, service_settings, spec
from support.tenants import TENANT_STREAM_CONFIG, sandbox_of, tenant_request

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


#: The events stream's dedupe window in the next test, s: short, so a request can come back past it.
WINDOW_S = 1.0


async def creates_of(c: Client, sandbox_id: str) -> int:
    """How many creates SANDBOX_EVENTS holds for ``sandbox_id``."""
    info = await c.js.stream_info(naming.EVENTS_STREAM, subjects_filter=f"sandbox.create.{sandbox_id}")
    return sum((info.state.subjects or {}).values())


async def test_a_request_sent_again_past_the_dedupe_window_creates_nothing_again(fresh_nats_server: NatsServer) -> None:
    """Upstream's orchestrator: get, then create; an existing sandbox is never changed by a request. A request
    the tenant service publishes again after JetStream forgot its id neither re-applies the plan over a later
    update (a new generation) nor brings a deleted sandbox back; a new request for a deleted sandbox creates it."""
    url, email = fresh_nats_server.url, "late@acme.com"
    sid = sandbox_of(email)
    settings = service_settings(url, topology={"duplicate_window_s": WINDOW_S})
    async with client(url) as c, running_service(settings, MemoryApplier()):
        await c.js.add_stream(TENANT_STREAM_CONFIG)
        letters = JetStreamDeadLetters(c.js, stream=STREAM)
        disposition = Disposition(dead_letters=letters, backoff=Backoff(0.1, 1.0), max_deliver=5)
        bridge = TenantBridge(c.js, SETTINGS, disposition=disposition)
        first = tenant_request("evt-late-1", owner_email=email, plan_id="sandbox-free")  # no Nats-Msg-Id header
        try:
            await c.js.publish(SUBJECT, first)
            assert await bridge.bridge_once() == 1
            await c.wait_status(sid, lambda s: s.observed_generation == 1)
            await c.publish("update", sid, {"spec": spec(email, sessions=4)})  # an operator gives it more sessions
            await c.wait_status(sid, lambda s: s.observed_generation == 2)
            forgotten = anyio.current_time() + WINDOW_S
            await until(lambda: anyio.current_time() > forgotten, what="the dedupe window to pass")

            await c.js.publish(SUBJECT, first)  # the same request again, as a new message
            await c.js.publish(SUBJECT, tenant_request("evt-late-2", owner_email=email, plan_id="sandbox-pro"))
            assert await bridge.bridge_once() == 2
            assert await creates_of(c, sid) == 1
            await c.publish("delete", sid, {"purge": True})
            deleted = await c.wait_status(sid, lambda s: s.phase is Phase.DELETED)
            assert deleted.observed_generation == 3  # the two requests changed nothing

            await c.js.publish(SUBJECT, first)  # once more after the deletion: still the request already done
            assert await bridge.bridge_once() == 1
            assert await creates_of(c, sid) == 1
            await c.js.publish(SUBJECT, tenant_request("evt-late-3", owner_email=email, plan_id="sandbox-pro"))
            assert await bridge.bridge_once() == 1  # a new request for the deleted sandbox: a new life
            again = await c.wait_status(sid, lambda s: s.phase is not Phase.DELETED and s.observed_generation == 4)
        finally:
            await bridge.close()
    assert again.replicas is not None and again.replicas.desired == 3  # sandbox-pro's sessions
