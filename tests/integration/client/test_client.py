"""``sandboxd.client`` against a real nats-server and an in-process sandboxd: what a platform service relies on.

Idempotent event ids, the kubectl-like existence checks (and ``force``), typed reads, and ``wait_for``
returning at the status that settles an event, failing fast when the event is refused, timing out otherwise.
"""

from __future__ import annotations

from contextlib import aclosing
from datetime import UTC, datetime

import anyio
import nats
import pytest

from sandboxd import naming
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.memory import MemoryApplier
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.client import (
    AVAILABLE,
    DELETED,
    SUSPENDED,
    AlreadyExists,
    NotFound,
    SandboxClient,
    SandboxFailed,
    StatusUnreadable,
    WaitTimedOut,
    event_id_for,
    settled,
)
from sandboxd.errors import BrokerUnavailable, InvalidEvent
from sandboxd.models.status import Phase, SandboxStatus
from sandboxd.settings import TopologySettings
from support.spine import running_service, service_settings, spec, status_bucket, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


async def test_a_lifecycle_through_the_client_settles_at_each_step(nats_server: NatsServer) -> None:
    url, sid = nats_server.url, unique_id("cl")
    async with running_service(service_settings(url), MemoryApplier()), SandboxClient.connect(url) as sandboxes:
        created = await sandboxes.create(sid, spec("client@acme.com", sessions=2))
        ready = await sandboxes.wait_for(sid, settled(created), timeout=20)
        assert ready is not None and ready.phase is Phase.READY and ready.observed_sequence >= created.sequence
        assert (await sandboxes.get(sid)).replicas == ready.replicas

        updated = await sandboxes.update(sid, spec("client@acme.com", sessions=3))
        after = await sandboxes.wait_for(sid, settled(updated), timeout=20)
        assert after is not None and after.replicas is not None and after.replicas.desired == 3

        await sandboxes.wait_for(sid, settled(await sandboxes.suspend(sid, reason="billing")), timeout=20)
        assert SUSPENDED(await sandboxes.get(sid))
        await sandboxes.wait_for(sid, settled(await sandboxes.resume(sid)), timeout=20)
        assert AVAILABLE(await sandboxes.get(sid))

        gone = await sandboxes.wait_for(sid, settled(await sandboxes.delete(sid, purge=True)), timeout=20)
        assert DELETED(gone)
        assert sid not in [s.sandbox_id for s in await sandboxes.list(gone=False)]
        assert sid in [s.sandbox_id for s in await sandboxes.list(phases={Phase.DELETED})]


async def test_the_same_event_id_is_stored_once(nats_server: NatsServer) -> None:
    url, sid = nats_server.url, unique_id("cl")
    event_id = event_id_for("create", sid, "request-42")
    assert event_id == event_id_for("create", sid, "request-42") != event_id_for("create", sid, "request-43")
    async with SandboxClient.connect(url) as sandboxes:  # no service: nothing consumes, the stream remembers
        first = await sandboxes.create(sid, spec("dedupe@acme.com"), event_id=event_id, force=True)
        again = await sandboxes.create(sid, spec("dedupe@acme.com"), event_id=event_id, force=True)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.sequence == first.sequence and again.event_id == event_id


async def test_existence_checks_refuse_typos_and_force_publishes_anyway(nats_server: NatsServer) -> None:
    url, sid, typo = nats_server.url, unique_id("cl"), unique_id("typo")
    async with running_service(service_settings(url), MemoryApplier()), SandboxClient.connect(url) as sandboxes:
        for verb in (sandboxes.delete, sandboxes.suspend, sandboxes.resume):
            with pytest.raises(NotFound, match=f"sandbox {typo} not found"):
                await verb(typo)
        with pytest.raises(NotFound):
            await sandboxes.update(typo, spec("typo@acme.com"))
        assert await sandboxes.find(typo) is None  # nothing was published: no Rejected row

        await sandboxes.wait_for(sid, settled(await sandboxes.create(sid, spec("exists@acme.com"))), timeout=20)
        with pytest.raises(AlreadyExists, match="use update"):
            await sandboxes.create(sid, spec("exists@acme.com"))

        forced = await sandboxes.suspend(typo, force=True)  # sandboxd refuses it: the wait says why at once
        with pytest.raises(SandboxFailed, match=r"was refused: InvalidEvent: .*needs a create first"):
            await sandboxes.wait_for(typo, settled(forced), timeout=20)
        with pytest.raises(NotFound, match="it is Rejected"):
            await sandboxes.resume(typo)


