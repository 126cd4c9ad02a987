"""The idle sweeper's view of the desired-state bucket (``DesiredFeed``) on a real nats-server."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import nats
import pytest

from sandboxd.adapters.jetstream.activity import DesiredFeed
from sandboxd.adapters.jetstream.stores import KvStore
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.models.desired import DesiredState
from sandboxd.models.spec import SandboxSpec
from sandboxd.reconcile.ports import Versioned
from support.spine import spec, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def desired(sandbox_id: str, generation: int) -> DesiredState:
    return DesiredState(
        sandbox_id=sandbox_id,
        generation=generation,
        sequence=generation,
        event_id=f"e{generation}",
        spec=SandboxSpec.model_validate(spec(f"{sandbox_id}@acme.com")),
        owner_uid=f"{sandbox_id}-at-acme-com",
        accepted_at=NOW,
    )


async def test_the_feed_follows_writes_and_deletes_and_skips_what_does_not_parse(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    bucket = unique_id("desired")
    try:
        kv = await nc.jetstream().create_key_value(bucket=bucket)
        first = await kv.put("sb-a", desired("sb-a", 1).to_json())
        await kv.put("sb-b", b"{not json")
        feed = DesiredFeed(nc.jetstream(), records=KvStore(kv, DesiredState), bucket=bucket)
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed.run)
            with anyio.fail_after(5):
                while not feed.ready:
                    await anyio.sleep(0.01)
            assert [(r.value.sandbox_id, r.revision) for r in feed.snapshot()] == [("sb-a", first)]
            assert feed.ignored == 1

            # a record this process wrote is noted at once; the watch's older copy does not replace it
            noted = await kv.put("sb-a", desired("sb-a", 2).to_json())
            feed.note(Versioned(desired("sb-a", 2), noted))
            third = await kv.put("sb-c", desired("sb-c", 1).to_json())
            await kv.delete("sb-b")
            with anyio.fail_after(5):
                while {r.value.sandbox_id for r in feed.snapshot()} != {"sb-a", "sb-c"}:
                    await anyio.sleep(0.01)
            by_id = {r.value.sandbox_id: r for r in feed.snapshot()}
            assert (by_id["sb-a"].value.generation, by_id["sb-a"].revision) == (2, noted)
            assert by_id["sb-c"].revision == third

            await kv.delete("sb-a")
            with anyio.fail_after(5):
                while len(feed) != 1:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    finally:
        await nc.close()
