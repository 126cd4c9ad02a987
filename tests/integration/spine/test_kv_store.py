"""``KvStore`` on a real nats-server: compare-and-set, what it remembers between calls, and its lean request path
(one shared reply inbox) through a server restart and against a bucket that is gone."""

from __future__ import annotations

import gc
import weakref
from datetime import UTC, datetime
from pathlib import Path

import anyio
import nats
import pytest

from sandboxd.adapters.jetstream.connection import connect
from sandboxd.adapters.jetstream.stores import KvStore, open_bucket
from sandboxd.adapters.natsserver import NatsServer, free_port
from sandboxd.errors import BrokerUnavailable, StoreConflict
from sandboxd.models.status import Phase, SandboxStatus
from sandboxd.settings import NatsSettings
from support.spine import unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def record(phase: Phase) -> SandboxStatus:
    return SandboxStatus(sandbox_id="sb-1", phase=phase, updated_at=NOW)


async def test_two_processes_views_of_one_bucket(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(bucket=unique_id("kv"), direct=True)
        mine, theirs = KvStore(kv, SandboxStatus), KvStore(kv, SandboxStatus)

        first = await mine.put("sb-1", record(Phase.PENDING), revision=None)
        assert mine.recent("sb-1") is not None and mine.recent("sb-1").revision == first  # type: ignore[union-attr]
        assert theirs.recent("sb-1") is None  # remembered per process, never shared

        got = await theirs.get("sb-1")
        assert got is not None and got.value.phase is Phase.PENDING
        second = await theirs.put("sb-1", record(Phase.READY), revision=got.revision)

        # this process still remembers the first revision: a write from that memory fails and forgets it
        with pytest.raises(StoreConflict):
            await mine.put("sb-1", record(Phase.FAILED), revision=first)
        assert mine.recent("sb-1") is None
        fresh = await mine.get("sb-1")
        assert fresh is not None and (fresh.revision, fresh.value.phase) == (second, Phase.READY)

        # a revision it already holds is not parsed again: the very same record comes back
        assert await mine.get("sb-1") is fresh
        assert mine.decode("sb-1", b"not parsed", second) is fresh

        await theirs.delete("sb-1")
        assert await mine.get("sb-1") is None and mine.recent("sb-1") is None
    finally:
        await nc.close()


async def test_an_older_revision_read_late_never_replaces_the_newer_one_remembered(nats_server: NatsServer) -> None:
    """A read answered late (a watch entry, a lagging replica) must not take a process back: a pass that starts
    from the remembered record would apply the older state and settle the newer event as done."""
    nc = await nats.connect(nats_server.url)
    try:
        kv = await nc.jetstream().create_key_value(bucket=unique_id("kv"), direct=True)
        store = KvStore(kv, SandboxStatus)
        first = await store.put("sb-1", record(Phase.PENDING), revision=None)
        second = await store.put("sb-1", record(Phase.READY), revision=first)

        late = store.decode("sb-1", record(Phase.PENDING).to_json(), first)
        assert late.value.phase is Phase.PENDING  # the caller gets what it read
        remembered = store.recent("sb-1")
        assert remembered is not None and (remembered.revision, remembered.value.phase) == (second, Phase.READY)
    finally:
        await nc.close()


async def test_a_single_replica_bucket_is_read_directly(nats_server: NatsServer) -> None:
    """Its one replica is its leader, so a direct get is current (a replicated bucket: tests/chaos/test_cluster)."""
    nc = await nats.connect(nats_server.url)
    try:
        single = unique_id("kv")
        await nc.jetstream().create_key_value(bucket=single, direct=True)
        assert (await open_bucket(nc.jetstream(), single))._direct
        store = await KvStore.open(nc.jetstream(), single, SandboxStatus)
        written = await store.put("sb-1", record(Phase.READY), revision=None)
        got = await store.get("sb-1")
        assert got is not None and got.revision == written
    finally:
        await nc.close()


async def test_keys_lists_every_key_that_holds_a_value(nats_server: NatsServer) -> None:
    """The resync's listing: read to the end of the watch's replay (``watching.ReplayEnd``), deletes left out."""
    nc = await nats.connect(nats_server.url)
    try:
        bucket = unique_id("kv")
        await nc.jetstream().create_key_value(bucket=bucket, direct=True, history=5)
        store = await KvStore.open(nc.jetstream(), bucket, SandboxStatus)
        assert await store.keys() == []
        for n in range(200):
            await store.put(f"sb-{n:03}", record(Phase.READY), revision=None)
        first = await store.get("sb-000")
        assert first is not None
        await store.put("sb-000", record(Phase.IDLE), revision=first.revision)
        await store.delete("sb-001")
        assert await store.keys() == [f"sb-{n:03}" for n in range(200) if n != 1]
    finally:
        await nc.close()


async def test_a_store_answers_again_once_the_connection_is_back_after_a_server_restart(tmp_path: Path) -> None:
    with NatsServer(store_dir=tmp_path / "nats", port=free_port()) as server:
        nc = await connect(NatsSettings(url=server.url))
        try:
            js = nc.jetstream()
            store = KvStore(await js.create_key_value(bucket="status", direct=True), SandboxStatus)
            first = await store.put("sb-1", record(Phase.PENDING), revision=None)

            server.restart()
            with anyio.fail_after(30):
                while not nc.is_connected:
                    await anyio.sleep(0.05)
                while True:  # the server may still be recovering its JetStream state: not ready is retryable
                    try:
                        got = await store.get("sb-1")
                        break
                    except BrokerUnavailable:
                        await anyio.sleep(0.1)
            # the reply inbox was subscribed again: reads and compare-and-set writes are answered
            assert got is not None and got.revision == first
            second = await store.put("sb-1", record(Phase.READY), revision=first)
            fresh = await KvStore(store._kv, SandboxStatus).get("sb-1")
            assert fresh is not None and (fresh.revision, fresh.value.phase) == (second, Phase.READY)
        finally:
            await nc.close()


async def test_a_bucket_removed_under_a_store_is_unavailable_at_once_not_a_timeout(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        bucket = unique_id("kv")
        store = KvStore(await js.create_key_value(bucket=bucket, direct=True), SandboxStatus, bucket=bucket)
        await store.put("sb-1", record(Phase.PENDING), revision=None)
        await js.delete_key_value(bucket)
        with anyio.fail_after(2):  # no responders answers at once; the request timeout is 5 s
            with pytest.raises(BrokerUnavailable, match=f"KV get {bucket}/sb-1"):
                await store.get("sb-1")
            with pytest.raises(BrokerUnavailable, match=f"KV put {bucket}/sb-2: no stream answered"):
                await store.put("sb-2", record(Phase.PENDING), revision=None)
    finally:
        await nc.close()


async def test_a_closed_connection_is_not_kept_alive_by_its_stores_reply_inbox(nats_server: NatsServer) -> None:
    """The shared reply inbox is per connection; once a connection is closed and dropped, nothing of it stays (a
    process that connects again, as the CLI, tests and benches do, must not keep every old connection's buffers)."""
    nc = await nats.connect(nats_server.url)
    kv = await nc.jetstream().create_key_value(bucket=unique_id("kv"), direct=True)
    store = KvStore(kv, SandboxStatus)
    await store.put("sb-1", record(Phase.PENDING), revision=None)
    assert (await store.get("sb-1")) is not None  # the lean path opened its inbox on this connection
    gone = weakref.ref(nc)
    await nc.close()
    del nc, kv, store
    gc.collect()
    assert gone() is None
