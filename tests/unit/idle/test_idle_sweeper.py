"""The sweeper over in-memory ports: what one sweep writes, publishes and kicks, on injected time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import anyio
import pytest

from sandboxd.adapters.memory import MemoryStore
from sandboxd.models.activity import ActivityReport
from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.models.status import Phase, SandboxStatus
from sandboxd.reconcile.activity import ActivityBook
from sandboxd.reconcile.ports import Versioned
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.runtime.outbox import CommandOutbox
from sandboxd.runtime.probing import ActivityProber
from sandboxd.runtime.sweeper import SweepEffects, Sweeper, SweepFeeds, SweepPolicy
from unit.idle.factories import T0, Commands, desired, minutes, report

pytestmark = pytest.mark.anyio


class MemoryView:
    """``DesiredView`` filled from a ``MemoryStore`` on demand (the KV watch's stand-in)."""

    def __init__(self, store: MemoryStore[DesiredState]) -> None:
        self.store = store
        self.records: dict[str, Versioned[DesiredState]] = {}
        self.ready = True

    async def refresh(self) -> None:
        for key in await self.store.keys():
            record = await self.store.get(key)
            assert record is not None
            self.records[key] = record

    def snapshot(self) -> Iterable[Versioned[DesiredState]]:
        return list(self.records.values())

    def note(self, record: Versioned[DesiredState]) -> None:
        current = self.records.get(record.value.sandbox_id)
        if current is None or current.revision <= record.revision:
            self.records[record.value.sandbox_id] = record


@dataclass
class Probes:
    answers: dict[str, ActivityReport | None]
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def probe(self, *, sandbox_id: str, namespace: str, owner_uid: str) -> ActivityReport | None:
        self.asked.append((sandbox_id, namespace))
        return self.answers.get(sandbox_id)


@dataclass
class Shared:
    published: list[tuple[str, ActivityReport]] = field(default_factory=list)

    async def publish(self, sandbox_id: str, report: ActivityReport) -> None:
        self.published.append((sandbox_id, report))


@dataclass
class Rig:
    desired: MemoryStore[DesiredState]
    status: MemoryStore[SandboxStatus]
    book: ActivityBook
    commands: Commands
    kicked: list[str]
    view: MemoryView
    sweeper: Sweeper
    outbox: CommandOutbox
    prober: ActivityProber | None

    async def put(self, state: DesiredState) -> None:
        current = await self.desired.get(state.sandbox_id)
        await self.desired.put(state.sandbox_id, state, revision=current.revision if current else None)
        await self.view.refresh()

    async def get(self, sandbox_id: str) -> DesiredState:
        record = await self.desired.get(sandbox_id)
        assert record is not None
        return record.value

    async def sweep(self, at: float) -> None:
        await self.sweeper.sweep_once(T0 + minutes(at))

    async def status_of(self, sandbox_id: str) -> SandboxStatus:
        record = await self.status.get(sandbox_id)
        assert record is not None
        return record.value


def rig(
    desired_store: MemoryStore[DesiredState] | None = None,
    status_store: MemoryStore[SandboxStatus] | None = None,
    *,
    book: ActivityBook | None = None,
    prober: Probes | None = None,
    shared: Shared | None = None,
    budget: int = 500,
) -> Rig:
    desired_store = desired_store or MemoryStore()
    status_store = status_store or MemoryStore()
    book = ActivityBook(ready=True) if book is None else book
    commands, kicked, view = Commands(), [], MemoryView(desired_store)
    outbox = CommandOutbox(commands)
    sweeper = Sweeper(
        feeds=SweepFeeds(view=view, activity=book),
        effects=SweepEffects(
            desired=desired_store, status=StatusWriter(status_store), commands=outbox, kick=kicked.append
        ),
        policy=SweepPolicy(default_timeout_minutes=30, status_writes_per_sweep=budget),
        clock=lambda: T0,
    )
    probing = None if prober is None else ActivityProber(view=view, activity=book, prober=prober, publisher=shared)
    return Rig(desired_store, status_store, book, commands, kicked, view, sweeper, outbox, probing)


async def test_idle_after_the_timeout_then_nothing_more() -> None:
    r = rig()
    await r.put(desired("sb-1", email="ceo@acme.com", sessions=3))
    r.book.record("sb-1", report(T0 + minutes(2)))
    await r.sweep(31)
    assert r.commands.sent == [] and r.kicked == []
    await r.sweep(32)
    state = await r.get("sb-1")
    assert state.idle_since == T0 + minutes(32) and state.generation == 2
    [command] = r.commands.sent
    assert (command.command_id, command.replicas, command.reason) == ("sb-1:2:idle", 0, "Idle")
    assert command.namespace == "sandbox-ceo-at-acme-com"
    assert r.kicked == ["sb-1"]
    status = await r.status_of("sb-1")
    assert status.idle_reason is not None and "since 2026-11-27T09:02:00Z" in status.idle_reason
    assert status.last_activity_at == T0 + minutes(2)
    await r.sweep(90)  # already idle: upstream case 7, two passes and nothing new
    assert len(r.commands.sent) == 1 and r.kicked == ["sb-1"]
    assert r.sweeper.stats.idled == 1


async def test_never_idle_while_a_session_is_active() -> None:
    r = rig()
    await r.put(desired("sb-1"))
    r.book.record("sb-1", report(T0, sessions=2))
    await r.sweep(600)
    assert r.commands.sent == [] and (await r.get("sb-1")).idle_since is None


async def test_the_sandbox_timeout_wins_and_opt_out_is_honoured() -> None:
    r = rig()
    await r.put(desired("sb-short", timeout=5))
    await r.put(desired("sb-long", timeout=120))
    await r.put(desired("sb-out", enabled=False))
    await r.sweep(10)
    assert [c.command_id for c in r.commands.sent] == ["sb-short:2:idle"]
    await r.sweep(119)
    assert len(r.commands.sent) == 1
    await r.sweep(120)
    assert [c.command_id for c in r.commands.sent] == ["sb-short:2:idle", "sb-long:2:idle"]
    await r.sweep(60 * 24 * 30)
    assert (await r.get("sb-out")).idle_since is None


async def test_activity_wakes_an_idle_sandbox() -> None:
    r = rig()
    await r.put(desired("sb-1", sessions=4))
    await r.sweep(30)
    assert (await r.get("sb-1")).idle_since is not None
    r.book.record("sb-1", report(T0 + minutes(29)))  # older than idleSince: still idle
    await r.sweep(40)
    assert len(r.commands.sent) == 1
    r.book.record("sb-1", report(T0 + minutes(41)))
    await r.sweep(42)
    state = await r.get("sb-1")
    assert state.idle_since is None and state.generation == 3
    wake = r.commands.sent[-1]
    assert (wake.command_id, wake.replicas, wake.reason) == ("sb-1:3:wake", 4, "Active")
    assert r.kicked == ["sb-1", "sb-1"]
    assert (await r.status_of("sb-1")).idle_reason is None
    await r.sweep(60)  # 19 minutes after the activity: awake
    assert len(r.commands.sent) == 2
    await r.sweep(71)  # 30 minutes after it: idle again, with a new command id
    assert r.commands.sent[-1].command_id == "sb-1:4:idle"


async def test_a_suspended_sandbox_holds_whatever_its_activity() -> None:
    """Suspend and resume commands are the reconcile pass's (``test_event_commands``): the sweeper sends none,
    and activity never wakes a suspended sandbox."""
    r = rig()
    active = desired("sb-1", sessions=2)
    await r.put(active)
    await r.sweep(1)
    suspended = active.model_copy(update={"lifecycle": Lifecycle.SUSPENDED, "generation": 2, "sequence": 2})
    await r.put(suspended)  # what intake writes for a suspend event
    await r.sweep(2)
    r.book.record("sb-1", report(T0 + minutes(50), sessions=3))
    await r.sweep(60 * 24)
    assert r.commands.sent == [] and r.kicked == []
    assert (await r.get("sb-1")) == suspended
    resumed = suspended.model_copy(
        update={"lifecycle": Lifecycle.ACTIVE, "generation": 3, "sequence": 3, "accepted_at": T0 + minutes(60 * 24 + 1)}
    )
    await r.put(resumed)
    await r.sweep(60 * 24 + 2)  # the resume counts as activity: not idle
    assert r.commands.sent == [] and r.kicked == []


async def test_resuming_an_idle_sandbox_leaves_the_command_to_the_reconcile() -> None:
    r = rig()
    await r.put(desired("sb-1", sessions=3))
    await r.sweep(30)
    went_idle = await r.get("sb-1")
    assert went_idle.idle_since is not None
    resumed = went_idle.model_copy(  # what intake writes for a resume event
        update={"idle_since": None, "generation": 3, "sequence": 2, "accepted_at": T0 + minutes(45)}
    )
    await r.put(resumed)
    await r.sweep(46)
    assert [(c.command_id, c.replicas) for c in r.commands.sent] == [("sb-1:2:idle", 0)]


async def test_another_replicas_decision_is_not_repeated() -> None:
    desired_store: MemoryStore[DesiredState] = MemoryStore()
    status_store: MemoryStore[SandboxStatus] = MemoryStore()
    a, b = rig(desired_store, status_store), rig(desired_store, status_store)
    await a.put(desired("sb-1"))
    await b.view.refresh()
    await b.sweep(1)  # b's first look
    await a.sweep(30)  # a decides
    await b.view.refresh()
    await b.sweep(31)
    assert len(a.commands.sent) == 1 and b.commands.sent == []


async def test_two_sweepers_deciding_at_once_publish_one_command() -> None:
    """Upstream ran one leader-elected scaler (§9.5 case 9); here any number run and compare-and-set decides."""
    desired_store: MemoryStore[DesiredState] = MemoryStore()
    status_store: MemoryStore[SandboxStatus] = MemoryStore()
    a, b = rig(desired_store, status_store), rig(desired_store, status_store)
    await a.put(desired("sb-1"))
    await b.view.refresh()
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.sweep, 45)
        tg.start_soon(b.sweep, 45)
    assert len(a.commands.sent) + len(b.commands.sent) == 1
    assert a.sweeper.stats.lost_races + b.sweeper.stats.lost_races == 1
    assert (await a.get("sb-1")).generation == 2
    # the loser re-read: its next sweep sees the sandbox idle and does nothing
    loser = a if b.commands.sent else b
    await loser.sweep(46)
    assert len(a.commands.sent) + len(b.commands.sent) == 1


