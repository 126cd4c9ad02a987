"""A sandbox deleted and created again is a new incarnation: intake, reconcile and status across delete → create.

Intake and the reconciler run over in-memory stores with the real renderer, as the service wires them; a
"restart" is a new intake and reconciler over the same buckets (another process remembers nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from sandboxd.adapters.memory import MemoryApplier, MemoryStore
from sandboxd.models.desired import DesiredState, OwnerClaim
from sandboxd.models.status import ConditionType, Phase, SandboxStatus
from sandboxd.reconcile.intake import Intake, Verdict
from sandboxd.reconcile.reconciler import Reconciler, Result
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.render import render
from support.spine import runtime_settings, spec
from unit.reconcile.test_intake import inbound

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SID = "sb-1"


@dataclass
class Process:
    """One sandboxd process's intake and reconciler over shared buckets."""

    intake: Intake
    reconciler: Reconciler
    status: MemoryStore[SandboxStatus]

    async def admit(self, verb: str, seq: int, data: dict[str, Any] | None = None) -> Verdict:
        [verdict] = await self.intake.admit(SID, [inbound(verb, SID, seq, data)])
        return verdict.verdict

    async def settle(self) -> None:
        """Run passes until the reconciler asks for no more (as the keyed queue does)."""
        for _ in range(5):
            outcome = await self.reconciler.reconcile(SID)
            assert outcome.result is Result.DONE, outcome
            if not outcome.again:
                return
        raise AssertionError("the reconciler kept asking for another pass")

    async def create_then_delete(self, *, purge: bool, repos: tuple[str, ...] = ()) -> None:
        """Create (stream sequence 1, one session) and delete (2); both reconciled."""
        assert await self.admit("create", 1, create(1, *repos)) is Verdict.ACCEPTED
        await self.settle()
        await self.admit("delete", 2, {"purge": purge})
        await self.settle()

    async def record(self) -> SandboxStatus:
        stored = await self.status.get(SID)
        assert stored is not None
        return stored.value


@dataclass
class Buckets:
    desired: MemoryStore[DesiredState]
    owners: MemoryStore[OwnerClaim]
    status: MemoryStore[SandboxStatus]

    def process(self, applier: MemoryApplier) -> Process:
        """A new process over these buckets: it remembers nothing another one wrote or rendered."""
        desired, owners, status = self.desired.replica(), self.owners.replica(), self.status.replica()
        writer = StatusWriter(status)
        intake = Intake(desired=desired, owners=owners, status=writer, clock=lambda: NOW)
        reconciler = Reconciler(
            desired=desired,
            owners=owners,
            status=writer,
            applier=applier,
            settings=runtime_settings(),
            render=render,
            clock=lambda: NOW,
        )
        return Process(intake, reconciler, status)


@pytest.fixture
def buckets() -> Buckets:
    return Buckets(MemoryStore(), MemoryStore(), MemoryStore())


def create(sessions: int, *repos: str) -> dict[str, Any]:
    return {"spec": spec("a@acme.com", sessions=sessions, repos=list(repos))}


def claims(applier: MemoryApplier) -> set[str]:
    return {m.name for m in applier.applied[SID].manifests if m.kind == "PersistentVolumeClaim"}


@pytest.mark.parametrize("purge", [False, True])
async def test_a_create_after_a_delete_renders_the_new_spec_and_is_ready(buckets: Buckets, purge: bool) -> None:
    applier = MemoryApplier()
    sandboxd = buckets.process(applier)
    await sandboxd.create_then_delete(purge=purge, repos=("acme/app",))
    assert await buckets.desired.get(SID) is None  # the deleted sandbox leaves no desired state behind

    assert await sandboxd.admit("create", 3, create(4, "acme/other")) is Verdict.ACCEPTED
    await sandboxd.settle()

    assert applier.applied[SID].replicas == 4
    assert claims(applier) == {"repo-acme-other"}
    record = await sandboxd.record()
    assert record.phase is Phase.READY
    assert record.observed_generation == 3  # continues after the delete's generation 2, never restarts
    assert record.deleted_at is None
    accepted = record.condition(ConditionType.ACCEPTED)
    assert accepted is not None and accepted.status == "True" and accepted.observed_generation == 3


async def test_after_a_restart_a_re_created_sandbox_leaves_deleted(buckets: Buckets) -> None:
    first = buckets.process(MemoryApplier())
    await first.create_then_delete(purge=False)

    applier = MemoryApplier()
    restarted = buckets.process(applier)
    await restarted.admit("create", 3, create(4))
    await restarted.settle()

    record = await restarted.record()
    assert (record.phase, record.observed_generation) == (Phase.READY, 3)
    assert applier.applied[SID].replicas == 4


async def test_one_process_renders_each_incarnation_afresh_even_at_equal_generations(buckets: Buckets) -> None:
    """The render memo is keyed by incarnation as well: a generation number alone may repeat if the status
    record that carries the floor is lost (here: removed by hand)."""
    applier = MemoryApplier()
    sandboxd = buckets.process(applier)
    await sandboxd.create_then_delete(purge=True)
    await buckets.status.delete(SID)
    await sandboxd.admit("create", 3, create(4))
    await sandboxd.settle()
    assert applier.applied[SID].replicas == 4


@pytest.mark.parametrize(("verb", "seq", "data"), [("create", 1, create(1)), ("delete", 2, {"purge": False})])
async def test_a_redelivered_event_of_a_deleted_sandbox_is_stale_and_brings_nothing_back(
    buckets: Buckets, verb: str, seq: int, data: dict[str, Any]
) -> None:
    """Another replica recorded the create, crashed before acknowledging it, and the deletion finished
    meanwhile: the create (or the delete) comes again after the desired state is gone."""
    applier = MemoryApplier()
    sandboxd = buckets.process(applier)
    await sandboxd.create_then_delete(purge=False)

    assert await buckets.process(MemoryApplier()).admit(verb, seq, data) is Verdict.STALE
    assert await buckets.desired.get(SID) is None
    assert (await sandboxd.record()).phase is Phase.DELETED


async def test_a_late_pass_that_applied_after_another_replica_deleted_takes_its_runtime_away(
    buckets: Buckets,
) -> None:
    """Replica A records a create; replica B records the delete, reconciles it and removes the desired state;
    then A's pass applies the create it remembers. The target holds one runtime: A must not leave it running."""
    target = MemoryApplier()
    a, b = buckets.process(target), buckets.process(target)
    await a.admit("create", 1, create(2))
    await b.admit("delete", 2, {"purge": False})
    await b.settle()
    assert SID not in target.applied

    outcome = await a.reconciler.reconcile(SID, after_intake=True)  # starts from the create it remembers

    assert outcome.result is Result.DONE
    assert SID not in target.applied and target.deleted == {SID: False}  # retained: data is never lost here
    record = await a.record()
    assert (record.phase, record.observed_generation) == (Phase.DELETED, 2)
