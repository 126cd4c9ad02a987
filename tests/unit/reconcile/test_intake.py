"""Intake folds events into the desired state: ordering by stream sequence, staleness, ownership, lifecycle."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from sandboxd.adapters.memory import MemoryStore
from sandboxd.errors import AwaitingCreate, OwnershipConflict
from sandboxd.models.desired import DesiredState, Lifecycle, OwnerClaim
from sandboxd.models.status import Phase, SandboxStatus
from sandboxd.reconcile.intake import Claim, Earlier, Intake, Verdict, claimed, fold
from sandboxd.reconcile.statuses import StatusWriter
from support.spine import event, spec

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Inbound:
    subject: str
    data: bytes
    stream_sequence: int
    headers: Mapping[str, str] = field(default_factory=dict)


def inbound(verb: str, sid: str, seq: int, data: dict[str, Any] | None = None) -> Inbound:
    body = event(verb, sid, data)
    return Inbound(f"sandbox.{verb}.{sid}", body.to_json(), seq, {"Nats-Msg-Id": body.id})


@pytest.fixture
def stores() -> tuple[MemoryStore[DesiredState], MemoryStore[OwnerClaim], MemoryStore[SandboxStatus]]:
    return MemoryStore(), MemoryStore(), MemoryStore()


@pytest.fixture
def intake(stores: tuple[Any, Any, Any]) -> Intake:
    desired, owners, status = stores
    return Intake(desired=desired, owners=owners, status=StatusWriter(status), clock=lambda: NOW)


async def test_events_fold_in_stream_order_and_write_once(intake: Intake, stores: tuple[Any, Any, Any]) -> None:
    desired = stores[0]
    events = [inbound("update", "sb-1", seq, {"spec": spec("a@acme.com", sessions=seq)}) for seq in (3, 1, 2)]
    verdicts = await intake.admit("sb-1", events)
    assert [v.verdict for v in verdicts] == [Verdict.ACCEPTED] * 3
    stored = await desired.get("sb-1")
    assert stored.value.spec.quota.concurrent_sessions == 3
    assert stored.value.sequence == 3 and stored.value.generation == 3
    assert stored.revision == 1  # one desired-state write for all three events


async def test_an_older_event_is_stale_and_changes_nothing(intake: Intake, stores: tuple[Any, Any, Any]) -> None:
    desired = stores[0]
    await intake.admit("sb-1", [inbound("create", "sb-1", 5, {"spec": spec("a@acme.com", sessions=5)})])
    before = await desired.get("sb-1")
    verdicts = await intake.admit("sb-1", [inbound("update", "sb-1", 4, {"spec": spec("a@acme.com", sessions=1)})])
    assert [v.verdict for v in verdicts] == [Verdict.STALE]
    assert await desired.get("sb-1") == before


async def test_a_redelivered_event_asks_for_a_reconcile_without_a_write(
    intake: Intake, stores: tuple[Any, Any, Any]
) -> None:
    desired = stores[0]
    first = inbound("create", "sb-1", 7, {"spec": spec("a@acme.com")})
    await intake.admit("sb-1", [first])
    before = await desired.get("sb-1")
    assert [v.verdict for v in await intake.admit("sb-1", [first])] == [Verdict.ACCEPTED]
    assert await desired.get("sb-1") == before


async def test_invalid_event_is_rejected_with_field_level_reason(intake: Intake, stores: tuple[Any, Any, Any]) -> None:
    status = stores[2]
    body = json.loads(event("create", "sb-1", {"spec": spec("a@acme.com")}).to_json())
    body["data"]["spec"]["quota"]["cpu"] = "lots"
    verdicts = await intake.admit("sb-1", [Inbound("sandbox.create.sb-1", json.dumps(body).encode(), 1)])
    assert verdicts[0].verdict is Verdict.REJECTED
    assert verdicts[0].error is not None
    assert "data.spec.quota.cpu: 'lots' is not valid" in verdicts[0].error.message
    record = (await status.get("sb-1")).value
    assert record.phase is Phase.REJECTED


async def test_subject_and_body_must_agree(intake: Intake) -> None:
    body = event("create", "sb-2", {"spec": spec("a@acme.com")})
    wrong_id = Inbound("sandbox.create.sb-1", body.to_json(), 1)
    wrong_verb = Inbound("sandbox.update.sb-2", body.to_json(), 2)
    [v1] = await intake.admit("sb-1", [wrong_id])
    [v2] = await intake.admit("sb-2", [wrong_verb])
    assert v1.error is not None and "does not match the NATS subject id" in v1.error.message
    assert v2.error is not None and "does not match the NATS subject verb" in v2.error.message


async def test_rejection_of_a_running_sandbox_keeps_its_phase(intake: Intake, stores: tuple[Any, Any, Any]) -> None:
    desired, _, status = stores
    await intake.admit("sb-1", [inbound("create", "sb-1", 1, {"spec": spec("a@acme.com")})])
    await status.put("sb-1", SandboxStatus(sandbox_id="sb-1", phase=Phase.READY, updated_at=NOW), revision=None)
    verdicts = await intake.admit("sb-1", [inbound("update", "sb-1", 2, {"spec": spec("other@acme.com")})])
    assert verdicts[0].verdict is Verdict.REJECTED
    assert "owner of sandbox sb-1 cannot change" in verdicts[0].error.message  # type: ignore[union-attr]
    record = (await status.get("sb-1")).value
    assert record.phase is Phase.READY
    assert record.last_error is not None and record.last_error.reason == "OwnerConflict"
    assert (await desired.get("sb-1")).value.generation == 1


async def test_lifecycle_transitions(intake: Intake, stores: tuple[Any, Any, Any]) -> None:
    desired = stores[0]
    await intake.admit(
        "sb-1",
        [
            inbound("create", "sb-1", 1, {"spec": spec("a@acme.com")}),
            inbound("suspend", "sb-1", 2),
            inbound("update", "sb-1", 3, {"spec": spec("a@acme.com", sessions=4)}),
        ],
    )
    state = (await desired.get("sb-1")).value
    assert state.lifecycle is Lifecycle.SUSPENDED  # a spec update does not resume
    await intake.admit("sb-1", [inbound("resume", "sb-1", 4), inbound("delete", "sb-1", 5, {"purge": True})])
    state = (await desired.get("sb-1")).value
    assert state.lifecycle is Lifecycle.DELETED and state.purge
    [late] = await intake.admit("sb-1", [inbound("suspend", "sb-1", 6)])
    assert late.verdict is Verdict.REJECTED


def replica_of(stores: tuple[Any, Any, Any]) -> tuple[Intake, MemoryStore[DesiredState]]:
    """Another process's intake over the same buckets: it remembers nothing this one wrote."""
    desired, owners, status = (store.replica() for store in stores)
    return Intake(desired=desired, owners=owners, status=StatusWriter(status), clock=lambda: NOW), desired