async def test_a_wait_times_out_with_the_last_status_and_specs_are_checked_before_publishing(
    nats_server: NatsServer,
) -> None:
    url, sid = nats_server.url, unique_id("cl")
    async with SandboxClient.connect(url) as sandboxes:
        with pytest.raises(InvalidEvent, match=r"spec\.quota\.cpu"):
            await sandboxes.create(sid, spec("bad@acme.com") | {"quota": {"cpu": "lots", "memory": "1Gi"}})
        with pytest.raises(WaitTimedOut, match=f"sandbox {sid}: .* did not hold within 0.5s \\(it has no status\\)"):
            await sandboxes.wait_for(sid, AVAILABLE, timeout=0.5)
        assert await sandboxes.wait_for(sid, DELETED, timeout=5) is None  # no record: already gone


async def test_connecting_to_nothing_gives_up_within_the_timeout() -> None:
    with (
        anyio.fail_after(10),
        pytest.raises(BrokerUnavailable, match=r"cannot connect to NATS at nats://127\.0\.0\.1:1"),
    ):
        async with SandboxClient.connect("nats://127.0.0.1:1", timeout=1):
            pass


async def test_a_create_waits_for_ready_pods_where_the_applier_observes_them(nats_server: NatsServer) -> None:
    url, sid = nats_server.url, unique_id("cl")
    applier = MemoryApplier(ready=False)  # applied, its session pods still starting
    async with running_service(service_settings(url), applier), SandboxClient.connect(url) as sandboxes:
        created = await sandboxes.create(sid, spec("pods@acme.com", sessions=2))
        with pytest.raises(WaitTimedOut, match=r"\(it is Provisioning, Ready=False ReplicasNotReady: 0/2 session pods"):
            await sandboxes.wait_for(sid, settled(created), timeout=3)
        applied = await sandboxes.get(sid)
        assert applied.phase is Phase.PROVISIONING and not AVAILABLE(applied)

        applier.ready = True  # the pods came up; the next reconcile (here an update) observes it
        await sandboxes.update(sid, spec("pods@acme.com", sessions=2))
        ready = await sandboxes.wait_for(sid, settled(created), timeout=20)
        assert ready is not None and ready.phase is Phase.READY and AVAILABLE(ready)


