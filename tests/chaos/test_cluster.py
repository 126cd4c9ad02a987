"""(d) A 3-node NATS cluster at R3 (``SANDBOXD_STREAM_REPLICAS=3``): two replicas started at the same moment on a
fresh cluster (they race to create the topology while the cluster is still electing its leaders), then the
SANDBOX_EVENTS stream leader's node SIGKILLed in the middle of the load and started again later.

It proves: 0 process exits (topology creation is race-free, leader elections and "no stream response" are
transient), and nothing is lost: every sandbox ends on its last event and the consumer drains.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import nats.errors
import pytest
from nats.js.errors import BadRequestError

from integration.cli.sandboxd_processes import (
    ELECTING,
    Expectation,
    Services,
    wait_converged,
    wait_drained,
    wait_fetching,
)
from sandboxd import naming
from sandboxd.adapters.jetstream.stores import KvStore, open_bucket
from sandboxd.adapters.jetstream.topology import NO_PLACEMENT
from sandboxd.errors import StoreConflict
from sandboxd.models.status import Phase, SandboxStatus
from support.chaos import Figures, exits_fail_fast, publish_next, reconnecting_client, unexpected_exits
from support.nats_cluster import NatsCluster, reported_on_stall
from support.spine import Client, unique_id

pytestmark = [pytest.mark.chaos, pytest.mark.cluster, pytest.mark.anyio, pytest.mark.timeout(900)]

SANDBOXES = 50
ROUNDS = 20  # 1,000 events


async def stream_leader(c: Client) -> str:
    with anyio.fail_after(60):
        while True:
            try:
                info = await c.js.stream_info(naming.EVENTS_STREAM)
            except (nats.errors.Error, TimeoutError):  # no leader yet (ServiceUnavailable, timeouts): ask again
                info = None
            if info is not None and info.cluster is not None and info.cluster.leader:
                return str(info.cluster.leader)
            await anyio.sleep(0.2)


def status(phase: Phase) -> SandboxStatus:
    return SandboxStatus(sandbox_id="sb-1", phase=phase, updated_at=datetime.now(UTC))


async def test_an_r3_bucket_is_read_from_its_leader(nats_cluster: NatsCluster) -> None:
    """A direct get at R3 may be answered by a follower that lags behind the leader, for as long as it lags; every
    read the service makes decides something (a compare-and-set's revision, whether a newer desired state came
    while a pass applied), so a replicated bucket is read from its leader, and reads what the leader holds. A lost
    compare-and-set race is a conflict whichever words the cluster's leader uses for it (10071 or 10164)."""
    nc = await reconnecting_client(nats_cluster.url)
    try:
        js = nc.jetstream()
        bucket = unique_id("kv")
        with anyio.fail_after(60):
            while True:
                try:
                    await js.create_key_value(bucket=bucket, direct=True, replicas=3)
                    break
                except ELECTING:  # a fresh cluster elects its meta leader first
                    await anyio.sleep(0.2)
                except BadRequestError as exc:  # ... and learns its peers: until then, no placement for R3
                    if exc.err_code != NO_PLACEMENT:
                        raise
                    await anyio.sleep(0.2)
        assert not (await open_bucket(js, bucket))._direct
        store = await KvStore.open(js, bucket, SandboxStatus)
        assert await store.get("sb-1") is None
        first = await store.put("sb-1", status(Phase.PENDING), revision=None)
        second = await store.put("sb-1", status(Phase.READY), revision=first)
        got = await store.get("sb-1")
        assert got is not None and (got.revision, got.value.phase) == (second, Phase.READY)
        for stale in (first, None):  # a lost race (and a create onto a record) is a conflict, never a refusal
            with pytest.raises(StoreConflict):
                await store.put("sb-1", status(Phase.FAILED), revision=stale)

        async def race() -> int | StoreConflict:  # the leader refuses the losers with 10164 while one is in flight
            try:
                return await store.put("sb-1", status(Phase.FAILED), revision=second)
            except StoreConflict as lost:
                return lost

        raced = await asyncio.gather(*(race() for _ in range(5)))
        assert sum(isinstance(outcome, int) for outcome in raced) == 1, raced
        await store.delete("sb-1")
        assert await store.get("sb-1") is None
    finally:
        await nc.close()


async def test_r3_cluster_replicas_racing_at_start_and_the_stream_leader_killed(
    nats_cluster: NatsCluster, tmp_path: Path, figures: Figures
) -> None:
    services = Services(nats_cluster.url, tmp_path / "rendered", tmp_path, {"SANDBOXD_STREAM_REPLICAS": "3"})
    wants = [Expectation(unique_id("r3"), f"r3{n}@acme.com") for n in range(SANDBOXES)]
    try:
        started = time.monotonic()
        services.start()  # both at once, on a cluster that has not elected its JetStream leaders yet
        services.start()
        nc = await reconnecting_client(nats_cluster.url)
        c = Client(nc, nc.jetstream())
        try:
            async with exits_fail_fast(services.started), reported_on_stall(nats_cluster):
                await wait_fetching(c.js, services=2, timeout=120)
                figures["both_fetching_s"] = time.monotonic() - started
                info = await c.js.stream_info(naming.EVENTS_STREAM)
                assert info.config.num_replicas == 3
                for round_ in range(ROUNDS):
                    if round_ == ROUNDS // 2:
                        leader = await stream_leader(c)
                        nats_cluster.kill(nats_cluster.index_of(leader))
                        killed_at, figures["killed_leader"] = time.monotonic(), leader
                    for want in wants:
                        await publish_next(c, want, 1 + round_ % 4, figures=figures)
                figures["new_leader"] = await stream_leader(c)
                nats_cluster.start_node(nats_cluster.index_of(figures["killed_leader"]))
                await wait_converged(c, tmp_path / "rendered", wants, timeout=300, logs=services.logs)
                figures["converged_after_kill_s"] = time.monotonic() - killed_at
                await wait_drained(c.js, timeout=120)
            figures["lost"] = 0
        finally:
            with anyio.CancelScope(shield=True):
                await nc.close()
    finally:
        figures["exits"] = len(unexpected_exits(services.started, killed=set()))
        services.stop_all()
    assert figures["exits"] == 0