async def test_a_create_another_replica_already_recorded_folds_onto_it(
    intake: Intake, stores: tuple[Any, Any, Any]
) -> None:
    await intake.admit("sb-1", [inbound("create", "sb-1", 1, {"spec": spec("a@acme.com", sessions=1)})])
    other, desired = replica_of(stores)
    # a create this replica has never seen the sandbox of: its blind create fails and it folds onto the record
    [verdict] = await other.admit("sb-1", [inbound("create", "sb-1", 2, {"spec": spec("a@acme.com", sessions=2)})])
    assert verdict.verdict is Verdict.ACCEPTED
    stored = await desired.get("sb-1")
    assert stored is not None
    assert (stored.value.generation, stored.value.spec.quota.concurrent_sessions) == (2, 2)


async def test_a_redelivered_create_on_another_replica_writes_nothing(
    intake: Intake, stores: tuple[Any, Any, Any]
) -> None:
    create = inbound("create", "sb-1", 1, {"spec": spec("a@acme.com")})
    await intake.admit("sb-1", [create])
    before = await stores[0].get("sb-1")
    other, desired = replica_of(stores)
    assert [v.verdict for v in await other.admit("sb-1", [create])] == [Verdict.ACCEPTED]
    assert await desired.get("sb-1") == before


async def test_an_older_create_on_another_replica_is_stale(intake: Intake, stores: tuple[Any, Any, Any]) -> None:
    await intake.admit("sb-1", [inbound("create", "sb-1", 5, {"spec": spec("a@acme.com", sessions=5)})])
    other, desired = replica_of(stores)
    [verdict] = await other.admit("sb-1", [inbound("create", "sb-1", 3, {"spec": spec("a@acme.com", sessions=3)})])
    assert verdict.verdict is Verdict.STALE
    stored = await desired.get("sb-1")
    assert stored is not None and stored.value.spec.quota.concurrent_sessions == 5


