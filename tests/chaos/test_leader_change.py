"""A 3-node NATS cluster at R3: the SANDBOX_EVENTS leader's node is SIGKILLed under load (and restarted once
every event is stored), and nothing exits.

The service runs in-process on the cluster (every node's URL). Events are published before, during and after
the kill (a publish the election interrupts is published again: ``Nats-Msg-Id`` dedupes it). Every sandbox
must end on its last spec with no event dead-lettered; the service's task must still be running and ready again
afterwards. When it stalls, the failure shows the dead letters and what each node sees (``NatsCluster.report``).
"""

from __future__ import annotations

import anyio
import nats
import nats.errors
import pytest
from nats.js.kv import KeyValue

from sandboxd import naming
from sandboxd.adapters.jetstream.headers import H_MESSAGE, decode
from sandboxd.adapters.jetstream.publishing import publish_event
from sandboxd.adapters.memory import MemoryApplier
from sandboxd.errors import BrokerUnavailable
from sandboxd.models.status import Phase, SandboxStatus
from sandboxd.settings import TopologySettings
from support.nats_cluster import NatsCluster, reported_on_stall, wait_for_jetstream
from support.spine import Client, event, running_service, service_settings, spec, unique_id

# A chaos scenario (a 3-node cluster, a SIGKILL), not a regular test.
pytestmark = [pytest.mark.chaos, pytest.mark.cluster, pytest.mark.anyio, pytest.mark.timeout(600)]

SANDBOXES = 30
#: The production default. A stream whose leader is killed has none until nats-server's raft election timer
#: fires (4-9 s, randomised), so an event's retry budget must outlast that: the 6 deliveries the other tests use
#: (0.2-2 s backoff, about 3 s in all) did not, and the owners bucket's election dead-lettered creates.
MAX_DELIVER = TopologySettings.model_fields["max_deliver"].default


async def publish_until_stored(
    js: nats.js.JetStreamContext, verb: str, sandbox_id: str, data: dict[str, object]
) -> str:
    """Publish one event until JetStream stores it; returns its event id."""
    envelope = event(verb, sandbox_id, data)
    with anyio.fail_after(60):
        while True:
            try:
                await publish_event(js, envelope)
                return str(envelope.id)
            except BrokerUnavailable:  # the election: publish again (Nats-Msg-Id dedupes a stored one)
                await anyio.sleep(0.2)


async def dead_letter_reasons(c: Client) -> list[str]:
    """Each dead letter's subject and why (every event here is valid: one dead-lettered is one lost)."""
    return [
        f"{letter.subject}: {decode((letter.headers or {}).get(H_MESSAGE, ''))}" for letter in await c.dead_letters()
    ]


async def status_bucket(js: nats.js.JetStreamContext) -> KeyValue:
    """The status bucket's handle; looking it up asks its stream's leader, which may be electing (ask again)."""
    with anyio.fail_after(60):
        while True:
            try:
                return await js.key_value(naming.STATUS_BUCKET)
            except (nats.errors.Error, TimeoutError):  # no leader yet: ServiceUnavailable, timeouts
                await anyio.sleep(0.2)


async def test_killing_the_stream_leader_under_load_loses_nothing_and_exits_nothing(
    nats_cluster: NatsCluster,
) -> None:
    await wait_for_jetstream(nats_cluster.url)
    settings = service_settings(nats_cluster.url, topology={"replicas": 3, "max_deliver": MAX_DELIVER})
    ids = [unique_id("lead") for _ in range(SANDBOXES)]
    nc = await nats.connect(servers=nats_cluster.url.split(","), max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = nc.jetstream()
        async with running_service(settings, MemoryApplier()) as service:
            for sid in ids[: SANDBOXES // 2]:
                await publish_until_stored(js, "create", sid, {"spec": spec(f"{sid}@acme.com", sessions=1)})
            leader = (await js.stream_info(naming.EVENTS_STREAM)).cluster
            assert leader is not None and leader.leader is not None
            killed = nats_cluster.index_of(leader.leader)
            nats_cluster.kill(killed)
            for sid in ids[SANDBOXES // 2 :]:
                await publish_until_stored(js, "create", sid, {"spec": spec(f"{sid}@acme.com", sessions=1)})
            last: dict[str, str] = {}
            for sid in ids:
                last[sid] = await publish_until_stored(js, "update", sid, {"spec": spec(f"{sid}@acme.com", sessions=3)})
            # The node comes back, as a pod would.
            nats_cluster.start_node(killed)
            kv = await status_bucket(js)

            async def status_of(sid: str) -> SandboxStatus | None:
                try:
                    entry = await kv.get(naming.status_key(sid))
                except Exception:  # noqa: BLE001 - not written yet, or the bucket is electing its leader
                    return None
                return SandboxStatus.model_validate_json(entry.value) if entry.value else None

            async def converged(sid: str) -> bool:
                """Ready on its last event. Not "generation 2": a create whose intake failed during the election
                is redelivered after its update may have been admitted (a new life at the update's sequence,
                generation 1), and then it is stale; the sandbox still ends on its last spec."""
                status = await status_of(sid)
                return status is not None and status.event_id == last[sid] and status.phase is Phase.READY

            async def stuck() -> list[str]:
                """Each sandbox not converged, with its status (phase, generation, last error, conditions)."""
                shown = []
                for sid in ids:
                    if not await converged(sid):
                        status = await status_of(sid)
                        shown.append(f"{sid}: {status.model_dump_json(exclude_defaults=True) if status else None}")
                return shown

            try:
                async with reported_on_stall(nats_cluster):
                    with anyio.fail_after(120):
                        for sid in ids:
                            while not await converged(sid):
                                await anyio.sleep(0.1)
            except TimeoutError:
                dead = await dead_letter_reasons(Client(nc, js))
                pytest.fail(f"not converged in 120 s: {await stuck()}; dead letters: {dead}")
            assert await dead_letter_reasons(Client(nc, js)) == []
            with anyio.fail_after(30):
                while not service.health.ready:
                    await anyio.sleep(0.1)
    finally:
        await nc.close()
