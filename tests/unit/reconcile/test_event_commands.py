"""The scale command of a suspend or resume comes from the reconcile pass that applied it.

In-memory stores and applier, the runtime's real ``CommandOutbox`` over a recording publisher: what a pass
sends, how often, with which id, and what the status record says after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import pytest

from sandboxd.adapters.memory import MemoryApplier, MemoryStore
from sandboxd.errors import ApplyUnavailable, BrokerUnavailable
from sandboxd.models.desired import DesiredState, Lifecycle, OwnerClaim
from sandboxd.models.spec import SandboxSpec
from sandboxd.models.status import Phase, SandboxStatus
from sandboxd.reconcile.reconciler import Reconciler, Result
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.render import render
from sandboxd.runtime.outbox import CommandOutbox
from support.spine import runtime_settings, spec
from unit.idle.factories import Commands

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@dataclass
class Replica:
    """One service replica's reconciler over the shared buckets, with its own outbox."""

    desired: MemoryStore[DesiredState]
    status: MemoryStore[SandboxStatus]
    applier: MemoryApplier
    publisher: Commands
    outbox: CommandOutbox
    reconciler: Reconciler

    async def record(self, state: DesiredState) -> None:
        """Write the desired state as intake does after accepting an event."""
        current = await self.desired.get("sb-1")
        await self.desired.put("sb-1", state, revision=current.revision if current else None)

    async def pass_(self) -> Result:
        return (await self.reconciler.reconcile("sb-1")).result

    async def status_of(self) -> SandboxStatus:
        record = await self.status.get("sb-1")
        assert record is not None
        return record.value


def replica(
    desired_store: MemoryStore[DesiredState] | None = None,
    status_store: MemoryStore[SandboxStatus] | None = None,
    *,
    commands: bool = True,
) -> Replica:
    """A replica; pass another's desired store (its ``replica()`` is taken here) and ``status.replica()`` to
    share its buckets."""
    desired_store = desired_store.replica() if desired_store is not None else MemoryStore[DesiredState]()
    status_store = status_store or MemoryStore[SandboxStatus]()
    applier, publisher = MemoryApplier(), Commands()
    outbox = CommandOutbox(publisher)
    reconciler = Reconciler(
        desired=desired_store,
        owners=MemoryStore[OwnerClaim](),
        status=StatusWriter(status_store),
        applier=applier,
        settings=runtime_settings(),
        render=render,
        clock=lambda: NOW,
        commands=outbox if commands else None,
    )
    return Replica(desired_store, status_store, applier, publisher, outbox, reconciler)


def running(*, sessions: int = 2) -> DesiredState:
    return DesiredState(
        sandbox_id="sb-1",
        generation=1,
        sequence=1,
        event_id="e1",
        spec=SandboxSpec.model_validate(spec("a@acme.com", sessions=sessions)),
        owner_uid="a-at-acme-com",
        accepted_at=NOW,
    )


def after_event(state: DesiredState, **changes: object) -> DesiredState:
    """What intake writes for the next accepted event: generation and sequence moved, ``changes`` applied."""
    return state.model_copy(update={"generation": state.generation + 1, "sequence": state.sequence + 1, **changes})


def after_sweeper(state: DesiredState, *, idle_since: datetime | None) -> DesiredState:
    """What an idle or wake decision writes: the generation moves, the event sequence does not."""
    return state.model_copy(update={"generation": state.generation + 1, "idle_since": idle_since})


async def test_a_suspend_sends_one_command_and_the_resume_another() -> None:
    r = replica()
    await r.record(first := running())
    await r.pass_()
    assert r.publisher.sent == []  # a first apply: nothing to scale

    await r.record(suspended := after_event(first, lifecycle=Lifecycle.SUSPENDED))
    assert await r.pass_() is Result.DONE
    [command] = r.publisher.sent
    assert (command.command_id, command.replicas, command.reason) == ("sb-1:2:suspend", 0, "Suspended")
    assert (command.namespace, command.stateful_set, command.generation) == ("sandbox-a-at-acme-com", "pty-server", 2)
    status = await r.status_of()
    assert (status.phase, status.idle_reason) == (Phase.SUSPENDED, "Suspended")
    assert r.applier.applied["sb-1"].replicas == 0

    await r.record(after_event(suspended, lifecycle=Lifecycle.ACTIVE))
    await r.pass_()
    assert [(c.command_id, c.replicas, c.reason) for c in r.publisher.sent][1:] == [("sb-1:3:resume", 2, "Resumed")]
    status = await r.status_of()
    assert (status.phase, status.idle_reason) == (Phase.READY, None)


async def test_a_redelivered_event_or_a_resync_sends_nothing_more() -> None:
    r = replica()
    await r.record(first := running())
    await r.pass_()
    await r.record(after_event(first, lifecycle=Lifecycle.SUSPENDED))
    await r.pass_()
    for _ in range(3):  # the event redelivered, the periodic resync, a readiness kick
        await r.pass_()
    assert r.publisher.ids == ["sb-1:2:suspend"]
    assert (await r.status_of()).idle_reason == "Suspended"


