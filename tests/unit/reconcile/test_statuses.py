"""The pure status transitions across a sandbox's lives: apply, delete (retain and purge), re-create, failures.

What each condition says after each step is the table in ``reconcile/statuses.py``; these tests hold it to that,
and to the order a console relies on: the generation it sees never goes backwards.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandboxd.adapters.memory import MemoryStore
from sandboxd.errors import ApplyUnavailable, InvalidEvent
from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.models.spec import SandboxSpec
from sandboxd.models.status import ConditionType, ObjectRef, Phase, Replicas, SandboxStatus
from sandboxd.reconcile import statuses
from support.spine import spec

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SID = "sb-1"
NAMESPACE = "sandbox-a-at-acme-com"
OBJECTS = (
    ObjectRef(api_version="v1", kind="Namespace", name=NAMESPACE),
    ObjectRef(api_version="apps/v1", kind="StatefulSet", name="pty-server", namespace=NAMESPACE),
)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def desired(generation: int, *, incarnation: int = 1, **changes: Any) -> DesiredState:
    return DesiredState(
        sandbox_id=SID,
        generation=generation,
        incarnation=incarnation,
        sequence=incarnation + generation,
        event_id=f"e{incarnation}-{generation}",
        spec=SandboxSpec.model_validate(spec("a@acme.com")),
        owner_uid="a-at-acme-com",
        accepted_at=T0,
        **changes,
    )


def applied(previous: SandboxStatus | None, state: DesiredState, now: datetime, ready: int = 2) -> SandboxStatus:
    return statuses.applied(
        previous,
        desired=state,
        namespace=NAMESPACE,
        endpoint="https://sandbox.example/sessions/a-at-acme-com/",
        objects=OBJECTS,
        replicas=2,
        ready=ready,
        timings_ms={"apply": 1.0},
        now=now,
    )


def deleted(previous: SandboxStatus | None, state: DesiredState, now: datetime) -> SandboxStatus:
    return statuses.deleted(previous, desired=state, timings_ms={"delete": 1.0}, now=now)


def conditions(status: SandboxStatus) -> dict[str, tuple[str, str, int]]:
    return {c.type.value: (c.status.value, c.reason, c.observed_generation) for c in status.conditions}


def running() -> SandboxStatus:
    """A sandbox created (generation 1), then ready, with activity noted."""
    status = applied(None, desired(1), at(0))
    return status.model_copy(update={"last_activity_at": at(1)})


@pytest.mark.parametrize("purge", [False, True])
def test_after_a_delete_every_condition_speaks_of_the_delete(purge: bool) -> None:
    gone = deleted(running(), desired(2, lifecycle=Lifecycle.DELETED, purge=purge), at(5))
    reason = "Purged" if purge else "Deleted"
    assert gone.phase is Phase.DELETED
    assert conditions(gone) == {
        "Accepted": ("True", "EventAccepted", 2),
        "Applied": ("False", reason, 2),
        "Ready": ("False", reason, 2),
        "Idle": ("False", reason, 2),
    }
    accepted = gone.condition(ConditionType.ACCEPTED)
    assert accepted is not None and accepted.message == "generation 2 from event e1-2"
    assert (gone.applied_objects, gone.endpoint, gone.replicas) == ([], None, Replicas(desired=0, ready=0))
    assert gone.namespace == (None if purge else NAMESPACE)  # a retained sandbox's data is still in its namespace
    assert (gone.observed_generation, gone.event_id, gone.deleted_at) == (2, "e1-2", at(5))


def test_a_delete_retried_keeps_when_it_was_deleted() -> None:
    state = desired(2, lifecycle=Lifecycle.DELETED)
    again = deleted(deleted(running(), state, at(5)), state, at(7))
    assert again.deleted_at == at(5)
    assert again.attempts == 2


def test_a_re_created_sandbox_starts_a_fresh_record() -> None:
    tombstone = deleted(running(), desired(2, lifecycle=Lifecycle.DELETED), at(5))
    reborn = applied(tombstone, desired(3, incarnation=10), at(9))
    assert (reborn.phase, reborn.observed_generation, reborn.incarnation) == (Phase.READY, 3, 10)
    assert conditions(reborn) == {
        "Accepted": ("True", "EventAccepted", 3),
        "Applied": ("True", "Applied", 3),
        "Ready": ("True", "ReplicasReady", 3),
        "Idle": ("False", "Active", 3),
    }
    # nothing of the earlier life carries over: every condition starts now, no activity, no deletion time
    assert {c.last_transition_time for c in reborn.conditions} == {at(9)}
    assert (reborn.deleted_at, reborn.last_activity_at, reborn.attempts) == (None, None, 1)


def test_a_re_create_whose_first_apply_fails_is_pending_not_deleted() -> None:
    tombstone = deleted(running(), desired(2, lifecycle=Lifecycle.DELETED), at(5))
    error = ApplyUnavailable("api down")
    status = statuses.failed(tombstone, desired=desired(3, incarnation=10), error=error, retryable=True, now=at(9))
    assert (status.phase, status.observed_generation, status.incarnation) == (Phase.PENDING, 3, 10)
    assert conditions(status) == {"Accepted": ("True", "EventAccepted", 3), "Applied": ("False", "ApplyUnavailable", 3)}
    assert status.deleted_at is None


def test_a_deletion_that_fails_for_now_is_deleting() -> None:
    error = ApplyUnavailable("api down")
    status = statuses.failed(
        running(), desired=desired(2, lifecycle=Lifecycle.DELETED), error=error, retryable=True, now=at(5)
    )
    assert status.phase is Phase.DELETING
    assert conditions(status)["Accepted"] == ("True", "EventAccepted", 2)


def test_a_refused_create_after_a_delete_leaves_it_deleted_and_says_why() -> None:
    tombstone = deleted(running(), desired(2, lifecycle=Lifecycle.DELETED), at(5))
    error = InvalidEvent("invalid create event: data.spec.quota.cpu: 'lots' is not valid")
    status = statuses.rejected(tombstone, sandbox_id=SID, error=error, event_id="bad", now=at(6))
    assert (status.phase, status.observed_generation) == (Phase.DELETED, 2)
    assert conditions(status)["Accepted"] == ("False", "InvalidEvent", 2)


def test_a_rejection_stays_visible_through_another_pass_of_the_same_generation() -> None:
    error = InvalidEvent("the owner of sandbox sb-1 cannot change")
    refused = statuses.rejected(running(), sandbox_id=SID, error=error, event_id="bad", now=at(2))
    resynced = applied(refused, desired(1), at(3))
    assert conditions(resynced)["Accepted"] == ("False", "InvalidEvent", 1)
    moved_on = applied(resynced, desired(2), at(4))  # the next accepted event replaces it
    assert conditions(moved_on)["Accepted"] == ("True", "EventAccepted", 2)


def step(previous: SandboxStatus | None, kind: str, state: DesiredState, now: datetime) -> SandboxStatus:
    if kind == "applied":
        return applied(previous, state, now)
    if kind == "deleted":
        return deleted(previous, state, now)
    return statuses.failed(previous, desired=state, error=ApplyUnavailable("down"), retryable=True, now=now)


LIVES = [
    (desired(1), "applied"),
    (desired(2, lifecycle=Lifecycle.DELETED), "deleted"),
    (desired(3, incarnation=10), "applied"),
    (desired(4, incarnation=10), "failed"),
    (desired(5, incarnation=10, lifecycle=Lifecycle.DELETED, purge=True), "deleted"),
    (desired(6, incarnation=20), "applied"),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(LIVES)), 4)))
def test_passes_finishing_in_any_order_never_move_the_generation_back(order: tuple[int, ...]) -> None:
    """Passes of two replicas can finish in any order; a stale one changes nothing."""
    status: SandboxStatus | None = None
    newest = 0
    for minute, index in enumerate(order):
        state, kind = LIVES[index]
        before = status
        status = step(status, kind, state, at(minute))
        assert status.observed_generation >= (before.observed_generation if before else 0)
        if state.generation < newest:
            assert status == before  # a stale pass leaves the record exactly as it was
        newest = max(newest, state.generation)
        assert status.observed_generation == newest
        assert all(c.observed_generation <= newest for c in status.conditions)
    assert status is not None and status.condition(ConditionType.ACCEPTED) is not None


@pytest.mark.anyio
async def test_deleted_and_rejected_records_are_written_to_expire_live_ones_never() -> None:
    store = MemoryStore[SandboxStatus]()
    writer = statuses.StatusWriter(store, retention_s=3600.0)
    state = desired(1)
    await writer.write("sb-1", lambda prev: applied(prev, state, at(1)))
    assert store.expires_after("sb-1") is None
    await writer.write("sb-1", lambda prev: deleted(prev, desired(2, lifecycle=Lifecycle.DELETED), at(2)))
    assert store.expires_after("sb-1") == 3600.0
    await writer.write("sb-1", lambda prev: applied(prev, desired(3, incarnation=9), at(3)))  # a re-create
    assert store.expires_after("sb-1") is None
    refused = InvalidEvent("sandbox sb-2 does not exist; delete needs a create first")
    await writer.write(
        "sb-2", lambda prev: statuses.rejected(prev, sandbox_id="sb-2", error=refused, event_id="e", now=at(1))
    )
    assert store.expires_after("sb-2") == 3600.0


def test_an_applier_that_cannot_observe_pods_says_so_for_gitops_and_directory_alike() -> None:
    state = desired(1)
    status = statuses.applied(
        None,
        desired=state,
        namespace="sandbox-a",
        endpoint="https://a",
        objects=(),
        replicas=2,
        ready=None,
        timings_ms={},
        now=at(1),
    )
    ready = status.condition(ConditionType.READY)
    assert status.phase is Phase.PROVISIONING and ready is not None
    assert ready.reason == "NotObservable"
    assert "directory" in ready.message and "GitOps" in ready.message


def test_a_sandbox_that_opted_out_of_idle_scaling_while_idle_is_said_to_run() -> None:
    """``idleSince`` is still set, but the workload rule runs an opted-out sandbox: its status says so."""
    opted_out = SandboxSpec.model_validate(spec("a@acme.com", idleScaling={"enabled": False}))
    state = desired(2, idle_since=at(-30)).model_copy(update={"spec": opted_out})
    status = applied(None, state, at(0))
    assert status.phase is Phase.READY
    idle = next(c for c in status.conditions if c.type is ConditionType.IDLE)
    assert idle.status.value == "False" and idle.reason == "Active"
