"""``KvStore`` on a real nats-server: compare-and-set, and what it remembers between calls."""

from __future__ import annotations

from datetime import UTC, datetime

import nats
import pytest

from sandboxd.adapters.jetstream.stores import KvStore
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.errors import StoreConflict
from sandboxd.models.status import Phase, SandboxStatus
from support.spine import unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def record(phase: Phase) -> SandboxStatus:
    return SandboxStatus(sandbox_id="sb-1", phase=phase, updated_at=NOW)


async def test_two_processes_views_of_one_bucket(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(bucket=unique_id("kv"))
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
