"""An event whose deliveries run out without the runtime seeing its last one still ends in the dead letters."""

from __future__ import annotations

import json

import anyio
import pytest

from sandboxd import naming
from sandboxd.adapters.jetstream import headers as dead
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.models.status import Phase
from support.spine import Client, client, event, running_service, service_settings, spec, unique_id

from .test_service import MemoryApplier

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


async def test_an_event_that_ran_out_of_deliveries_is_dead_lettered_with_its_reason(
    fresh_nats_server: NatsServer,
) -> None:
    sid = unique_id()
    settings = service_settings(fresh_nats_server.url, topology={"ack_wait_s": 1.0, "max_deliver": 2})
    async with client(fresh_nats_server.url) as c:
        # Provision the topology, then stop: nobody serves the consumer but the thief below.
        async with running_service(settings, MemoryApplier()):
            pass
        seq = await c.publish("create", sid, {"spec": spec("stranded@acme.com")})
        # A consumer that takes the event and never answers, twice (as a process crashing on it would):
        # JetStream gives up and publishes the MAX_DELIVERIES advisory, which SANDBOX_ADVISORIES keeps.
        thief = await c.js.pull_subscribe_bind(naming.EVENTS_CONSUMER, stream=naming.EVENTS_STREAM)
        taken = 0
        with anyio.fail_after(20):
            while (await c.js.stream_info(naming.ADVISORY_STREAM)).state.messages < 1:
                try:
                    taken += len(await thief.fetch(1, timeout=1))
                except TimeoutError:
                    continue
        await thief.unsubscribe()
        assert taken == 2

        async with running_service(settings, MemoryApplier()):
            status = await c.wait_status(sid, lambda s: s.last_error is not None)
            letters = await c.dead_letters()
        info = await c.js.consumer_info(naming.ADVISORY_STREAM, naming.ADVISORY_CONSUMER)

    [letter] = [m for m in letters if m.headers and m.headers["Sandboxd-Original-Sequence"] == str(seq)]
    assert letter.headers is not None
    assert letter.headers["Sandboxd-Dead-Reason"] == "MaxDeliveries"
    assert letter.headers["Sandboxd-Deliveries"] == "2"
    assert status.phase is Phase.REJECTED
    assert status.last_error is not None and "gave up after 2 deliveries" in status.last_error.message
    assert info.num_ack_pending == 0 and info.num_pending == 0  # the advisory was handled


async def test_the_mover_dead_letters_an_event_just_under_max_payload_with_its_body_cut(
    fresh_nats_server: NatsServer,
) -> None:
    """The mover reads the original back (``get_msg``) and copies it: the copy must still fit the server."""
    sid = unique_id()
    settings = service_settings(fresh_nats_server.url, topology={"ack_wait_s": 1.0, "max_deliver": 2})
    async with client(fresh_nats_server.url) as c:
        async with running_service(settings, MemoryApplier()):
            pass
        body = json.loads(event("create", sid, {"spec": spec("huge@acme.com")}).to_json())
        body["data"]["spec"]["planId"] = ""
        body["data"]["spec"]["planId"] = "p" * (c.nc.max_payload - 16 - len(json.dumps(body).encode()))
        raw = json.dumps(body).encode()
        seq = await c.publish_raw(naming.event_subject("create", sid), raw)  # no headers: it just fits
        await _steal_until_advised(c)

        async with running_service(settings, MemoryApplier()) as service:
            status = await c.wait_status(sid, lambda s: s.last_error is not None)
            letters = await c.dead_letters()
            assert service.health.ready, "the service kept running"

    [letter] = [m for m in letters if m.headers and m.headers[dead.H_SEQUENCE] == str(seq)]
    assert letter.headers is not None
    assert letter.headers[dead.H_REASON] == "MaxDeliveries"
    assert letter.headers[dead.H_BODY_TRUNCATED] == str(len(raw))
    assert letter.headers[dead.H_STREAM] == naming.EVENTS_STREAM
    assert raw.startswith(letter.data) and len(letter.data) < len(raw)
    assert status.phase is Phase.REJECTED


async def _steal_until_advised(c: Client) -> None:
    """Take the event and never answer, until JetStream gives up on it (as a crashing process would)."""
    thief = await c.js.pull_subscribe_bind(naming.EVENTS_CONSUMER, stream=naming.EVENTS_STREAM)
    with anyio.fail_after(30):
        while (await c.js.stream_info(naming.ADVISORY_STREAM)).state.messages < 1:
            try:
                await thief.fetch(1, timeout=1)
            except TimeoutError:
                continue
    await thief.unsubscribe()