async def test_a_failed_publish_is_retried_by_the_next_sweep() -> None:
    r = rig()
    await r.put(desired("sb-1"))
    r.commands.failing = True
    await r.sweep(30)
    assert (await r.get("sb-1")).idle_since is not None and r.kicked == ["sb-1"]
    assert r.outbox.failed == 1 and r.outbox.pending == 1 and r.commands.sent == []
    r.commands.failing = False
    await r.sweep(31)
    assert [c.command_id for c in r.commands.sent] == ["sb-1:2:idle"]
    await r.sweep(32)
    assert len(r.commands.sent) == 1


async def test_a_superseded_unsent_command_is_dropped() -> None:
    r = rig()
    await r.put(desired("sb-1"))
    r.commands.failing = True
    await r.sweep(30)
    updated = (await r.get("sb-1")).model_copy(update={"generation": 3})  # an update event meanwhile
    await r.put(updated)
    r.commands.failing = False
    await r.sweep(31)
    assert r.commands.sent == []


async def test_last_activity_reaches_the_status_only_when_it_moved_materially() -> None:
    r = rig()
    await r.put(desired("sb-1"))
    r.book.record("sb-1", report(T0 + minutes(1)))
    await r.sweep(2)
    assert (await r.status_of("sb-1")).last_activity_at == T0 + minutes(1)
    r.book.record("sb-1", report(T0 + minutes(1.5)))
    await r.sweep(3)
    assert (await r.status_of("sb-1")).last_activity_at == T0 + minutes(1)
    r.book.record("sb-1", report(T0 + minutes(2)))
    await r.sweep(4)
    assert (await r.status_of("sb-1")).last_activity_at == T0 + minutes(2)
    assert r.sweeper.stats.status_writes == 2
    assert (await r.status_of("sb-1")).phase is Phase.PENDING  # the phase stays the reconcile's


