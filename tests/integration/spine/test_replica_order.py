"""On a real nats-server: replicas share the consumer, so a sandbox's create and the event right behind it can reach
two replicas, and the later one can reach intake first. The publisher's order still holds: the later event waits
for its create (``AwaitingCreate``, retried), and a malformed event is dead-lettered whichever replica saw it."""

from __future__ import annotations

import json

import anyio
import pytest

from sandboxd import naming
from sandboxd.adapters.jetstream.deliveries import JetStreamEventLog
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.memory import MemoryApplier
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.models.status import Phase
from sandboxd.reconcile.intake import validate
from sandboxd.settings import TopologySettings
from support.spine import client, event, running_service, service_settings, spec, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

PAIRS = 30


async def test_the_stream_says_which_create_comes_next(fresh_nats_server: NatsServer) -> None:
    async with client(fresh_nats_server.url) as c:
        await ensure_topology(c.js, TopologySettings())
        log = JetStreamEventLog(c.js)
        sid, other = unique_id("ord"), unique_id("ord")
        assert await log.create_after(sid, 0) is None
        first = await c.create(sid, "a@acme.com")
        await c.create(other, "b@acme.com")  # another sandbox's create does not count
        await c.publish("suspend", sid)  # nor does another verb
        second = await c.create(sid, "a@acme.com", sessions=2)
        found = await log.create_after(sid, 0)
        assert found is not None and found.stream_sequence == first
        assert validate(found).verb == "create"  # read back whole: body and Nats-Msg-Id agree
        again = await log.create_after(sid, first)
        assert again is not None and again.stream_sequence == second
        assert await log.create_after(sid, second) is None

        # settled by the consumer (recorded, or dead-lettered): its ack floor says so
        assert not await log.settled(first)
        pull = await c.js.pull_subscribe_bind(naming.EVENTS_CONSUMER, naming.EVENTS_STREAM)
        for msg in await pull.fetch(4, timeout=5):
            await msg.ack_sync()
        assert await log.settled(first) and await log.settled(second) and not await log.settled(second + 1)


async def test_two_replicas_keep_the_order_of_a_create_and_the_event_right_behind_it(
    fresh_nats_server: NatsServer,
) -> None:
    """Create then suspend (or delete), back to back, for many sandboxes, with two replicas on the consumer: every
    sandbox ends as its last event says, and nothing is dead-lettered. A malformed update followed at once by a
    valid one is dead-lettered, whichever replica recorded the valid one first."""
    url = fresh_nats_server.url
    suspended = [unique_id("sus") for _ in range(PAIRS)]
    deleted = [unique_id("del") for _ in range(PAIRS // 2)]
    malformed = [unique_id("bad") for _ in range(PAIRS // 2)]
    async with (
        client(url) as c,
        running_service(service_settings(url), MemoryApplier()),
        running_service(service_settings(url), MemoryApplier()),
    ):
        for n, sid in enumerate(malformed):
            await c.create(sid, f"bad{n}@acme.com")
        for sid in malformed:
            await c.wait_status(sid, lambda s: s.phase is Phase.READY)
        for n, sid in enumerate(suspended):
            await c.create(sid, f"sus{n}@acme.com")
            await c.publish("suspend", sid)
        for n, sid in enumerate(deleted):
            await c.create(sid, f"del{n}@acme.com")
            await c.publish("delete", sid)
        for n, sid in enumerate(malformed):
            invalid = json.loads(event("update", sid, {"spec": spec(f"bad{n}@acme.com")}).to_json())
            invalid["data"]["spec"]["quota"]["cpu"] = "lots"
            await c.publish_raw(f"sandbox.update.{sid}", json.dumps(invalid).encode(), {"Nats-Msg-Id": invalid["id"]})
            await c.publish("update", sid, {"spec": spec(f"bad{n}@acme.com", sessions=2)})
        for sid in suspended:
            await c.wait_status(sid, lambda s: s.phase is Phase.SUSPENDED, timeout=60)
        for sid in deleted:
            await c.wait_status(sid, lambda s: s.phase is Phase.DELETED, timeout=60)
        with anyio.fail_after(60):
            while len(letters := await c.dead_letters()) < len(malformed):
                await anyio.sleep(0.2)
        for sid in malformed:  # the valid update behind each is applied
            await c.wait_status(sid, lambda s: s.observed_generation == 2 and s.phase is Phase.READY)
    assert sorted(letter.subject.rsplit(".", 1)[-1] for letter in letters) == sorted(malformed)