async def test_a_write_from_stale_memory_rereads_and_folds_again(intake: Intake, stores: tuple[Any, Any, Any]) -> None:
    await intake.admit("sb-1", [inbound("create", "sb-1", 1, {"spec": spec("a@acme.com", sessions=1)})])
    other, _ = replica_of(stores)
    await other.admit("sb-1", [inbound("update", "sb-1", 2, {"spec": spec("a@acme.com", sessions=2)})])
    # this intake still remembers generation 1; its compare-and-set fails and it folds onto generation 2
    await intake.admit("sb-1", [inbound("update", "sb-1", 3, {"spec": spec("a@acme.com", sessions=3)})])
    stored = await stores[0].get("sb-1")
    assert (stored.value.generation, stored.value.sequence) == (3, 3)


def test_the_fold_is_pure_and_asks_for_the_owner_claim_it_needs() -> None:
    events = [inbound("create", "sb-1", 4, {"spec": spec("Ana@acme.com")}), inbound("suspend", "sb-1", 5)]
    kwargs: dict[str, Any] = {"earlier": Earlier(), "now": NOW, "traceparent_of": lambda index: None}
    first = fold("sb-1", None, events, claims={}, **kwargs)
    assert first.needs == Claim(uid="ana-at-acme-com", email="ana@acme.com", sandbox_id="sb-1")
    assert first.verdicts == () and first.state is None  # stopped before the create
    held = fold("sb-1", None, events, claims={first.needs: None}, **kwargs)
    assert held.needs is None and [v.verdict for v in held.verdicts] == [Verdict.ACCEPTED] * 2
    assert held.state is not None and held.state.lifecycle is Lifecycle.SUSPENDED and held.state.generation == 2
    refused = fold("sb-1", None, events, claims={first.needs: OwnershipConflict("taken")}, **kwargs)
    assert [v.verdict for v in refused.verdicts] == [Verdict.REJECTED, Verdict.REJECTED]  # no sandbox to suspend
    assert refused.state is None
    again = fold(
        "sb-1", held.state, [inbound("update", "sb-1", 6, {"spec": spec("ana@acme.com")})], claims={}, **kwargs
    )
    assert again.needs is None and again.state is not None  # the sandbox's own owner: no claim needed


def test_an_owner_claim_is_refused_for_another_sandbox_or_another_email() -> None:
    claim = Claim(uid="ana-at-acme-com", email="ana@acme.com", sandbox_id="sb-1")
    assert claimed(None, claim) == OwnerClaim(sandbox_id="sb-1", email="ana@acme.com")
    assert claimed(OwnerClaim(sandbox_id="sb-1", email="ana@acme.com"), claim) is None  # already held
    with pytest.raises(OwnershipConflict, match="already has sandbox sb-2"):
        claimed(OwnerClaim(sandbox_id="sb-2", email="ana@acme.com"), claim)
    with pytest.raises(OwnershipConflict, match="use a distinct email") as other:
        claimed(OwnerClaim(sandbox_id="sb-2", email="ana+x@acme.com"), claim)
    # every console reads the refused sandbox's status: it names neither the other owner's email nor sandbox
    assert "ana+x@acme.com" not in other.value.message and "sb-2" not in other.value.message


