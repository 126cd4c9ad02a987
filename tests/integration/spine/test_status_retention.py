"""Status records expire on a real nats-server: Deleted and never-created Rejected records leave the projection
after ``SANDBOXD_STATUS_RETENTION_SECONDS`` (per-message TTL, no sweep), live ones stay, a re-create in time is
kept, and ``sandboxd init`` gives a bucket made without TTL support the TTL and delete markers.

Each wait is on a condition. "Stays" is shown against a record written later and already expired: a record
that would expire too (same retention, earlier write) would be gone by then.
"""

from __future__ import annotations

import anyio
import pytest
from nats.js import api

from sandboxd import naming
from sandboxd.adapters.directory import DirectoryApplier
from sandboxd.adapters.jetstream.topology import STATUS_MARKER_TTL_S, ensure_topology
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.models.status import Phase
from sandboxd.settings import TopologySettings
from support.spine import Client, client, running_service, service_settings, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]
RETENTION_S = 2.0
#: Short enough that no redelivery outlives the retention (the settings refuse anything else).
TOPOLOGY = {"status_retention_s": RETENTION_S, "ack_wait_s": 1.0, "max_deliver": 2}
WORKER = {"retry_cap_s": 1.0}


async def wait_gone(c: Client, sandbox_id: str, *, timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        while await c.status(sandbox_id) is not None:
            await anyio.sleep(0.1)


async def test_deleted_and_rejected_records_expire_and_live_ones_stay(
    fresh_nats_server: NatsServer, tmp_path: anyio.Path
) -> None:
    live, doomed, never = unique_id("live"), unique_id("gone"), unique_id("never")
    settings = service_settings(fresh_nats_server.url, topology=TOPOLOGY, worker=WORKER)
    async with client(fresh_nats_server.url) as c, running_service(settings, DirectoryApplier(tmp_path)):
        await c.create(live, "live@acme.com")
        await c.wait_status(live, lambda s: s.phase is Phase.PROVISIONING)
        await c.create(doomed, "doomed@acme.com")
        await c.wait_status(doomed, lambda s: s.phase is Phase.PROVISIONING)
        await c.publish("delete", doomed, {"purge": True})
        await c.wait_status(doomed, lambda s: s.phase is Phase.DELETED)
        await c.publish("delete", never)  # an id that was never created: Rejected
        await c.wait_status(never, lambda s: s.phase is Phase.REJECTED)

        kv = await c.js.key_value(naming.STATUS_BUCKET)
        watcher = await kv.watch(naming.status_key(doomed), include_history=False)
        await wait_gone(c, doomed)
        await wait_gone(c, never)
        with anyio.fail_after(10):  # a console watching the key is told (the server's marker reads as a delete)
            async for entry in watcher:
                if entry is not None and entry.operation in ("DEL", "PURGE"):
                    break
        await watcher.stop()
        kept = await c.status(live)
        assert kept is not None and kept.phase is Phase.PROVISIONING  # written before both, still there

        # the sandbox id is unknown again: a create starts a new life at generation 1, a later incarnation
        await c.create(doomed, "doomed@acme.com")
        again = await c.wait_status(doomed, lambda s: s.phase is Phase.PROVISIONING)
        assert again.observed_generation == 1 and again.incarnation > 0


async def test_a_re_create_before_expiry_is_kept(fresh_nats_server: NatsServer, tmp_path: anyio.Path) -> None:
    sid, clock = unique_id("again"), unique_id("clock")
    settings = service_settings(fresh_nats_server.url, topology=TOPOLOGY, worker=WORKER)
    async with client(fresh_nats_server.url) as c, running_service(settings, DirectoryApplier(tmp_path)):
        await c.create(sid, "again@acme.com")
        await c.wait_status(sid, lambda s: s.phase is Phase.PROVISIONING)
        await c.publish("delete", sid)
        await c.wait_status(sid, lambda s: s.phase is Phase.DELETED)
        await c.create(sid, "again@acme.com", sessions=3)
        reborn = await c.wait_status(sid, lambda s: s.phase is Phase.PROVISIONING and s.observed_generation == 3)

        # a tombstone written after the re-create expires: the Deleted record the re-create replaced had its
        # TTL run out before that, and the re-created record is still there
        await c.publish("delete", clock)
        await c.wait_status(clock, lambda s: s.phase is Phase.REJECTED)
        await wait_gone(c, clock)
        kept = await c.status(sid)
        assert kept is not None
        assert (kept.incarnation, kept.observed_generation, kept.phase) == (reborn.incarnation, 3, Phase.PROVISIONING)


async def test_init_gives_an_older_status_bucket_ttl_and_delete_markers(fresh_nats_server: NatsServer) -> None:
    async with client(fresh_nats_server.url) as c:
        stream = f"KV_{naming.STATUS_BUCKET}"
        # the bucket as an earlier release made it: a KV stream without per-message TTL
        await c.js.add_stream(
            api.StreamConfig(
                name=stream,
                subjects=[f"$KV.{naming.STATUS_BUCKET}.>"],
                max_msgs_per_subject=5,
                allow_rollup_hdrs=True,
                deny_delete=True,
                allow_direct=True,
                discard=api.DiscardPolicy.NEW,
            )
        )
        assert not (await c.js.stream_info(stream)).config.allow_msg_ttl
        await ensure_topology(c.js, TopologySettings())
        config = (await c.js.stream_info(stream)).config
        assert config.allow_msg_ttl
        assert config.subject_delete_marker_ttl == STATUS_MARKER_TTL_S  # the default retention is longer
        assert config.max_msgs_per_subject == 5  # the rest kept as it was