async def test_status_writes_per_sweep_are_bounded() -> None:
    r = rig(budget=2)
    for n in range(5):
        await r.put(desired(f"sb-{n}"))
        r.book.record(f"sb-{n}", report(T0 + minutes(1)))
    await r.sweep(2)
    assert r.sweeper.stats.status_writes == 2
    await r.sweep(3)
    await r.sweep(4)
    assert r.sweeper.stats.status_writes == 5


async def test_nothing_is_decided_before_the_feeds_have_replayed() -> None:
    r = rig(book=ActivityBook(ready=False))
    await r.put(desired("sb-1"))
    await r.sweep(600)
    assert r.commands.sent == [] and r.sweeper.stats.not_ready == 1
    r.book.ready = True
    r.view.ready = False
    await r.sweep(600)
    assert r.commands.sent == [] and r.sweeper.stats.not_ready == 2


async def test_a_probe_failure_is_not_activity() -> None:
    probes = Probes({"sb-up": report(T0 + minutes(20), sessions=1), "sb-down": None})
    shared = Shared()
    r = rig(prober=probes, shared=shared)
    await r.put(desired("sb-up", email="up@acme.com"))
    await r.put(desired("sb-down", email="down@acme.com"))
    await r.put(desired("sb-paused", lifecycle=Lifecycle.SUSPENDED))
    assert r.prober is not None and await r.prober.probe_once() == 1
    assert sorted(probes.asked) == [("sb-down", "sandbox-down-at-acme-com"), ("sb-up", "sandbox-up-at-acme-com")]
    assert r.book.latest("sb-down") is None
    assert [sid for sid, _ in shared.published] == ["sb-up"]
    assert r.prober.stats.failures == 1
    await r.sweep(29)
    assert r.commands.sent == []
    await r.sweep(30)  # the unreachable sandbox idles on time; the one with a session does not
    assert [c.sandbox_id for c in r.commands.sent] == ["sb-down"]


async def test_probing_skips_idle_sandboxes() -> None:
    probes = Probes({})
    r = rig(prober=probes)
    await r.put(desired("sb-1", idle_since=T0))
    assert r.prober is not None and await r.prober.probe_once() == 0
    assert probes.asked == []


def test_now_defaults_to_the_clock() -> None:
    r = rig()
    stamp: list[datetime] = []
    r.sweeper._clock = lambda: stamp.append(T0) or T0  # type: ignore[method-assign,func-returns-value]
    anyio.run(r.sweeper.sweep_once)
    assert stamp == [T0]
