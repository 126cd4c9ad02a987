"""The service end to end on a real nats-server: events in, desired state, reconciles, status and dead letters."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import unquote

import anyio
import pytest

from sandboxd import naming
from sandboxd.adapters.memory import MemoryApplier
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.errors import ApplyRejected, ApplyUnavailable
from sandboxd.models.status import ConditionType, Phase
from sandboxd.reconcile.ports import ApplyResult
from sandboxd.render.model import RenderedSandbox
from support.spine import client, event, running_service, service_settings, spec, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


@dataclass
class CountingApplier(MemoryApplier):
    """Records how many applies ran at once and the replica counts applied, in order."""

    running: int = 0
    peak: int = 0
    history: list[tuple[str, int]] = field(default_factory=list)

    async def apply(self, sandbox: RenderedSandbox, *, generation: int) -> ApplyResult:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            result = await super().apply(sandbox, generation=generation)
        finally:
            self.running -= 1
        self.history.append((sandbox.sandbox_id, sandbox.replicas))
        return result


async def test_create_becomes_ready_and_status_is_a_plain_kv_record(fresh_nats_server: NatsServer) -> None:
    applier = MemoryApplier()
    sid = unique_id()
    async with client(fresh_nats_server.url) as c, running_service(service_settings(fresh_nats_server.url), applier):
        await c.create(sid, "ceo@acme.com", sessions=3, repos=["acme/eventforge"])
        status = await c.wait_status(sid, lambda s: s.phase is Phase.READY)
    assert status.namespace == "sandbox-ceo-at-acme-com"
    assert status.endpoint == "https://sandbox.omantel.omani.works/sessions/ceo-at-acme-com/"
    assert status.replicas is not None and status.replicas.desired == 3
    assert status.observed_generation == 1
    kinds = {ref.kind for ref in status.applied_objects}
    assert {"Namespace", "StatefulSet", "Service", "HTTPRoute", "PersistentVolumeClaim"} <= kinds
    ready = status.condition(ConditionType.READY)
    assert ready is not None and ready.status == "True"
    assert set(status.timings_ms) >= {"read", "render", "apply"}


async def test_events_for_one_sandbox_coalesce_and_end_at_the_last(fresh_nats_server: NatsServer) -> None:
    applier = CountingApplier(delay_s=0.2)
    sid = unique_id()
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c, running_service(settings, applier) as service:
        await c.create(sid, "coalesce@acme.com", sessions=1)
        for sessions in range(2, 11):
            await c.publish("update", sid, {"spec": spec("coalesce@acme.com", sessions=sessions)})
        status = await c.wait_status(sid, lambda s: s.observed_generation == 10 and s.phase is Phase.READY)
        assert service.queue is not None
        passes = service.queue.stats.passes
    assert status.replicas is not None and status.replicas.desired == 10
    assert applier.history[-1] == (sid, 10)
    assert passes < 10, f"{passes} reconciles for 10 events: they did not coalesce"
    # one at a time per sandbox, and replica counts never go backwards
    assert applier.peak == 1
    counts = [n for _, n in applier.history]
    assert counts == sorted(counts)


async def test_sandboxes_reconcile_in_parallel(fresh_nats_server: NatsServer) -> None:
    applier = CountingApplier(delay_s=0.3)
    settings = service_settings(fresh_nats_server.url, worker={"concurrency": 4})
    ids = [unique_id() for _ in range(8)]
    async with client(fresh_nats_server.url) as c, running_service(settings, applier):
        for n, sid in enumerate(ids):
            await c.create(sid, f"user{n}@acme.com")
        for sid in ids:
            await c.wait_status(sid, lambda s: s.phase is Phase.READY)
    assert applier.peak == 4  # the global limit, reached and never exceeded


async def test_republished_event_is_deduplicated(fresh_nats_server: NatsServer) -> None:
    applier = CountingApplier()
    sid = unique_id()
    async with client(fresh_nats_server.url) as c, running_service(service_settings(fresh_nats_server.url), applier):
        first = await c.publish("create", sid, {"spec": spec("dup@acme.com")}, event_id="evt-once")
        second = await c.publish("create", sid, {"spec": spec("dup@acme.com")}, event_id="evt-once")
        status = await c.wait_status(sid, lambda s: s.phase is Phase.READY)
    assert first == second
    assert status.observed_generation == 1


async def test_poison_messages_are_dead_lettered_and_rejected(fresh_nats_server: NatsServer) -> None:
    sid = unique_id()
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c, running_service(settings, MemoryApplier()):
        await c.publish_raw(naming.event_subject("create", sid), b"not-json{")
        await c.publish_raw("sandbox.create.Not_A_Valid_Id", b"{}")
        other = unique_id()
        body = event("create", other, {"spec": spec("poison@acme.com")}).model_dump(mode="json", exclude_none=True)
        body["data"]["spec"]["quota"]["concurrentSessions"] = 11
        await c.publish_raw(naming.event_subject("create", other), json.dumps(body).encode())
        status = await c.wait_status(sid, lambda s: s.phase is Phase.REJECTED)
        other_status = await c.wait_status(other, lambda s: s.phase is Phase.REJECTED)
        with anyio.fail_after(10):
            while len(letters := await c.dead_letters()) < 3:
                await anyio.sleep(0.1)
        keys = set(await (await c.js.key_value(naming.STATUS_BUCKET)).keys())
    assert status.last_error is not None and "invalid create event" in status.last_error.message
    assert other_status.last_error is not None
    assert "quota.concurrentSessions" in other_status.last_error.message
    reasons = {m.headers["Sandboxd-Original-Subject"]: m.headers["Sandboxd-Dead-Reason"] for m in letters if m.headers}
    assert reasons[naming.event_subject("create", sid)] == "InvalidEvent"
    assert reasons["sandbox.create.Not_A_Valid_Id"] == "InvalidEvent"
    assert any(m.data == b"not-json{" for m in letters)
    messages = {
        m.headers["Sandboxd-Original-Subject"]: unquote(m.headers["Sandboxd-Dead-Message"])
        for m in letters
        if m.headers
    }
    # the reason says the rule (docs/events.md); an invalid id has no key, so no status record
    assert naming.SANDBOX_ID_RULE in messages["sandbox.create.Not_A_Valid_Id"]
    assert keys == {sid, other}


async def test_second_sandbox_for_an_owner_is_rejected_not_merged(fresh_nats_server: NatsServer) -> None:
    applier = MemoryApplier()
    first, second, collide = unique_id(), unique_id(), unique_id()
    async with client(fresh_nats_server.url) as c, running_service(service_settings(fresh_nats_server.url), applier):
        await c.create(first, "owner@acme.com")
        await c.wait_status(first, lambda s: s.phase is Phase.READY)
        await c.create(second, "owner@acme.com")
        await c.create(collide, "owner@acme-com")  # a different email with the same owner-uid
        rejected = await c.wait_status(second, lambda s: s.phase is Phase.REJECTED)
        collided = await c.wait_status(collide, lambda s: s.phase is Phase.REJECTED)
    assert rejected.last_error is not None and f"already has sandbox {first}" in rejected.last_error.message
    assert collided.last_error is not None and "owner-at-acme-com" in collided.last_error.message
    # every console reads the status: it must not give away the other sandbox or its owner's email
    assert "owner@acme.com" not in collided.last_error.message and first not in collided.last_error.message
    assert set(applier.applied) == {first}


async def test_transient_failures_retry_then_converge(fresh_nats_server: NatsServer) -> None:
    failures = iter([ApplyUnavailable("api down"), ApplyUnavailable("api down")])
    applier = MemoryApplier(fail=lambda _: next(failures, None))
    sid = unique_id()
    async with client(fresh_nats_server.url) as c, running_service(service_settings(fresh_nats_server.url), applier):
        await c.create(sid, "flaky@acme.com")
        status = await c.wait_status(sid, lambda s: s.phase is Phase.READY)
    assert applier.calls == 3
    assert status.last_error is None


async def test_permanent_failure_is_recorded_once_without_a_retry_storm(fresh_nats_server: NatsServer) -> None:
    applier = MemoryApplier(fail=lambda _: ApplyRejected("HTTPRoute is invalid: spec.hostnames[0]: Invalid value"))
    sid = unique_id()
    async with client(fresh_nats_server.url) as c, running_service(service_settings(fresh_nats_server.url), applier):
        await c.create(sid, "refused@acme.com")
        status = await c.wait_status(sid, lambda s: s.phase is Phase.FAILED)
        await anyio.sleep(1.0)
        letters = await c.dead_letters()
    assert status.last_error is not None and "spec.hostnames[0]" in status.last_error.message
    assert status.last_error.retryable is False
    assert applier.calls == 1
    assert [m.headers["Sandboxd-Dead-Reason"] for m in letters if m.headers] == ["ApplyRejected"]


async def test_suspend_resume_and_delete(fresh_nats_server: NatsServer) -> None:
    applier = CountingApplier()
    sid, again = unique_id(), unique_id()
    async with client(fresh_nats_server.url) as c, running_service(service_settings(fresh_nats_server.url), applier):
        await c.create(sid, "life@acme.com", sessions=2)
        await c.wait_status(sid, lambda s: s.phase is Phase.READY)
        await c.publish("suspend", sid, {"reason": "billing"})
        suspended = await c.wait_status(sid, lambda s: s.phase is Phase.SUSPENDED)
        assert suspended.replicas is not None and suspended.replicas.desired == 0
        await c.publish("resume", sid)
        await c.wait_status(sid, lambda s: s.phase is Phase.READY and s.observed_generation == 3)
        await c.publish("delete", sid, {"purge": True})
        gone = await c.wait_status(sid, lambda s: s.phase is Phase.DELETED)
        # the owner is free again: a new sandbox for the same owner is accepted
        await c.create(again, "life@acme.com")
        await c.wait_status(again, lambda s: s.phase is Phase.READY)
    assert gone.deleted_at is not None
    assert applier.deleted == {sid: True}
    assert [n for s, n in applier.history if s == sid] == [2, 0, 2]


async def test_suspend_of_unknown_sandbox_is_rejected(fresh_nats_server: NatsServer) -> None:
    sid = unique_id()
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c, running_service(settings, MemoryApplier()):
        await c.publish("suspend", sid)
        status = await c.wait_status(sid, lambda s: s.phase is Phase.REJECTED)
    assert status.last_error is not None and "does not exist" in status.last_error.message


async def test_a_service_that_ran_a_while_stops_promptly(fresh_nats_server: NatsServer) -> None:
    """Stopping drains the NATS connection; a subscription left behind (the dead-letter mover's, whose pull
    requests expire every few seconds) used to hold the drain for its full 30 s timeout."""
    async with (
        client(fresh_nats_server.url) as c,
        running_service(service_settings(fresh_nats_server.url), MemoryApplier()) as service,
    ):
        sid = unique_id()
        await c.create(sid, "prompt@acme.com")
        await c.wait_status(sid, lambda s: s.phase is Phase.READY)
        await anyio.sleep(12)  # a few of the mover's 5 s fetches come and go
        stopping = anyio.current_time()
    stopped = anyio.current_time() - stopping
    assert service.health.connected is False
    assert stopped < 10, f"stopping took {stopped:.1f} s"