async def test_an_update_that_keeps_the_workload_sends_nothing() -> None:
    r = replica()
    await r.record(first := running(sessions=2))
    await r.pass_()
    updated = after_event(first, spec=SandboxSpec.model_validate(spec("a@acme.com", sessions=4)))
    await r.record(updated)
    await r.pass_()
    assert r.applier.applied["sb-1"].replicas == 4 and r.publisher.sent == []
    await r.record(suspended := after_event(updated, lifecycle=Lifecycle.SUSPENDED))
    await r.record(after_event(suspended, lifecycle=Lifecycle.ACTIVE))  # coalesced: one pass sees both
    await r.pass_()
    assert r.publisher.sent == []  # it ends where it started


async def test_the_sweepers_idle_and_wake_are_not_taken_for_events() -> None:
    r = replica()
    await r.record(first := running())
    await r.pass_()
    await r.record(went_idle := after_sweeper(first, idle_since=NOW))
    await r.pass_()
    await r.record(woke := after_sweeper(went_idle, idle_since=None))
    await r.pass_()
    assert r.publisher.sent == []  # the sweeper sent its own idle and wake commands
    await r.record(asleep := after_sweeper(woke, idle_since=NOW))
    await r.pass_()
    await r.record(after_event(asleep, idle_since=None))  # a resume of the idle sandbox: intake clears idleSince
    await r.pass_()
    assert [(c.command_id, c.replicas) for c in r.publisher.sent] == [("sb-1:5:resume", 2)]


async def test_a_pass_repeated_after_sending_sends_the_same_id_or_nothing() -> None:
    """Two replicas passing the same suspend at once: compare-and-set lets one writer past the event."""
    a = replica()
    await a.record(first := running())
    await a.pass_()
    b = replica(a.desired, a.status.replica())
    await a.record(after_event(first, lifecycle=Lifecycle.SUSPENDED))
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.pass_)
        tg.start_soon(b.pass_)
    assert a.publisher.ids + b.publisher.ids == ["sb-1:2:suspend"]
    await a.pass_()
    await b.pass_()
    assert a.publisher.ids + b.publisher.ids == ["sb-1:2:suspend"]


class StatusOutage(MemoryStore[SandboxStatus]):
    """The status bucket, refusing writes while ``down``."""

    down = False

    async def put(
        self, key: str, value: SandboxStatus, *, revision: int | None, expire_after_s: float | None = None
    ) -> int:
        if self.down:
            raise BrokerUnavailable("status bucket unavailable")
        return await super().put(key, value, revision=revision, expire_after_s=expire_after_s)


async def test_a_redelivery_after_a_failed_status_write_sends_the_command_with_its_one_id() -> None:
    status = StatusOutage()
    r = replica(status_store=status)
    await r.record(first := running())
    await r.pass_()
    await r.record(after_event(first, lifecycle=Lifecycle.SUSPENDED))
    status.down = True
    with pytest.raises(BrokerUnavailable):  # the pass fails; the runtime naks the event
        await r.pass_()
    assert r.publisher.sent == []  # nothing is sent before the status record is past the event
    status.down = False
    await r.pass_()  # the redelivery
    await r.pass_()  # and another
    assert r.publisher.ids == ["sb-1:2:suspend"]


async def test_a_replica_that_was_down_when_the_event_came_still_sends_it() -> None:
    a = replica()
    await a.record(first := running())
    await a.pass_()
    await a.record(after_event(first, lifecycle=Lifecycle.SUSPENDED))  # accepted; its pass never ran (a died)
    restarted = replica(a.desired, a.status.replica())  # remembers nothing
    await restarted.pass_()  # the resync at start-up
    assert restarted.publisher.ids == ["sb-1:2:suspend"]


async def test_a_failed_apply_still_sends_the_command_once() -> None:
    r = replica()
    await r.record(first := running())
    await r.pass_()
    r.applier.fail = lambda _: ApplyUnavailable("API server away")
    await r.record(after_event(first, lifecycle=Lifecycle.SUSPENDED))
    assert await r.pass_() is Result.RETRY
    assert r.publisher.ids == ["sb-1:2:suspend"]  # the scaler can act while the apply is retried
    assert (await r.status_of()).idle_reason == "Suspended"
    r.applier.fail = None
    assert await r.pass_() is Result.DONE
    assert r.publisher.ids == ["sb-1:2:suspend"]


async def test_a_command_that_failed_to_publish_is_kept_and_the_pass_goes_on() -> None:
    r = replica()
    await r.record(first := running())
    await r.pass_()
    r.publisher.failing = True
    await r.record(suspended := after_event(first, lifecycle=Lifecycle.SUSPENDED))
    assert await r.pass_() is Result.DONE
    assert (await r.status_of()).phase is Phase.SUSPENDED
    assert (r.outbox.pending, r.outbox.failed) == (1, 1)
    r.publisher.failing = False
    sent: list[str] = []

    async def guard(sandbox_id: str, step: object) -> None:
        sent.append(sandbox_id)
        await step  # type: ignore[misc]

    await r.outbox.resend({"sb-1": suspended.generation}, guard)  # what the next sweep does
    assert r.publisher.ids == ["sb-1:2:suspend"] and r.outbox.pending == 0 and sent == ["sb-1"]


async def test_without_a_sink_nothing_is_sent_or_noted() -> None:
    r = replica(commands=False)  # the service with its idle sweeper off
    await r.record(first := running())
    await r.pass_()
    await r.record(after_event(first, lifecycle=Lifecycle.SUSPENDED))
    await r.pass_()
    status = await r.status_of()
    assert (status.phase, status.idle_reason, r.publisher.sent) == (Phase.SUSPENDED, None, [])