# --- two replicas share the consumer: events of one sandbox reach intake out of stream order ----------------


class Stream:
    """The events stream as ``EventLog`` sees it: the creates it holds, and how often it was asked."""

    def __init__(self, *creates: Inbound) -> None:
        self.creates, self.asked = list(creates), 0

    async def create_after(self, sandbox_id: str, sequence: int) -> Inbound | None:
        self.asked += 1
        later = [c for c in self.creates if c.subject.endswith(f".{sandbox_id}") and c.stream_sequence > sequence]
        return min(later, key=lambda c: c.stream_sequence, default=None)

    async def settled(self, sequence: int) -> bool:
        return sequence <= self.ack_floor

    ack_floor = 0


def stream_intake(stores: tuple[Any, Any, Any], stream: Stream) -> Intake:
    desired, owners, status = stores
    return Intake(desired=desired, owners=owners, status=StatusWriter(status), clock=lambda: NOW, events=stream)


@pytest.mark.parametrize("verb", ["suspend", "delete", "update"])
async def test_an_event_ahead_of_its_create_waits_for_it(stores: tuple[Any, Any, Any], verb: str) -> None:
    """A create and the event right behind it reach two replicas, and the later one reaches intake first: it
    waits (retried) instead of being refused as "does not exist" (or beginning a life of its own), and folds onto
    the create once that is recorded, so the publisher's order holds."""
    desired, _, status = stores
    create = inbound("create", "sb-1", 4, {"spec": spec("a@acme.com")})
    stream = Stream(create)
    intake = stream_intake(stores, stream)
    data = {"spec": spec("a@acme.com", sessions=3)} if verb == "update" else None
    behind = inbound(verb, "sb-1", 5, data)
    [early] = await intake.admit("sb-1", [behind])
    assert early.verdict is Verdict.WAITING and isinstance(early.error, AwaitingCreate)
    assert "waiting for its create (event 4)" in early.error.message
    assert await desired.get("sb-1") is None and await status.get("sb-1") is None  # nothing recorded, nothing said
    assert [v.verdict for v in await intake.admit("sb-1", [create])] == [Verdict.ACCEPTED]
    [late] = await intake.admit("sb-1", [behind])  # the retry
    assert late.verdict is Verdict.ACCEPTED
    state = (await desired.get("sb-1")).value
    expected = {"suspend": Lifecycle.SUSPENDED, "delete": Lifecycle.DELETED, "update": Lifecycle.ACTIVE}[verb]
    assert (state.sequence, state.lifecycle, state.incarnation) == (5, expected, 4)


async def test_without_a_create_on_its_way_an_event_is_judged_at_once(stores: tuple[Any, Any, Any]) -> None:
    """No create in the stream (or only an invalid one, which is dead-lettered): a suspend of nothing is refused
    at once, as before; a group that opens with its create never asks the stream."""
    body = json.loads(event("create", "sb-1", {"spec": spec("a@acme.com")}).to_json())
    body["data"]["spec"]["quota"]["cpu"] = "lots"
    stream = Stream(Inbound("sandbox.create.sb-1", json.dumps(body).encode(), 1))
    intake = stream_intake(stores, stream)
    [refused] = await intake.admit("sb-1", [inbound("suspend", "sb-1", 2)])
    assert refused.verdict is Verdict.REJECTED and "does not exist" in refused.error.message  # type: ignore[union-attr]
    [refused] = await intake.admit("sb-2", [inbound("suspend", "sb-2", 3)])
    assert refused.verdict is Verdict.REJECTED and stream.asked == 2
    created = await intake.admit("sb-3", [inbound("create", "sb-3", 4, {"spec": spec("c@acme.com")})])
    suspended = await intake.admit("sb-3", [inbound("suspend", "sb-3", 5)])
    assert [v.verdict for v in (*created, *suspended)] == [Verdict.ACCEPTED] * 2 and stream.asked == 2


