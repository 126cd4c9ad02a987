"""A 3-node NATS cluster at R3: the SANDBOX_EVENTS leader's node is SIGKILLed under load (and restarted once
every event is stored), and nothing exits.

The service runs in-process on the cluster (every node's URL). Events are published before, during and after
the kill (a publish the election interrupts is published again: ``Nats-Msg-Id`` dedupes it). Every sandbox
must end on its last spec; the service's task must still be running and ready again afterwards.
"""

from __future__ import annotations

import anyio
import nats
import pytest

from sandboxd import naming
from sandboxd.adapters.jetstream.publishing import publish_event
from sandboxd.adapters.memory import MemoryApplier
from sandboxd.errors import BrokerUnavailable
from sandboxd.models.status import Phase, SandboxStatus
from support.nats_cluster import NatsCluster, wait_for_jetstream
from support.spine import event, running_service, service_settings, spec, unique_id

# A chaos scenario, not a regular test: at R3 on a loopback cluster starved of CPU, nats-server has been seen to
# leave a KV bucket without a leader for minutes (3 of 14 runs on 2026-12-03, with the killed node back or not).
pytestmark = [pytest.mark.chaos, pytest.mark.cluster, pytest.mark.anyio, pytest.mark.timeout(600)]

SANDBOXES = 30


async def publish_until_stored(
    js: nats.js.JetStreamContext, verb: str, sandbox_id: str, data: dict[str, object]
) -> None:
    envelope = event(verb, sandbox_id, data)
    with anyio.fail_after(60):
        while True:
            try:
                await publish_event(js, envelope)
                return
            except BrokerUnavailable:  # the election: publish again (Nats-Msg-Id dedupes a stored one)
                await anyio.sleep(0.2)


async def test_killing_the_stream_leader_under_load_loses_nothing_and_exits_nothing(
    nats_cluster: NatsCluster,
) -> None:
    await wait_for_jetstream(nats_cluster.url)
    settings = service_settings(nats_cluster.url, topology={"replicas": 3})
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
            for sid in ids:
                await publish_until_stored(js, "update", sid, {"spec": spec(f"{sid}@acme.com", sessions=3)})
            # The node comes back, as a pod would. Without it, a loopback cluster starved of CPU has been seen to
            # leave one R3 bucket without a leader for minutes on its two survivors (nats-server's raft, not us).
            nats_cluster.start_node(killed)
            kv = await js.key_value(naming.STATUS_BUCKET)

            async def converged(sid: str) -> bool:
                try:
                    entry = await kv.get(naming.status_key(sid))
                except Exception:  # noqa: BLE001 - not written yet, or the bucket is electing its leader
                    return False
                if not entry.value:
                    return False
                status = SandboxStatus.model_validate_json(entry.value)
                return status.observed_generation == 2 and status.phase is Phase.READY

            with anyio.fail_after(120):
                for sid in ids:
                    while not await converged(sid):
                        await anyio.sleep(0.1)
            with anyio.fail_after(30):
                while not service.health.ready:
                    await anyio.sleep(0.1)
    finally:
        await nc.close()
