"""``sandboxd init`` and service start-ups on a real nats-server: idempotent, race-free, and replicas move.

Two replicas started together on a fresh server (or a fresh 3-node cluster) both succeed: the one that loses
a create race updates what the other created. ``init`` at R3 after R1 moves the streams and the KV buckets.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import nats
import pytest

from sandboxd import naming
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.settings import TopologySettings
from support.nats_cluster import NatsCluster, wait_for_jetstream

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

SANDBOXD = str(Path(sys.executable).parent / "sandboxd")
BUCKETS = (naming.DESIRED_BUCKET, naming.STATUS_BUCKET, naming.OWNERS_BUCKET)
STREAMS = (naming.EVENTS_STREAM, naming.DLQ_STREAM, naming.ADVISORY_STREAM, naming.ACTIVITY_STREAM, naming.SCALE_STREAM)


def init_at_once(url: str, *, replicas: int, copies: int = 2) -> list[subprocess.CompletedProcess[str]]:
    """``copies`` ``sandboxd init`` processes started together; each one's exit code and output."""
    env = {**os.environ, "NATS_URL": url, "SANDBOXD_STREAM_REPLICAS": str(replicas)}
    procs = [
        subprocess.Popen([SANDBOXD, "init"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(copies)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


async def replicas_of(url: str) -> dict[str, int]:
    nc = await nats.connect(servers=url.split(","))
    try:
        js = nc.jetstream()
        names = [*STREAMS, *(f"KV_{bucket}" for bucket in BUCKETS)]
        return {name: int((await js.stream_info(name)).config.num_replicas or 1) for name in names}
    finally:
        await nc.close()


async def test_two_inits_at_once_on_a_fresh_server_both_succeed(fresh_nats_server: NatsServer) -> None:
    results = await anyio.to_thread.run_sync(lambda: init_at_once(fresh_nats_server.url, replicas=1, copies=3))
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert set((await replicas_of(fresh_nats_server.url)).values()) == {1}


async def test_start_ups_racing_in_one_process_both_succeed(fresh_nats_server: NatsServer) -> None:
    clients = [await nats.connect(fresh_nats_server.url) for _ in range(4)]
    try:
        async with anyio.create_task_group() as tg:
            for nc in clients:
                tg.start_soon(ensure_topology, nc.jetstream(), TopologySettings())
        info = await clients[0].jetstream().consumer_info(naming.EVENTS_STREAM, naming.EVENTS_CONSUMER)
        assert info.config.durable_name == naming.EVENTS_CONSUMER
    finally:
        for nc in clients:
            await nc.close()


async def test_init_at_r1_then_r3_then_r1_moves_streams_and_buckets(
    nats_cluster: NatsCluster,
) -> None:
    await wait_for_jetstream(nats_cluster.url)
    results = await anyio.to_thread.run_sync(lambda: init_at_once(nats_cluster.url, replicas=1))
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert set((await replicas_of(nats_cluster.url)).values()) == {1}
    [moved] = await anyio.to_thread.run_sync(lambda: init_at_once(nats_cluster.url, replicas=3, copies=1))
    assert moved.returncode == 0, moved.stderr
    assert set((await replicas_of(nats_cluster.url)).values()) == {3}
    [back] = await anyio.to_thread.run_sync(lambda: init_at_once(nats_cluster.url, replicas=1, copies=1))
    assert back.returncode == 0, back.stderr
    assert set((await replicas_of(nats_cluster.url)).values()) == {1}


async def test_two_inits_at_once_on_a_fresh_cluster_at_r3_both_succeed(nats_cluster: NatsCluster) -> None:
    # No waiting for the meta leader: the inits themselves must wait for it.
    results = await anyio.to_thread.run_sync(lambda: init_at_once(nats_cluster.url, replicas=3))
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert set((await replicas_of(nats_cluster.url)).values()) == {3}