async def test_an_invalid_event_older_than_the_recorded_state_is_still_rejected(
    intake: Intake, stores: tuple[Any, Any, Any]
) -> None:
    """A malformed update reaches its replica after the valid one behind it was recorded by another: it is
    dead-lettered all the same (never acknowledged as stale), and the status says why in ``lastError`` while
    ``Accepted`` stays the newer event's."""
    desired, _, status = stores
    await intake.admit("sb-1", [inbound("create", "sb-1", 1, {"spec": spec("a@acme.com")})])
    await intake.admit("sb-1", [inbound("update", "sb-1", 3, {"spec": spec("a@acme.com", sessions=2)})])
    accepted = SandboxStatus(sandbox_id="sb-1", phase=Phase.READY, updated_at=NOW)
    await status.put("sb-1", accepted, revision=None)
    body = json.loads(event("update", "sb-1", {"spec": spec("a@acme.com")}).to_json())
    body["data"]["spec"]["quota"]["cpu"] = "lots"
    malformed = Inbound("sandbox.update.sb-1", json.dumps(body).encode(), 2)
    [verdict] = await intake.admit("sb-1", [malformed])
    assert verdict.verdict is Verdict.REJECTED and verdict.superseded
    record = (await status.get("sb-1")).value
    assert record.last_error is not None and "'lots' is not valid" in record.last_error.message
    assert (record.phase, record.conditions) == (Phase.READY, accepted.conditions)
    assert (await desired.get("sb-1")).value.sequence == 3
    [stale] = await intake.admit("sb-1", [inbound("update", "sb-1", 2, {"spec": spec("a@acme.com")})])
    assert stale.verdict is Verdict.STALE  # a valid older event is still only stale


async def test_a_create_recorded_and_settled_by_another_replica_meanwhile_is_folded_onto(
    stores: tuple[Any, Any, Any],
) -> None:
    """This replica read "nothing recorded", then the other one recorded the create, applied it and acked it
    before the stream was asked: the create is settled, so there is nothing to wait for, and the suspend folds
    onto the record the other replica wrote (read again), never refused as "does not exist"."""
    create = inbound("create", "sb-1", 4, {"spec": spec("a@acme.com")})
    other, _ = replica_of(stores)

    class Racing(Stream):
        async def create_after(self, sandbox_id: str, sequence: int) -> Inbound | None:
            if self.ack_floor == 0:  # the other replica records and acks the create right now
                await other.admit("sb-1", [create])
                self.ack_floor = 4
            return await super().create_after(sandbox_id, sequence)

    intake = stream_intake(stores, Racing(create))
    [suspend] = await intake.admit("sb-1", [inbound("suspend", "sb-1", 5)])
    assert suspend.verdict is Verdict.ACCEPTED
    state = (await stores[0].get("sb-1")).value
    assert (state.sequence, state.lifecycle) == (5, Lifecycle.SUSPENDED)


async def test_a_settled_create_that_was_never_recorded_is_not_waited_for(stores: tuple[Any, Any, Any]) -> None:
    """An earlier life's create (its tombstone expired) or one dead-lettered for an owner conflict: settled, not
    recorded, so the suspend is judged at once."""
    stream = Stream(inbound("create", "sb-1", 4, {"spec": spec("a@acme.com")}))
    stream.ack_floor = 4
    [refused] = await stream_intake(stores, stream).admit("sb-1", [inbound("suspend", "sb-1", 5)])
    assert refused.verdict is Verdict.REJECTED and "does not exist" in refused.error.message  # type: ignore[union-attr]