async def test_one_unreadable_status_record_hides_no_other_sandbox(
    fresh_nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A record this client cannot parse (a newer sandboxd's, a corrupt one) is refused when asked for by id, but
    a list skips it and a watch goes on past it, each with a warning: one bad key hides nothing else."""
    url = fresh_nats_server.url
    async with status_bucket(url) as kv:
        good = SandboxStatus(sandbox_id="ok1", phase=Phase.READY, updated_at=datetime(2026, 12, 3, tzinfo=UTC))
        await kv.put(naming.status_key("ok1"), good.to_json())
        await kv.put(naming.status_key("wx"), b'{"phase":"Ready"}')
        async with SandboxClient.connect(url) as sandboxes:
            assert [s.sandbox_id for s in await sandboxes.list()] == ["ok1"]
            assert "skipped the status record 'wx'" in caplog.text
            with pytest.raises(StatusUnreadable):
                await sandboxes.get("wx")

            seen: list[str] = []
            with anyio.fail_after(20):
                async with aclosing(sandboxes.watch()) as changes:
                    async for change in changes:
                        if change is None:  # the current state is in: now a bad write, then a good one
                            await kv.put(naming.status_key("wx"), b"not json")
                            await kv.put(
                                naming.status_key("ok1"), good.model_copy(update={"phase": Phase.IDLE}).to_json()
                            )
                            continue
                        seen.append(f"{change.sandbox_id}:{change.status.phase if change.status else None}")
                        if change.status is not None and change.status.phase is Phase.IDLE:
                            break
            assert seen == ["ok1:Ready", "ok1:Idle"]


async def test_a_program_hears_of_each_unreadable_record_by_key_and_a_wait_never_takes_one_for_none(
    fresh_nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``on_unreadable`` gets a ``StatusUnreadable`` per skipped value (its key and revision, nothing of the value)
    instead of the logged warning, and may raise it to fail the read; a wait for "no record" does not hold on a
    record it cannot read."""
    url = fresh_nats_server.url
    async with status_bucket(url) as kv:
        good = SandboxStatus(sandbox_id="ok1", phase=Phase.READY, updated_at=datetime(2026, 12, 3, tzinfo=UTC))
        await kv.put(naming.status_key("ok1"), good.to_json())
        bad_revision = await kv.put(naming.status_key("wx"), b'{"not":"a status"}')
        async with SandboxClient.connect(url) as sandboxes:
            heard: list[StatusUnreadable] = []
            assert [s.sandbox_id for s in await sandboxes.list(on_unreadable=heard.append)] == ["ok1"]
            assert [(u.sandbox_id, u.revision) for u in heard] == [("wx", bad_revision)]
            assert "a status" not in heard[0].message and "skipped" not in caplog.text

            def strict(unreadable: StatusUnreadable) -> None:
                raise unreadable

            with pytest.raises(StatusUnreadable) as refused:
                await sandboxes.list(on_unreadable=strict)
            assert refused.value.sandbox_id == "wx"

            heard.clear()
            fixed = good.model_copy(update={"sandbox_id": "wx"})
            with anyio.fail_after(20):
                async with aclosing(sandboxes.watch("wx", on_unreadable=heard.append)) as changes:
                    async for change in changes:
                        if change is None:
                            assert [u.revision for u in heard] == [bad_revision]
                            await kv.put(naming.status_key("wx"), b"\xff\x00 not json")
                            await kv.put(naming.status_key("wx"), fixed.to_json())
                            continue
                        assert change.status is not None and change.status.sandbox_id == "wx"
                        break
            assert [u.sandbox_id for u in heard] == ["wx", "wx"]

            await kv.put(naming.status_key("wx"), b"garbage")
            with pytest.raises(WaitTimedOut, match="its status record is unreadable"):
                await sandboxes.wait_for("wx", DELETED, timeout=2)  # a record is there: it is not gone


async def test_a_watch_follows_changes_at_once_after_the_server_restarts(
    fresh_nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """After a reconnect the watch starts again at once (not when nats-py notices its consumer's missed heartbeats,
    10-20 s later), and yields only what changed meanwhile: nothing twice, nor warns twice of an unreadable record."""
    url = fresh_nats_server.url
    at = datetime(2026, 12, 3, tzinfo=UTC)
    records = {sid: SandboxStatus(sandbox_id=sid, phase=Phase.READY, updated_at=at) for sid in ("w1", "w2")}
    async with SandboxClient.connect(url, reconnect=True) as sandboxes, aclosing(sandboxes.watch()) as changes:
        with anyio.fail_after(10):
            js = sandboxes.nc.jetstream()
            await ensure_topology(js, TopologySettings())
            kv = await js.key_value(naming.STATUS_BUCKET)
            await kv.put(naming.status_key("wx"), b"not a status")
            for sid, record in records.items():
                await kv.put(naming.status_key(sid), record.to_json())
            seen = [await anext(changes) for _ in range(3)]  # w1, w2 and the marker, in some order
        assert sorted(c.sandbox_id for c in seen if c is not None) == ["w1", "w2"]

        fresh_nats_server.stop()
        fresh_nats_server.start()
        with anyio.fail_after(8):  # well inside the 10-20 s nats-py's own recovery takes
            while True:
                try:
                    await kv.put(
                        naming.status_key("w2"), records["w2"].model_copy(update={"phase": Phase.IDLE}).to_json()
                    )
                    break
                except (nats.errors.Error, TimeoutError):  # not reconnected yet
                    await anyio.sleep(0.2)
            after = await anext(changes)
        assert after is not None and after.sandbox_id == "w2"  # not w1 again: it did not change
        assert after.status is not None and after.status.phase is Phase.IDLE
        with anyio.fail_after(8):  # a change after every current record of the restarted watch (wx among them)
            await kv.put(naming.status_key("w1"), records["w1"].model_copy(update={"phase": Phase.IDLE}).to_json())
            last = await anext(changes)
        assert last is not None and last.sandbox_id == "w1"
        assert caplog.text.count("skipped the status record 'wx'") == 1, caplog.text
