"""A reconcile pass against in-memory stores: where it starts from, and the check after applying."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sandboxd.adapters.memory import MemoryApplier, MemoryStore
from sandboxd.models.desired import DesiredState, OwnerClaim
from sandboxd.models.spec import SandboxSpec
from sandboxd.models.status import SandboxStatus
from sandboxd.reconcile.reconciler import Reconciler, Result
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.render import render
from support.spine import runtime_settings, spec

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def desired(generation: int, sessions: int) -> DesiredState:
    return DesiredState(
        sandbox_id="sb-1",
        generation=generation,
        sequence=generation,
        event_id=f"e{generation}",
        spec=SandboxSpec.model_validate(spec("a@acme.com", sessions=sessions)),
        owner_uid="a-at-acme-com",
        accepted_at=NOW,
    )


def reconciler(store: MemoryStore[DesiredState], applier: MemoryApplier) -> Reconciler:
    return Reconciler(
        desired=store,
        owners=MemoryStore[OwnerClaim](),
        status=StatusWriter(MemoryStore[SandboxStatus]()),
        applier=applier,
        settings=runtime_settings(),
        render=render,
        clock=lambda: NOW,
    )


async def test_after_intake_a_pass_starts_from_the_remembered_record_and_needs_no_read() -> None:
    store: MemoryStore[DesiredState] = MemoryStore()
    await store.put("sb-1", desired(1, sessions=3), revision=None)
    applier = MemoryApplier()
    outcome = await reconciler(store, applier).reconcile("sb-1", after_intake=True)
    assert (outcome.result, outcome.generation, outcome.again) == (Result.DONE, 1, False)
    assert applier.applied["sb-1"].replicas == 3


async def test_a_newer_record_written_by_another_replica_is_caught_after_applying() -> None:
    mine: MemoryStore[DesiredState] = MemoryStore()
    revision = await mine.put("sb-1", desired(1, sessions=3), revision=None)
    # another replica moves the record on; this process still remembers generation 1
    await mine.replica().put("sb-1", desired(2, sessions=5), revision=revision)
    applier = MemoryApplier()
    sandbox = reconciler(mine, applier)

    stale = await sandbox.reconcile("sb-1", after_intake=True)
    assert (stale.generation, stale.again) == (1, True)  # applied what it remembered, then saw it moved

    fresh = await sandbox.reconcile("sb-1")  # the pass it asked for reads the bucket
    assert (fresh.generation, fresh.again) == (2, False)
    assert applier.applied["sb-1"].replicas == 5


async def test_a_pass_not_caused_by_intake_reads_the_bucket() -> None:
    mine: MemoryStore[DesiredState] = MemoryStore()
    revision = await mine.put("sb-1", desired(1, sessions=3), revision=None)
    await mine.replica().put("sb-1", desired(2, sessions=5), revision=revision)
    applier = MemoryApplier()
    outcome = await reconciler(mine, applier).reconcile("sb-1")  # a resync or a watch kick
    assert (outcome.generation, outcome.again) == (2, False)
    assert applier.applied["sb-1"].replicas == 5
