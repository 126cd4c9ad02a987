"""SandboxStatus and its conditions: lastTransitionTime moves only when a condition's status changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from sandboxd.models import (
    Condition,
    ConditionStatus,
    ConditionType,
    ObjectRef,
    Phase,
    SandboxStatus,
    describe,
    set_condition,
)

T0 = datetime(2026, 5, 21, 9, 30, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def ready(status: ConditionStatus, *, reason: str, now: datetime, generation: int = 1) -> list[Condition]:
    return [
        Condition(
            type=ConditionType.READY,
            status=status,
            reason=reason,
            message=f"{reason} at {now:%H:%M}",
            last_transition_time=now,
            observed_generation=generation,
        )
    ]


def test_a_new_condition_starts_now() -> None:
    [condition] = set_condition(
        [], kind=ConditionType.READY, status=ConditionStatus.FALSE, reason="Pending", message="", now=T0, generation=1
    )
    assert condition.last_transition_time == T0
    assert condition.observed_generation == 1


def test_same_status_keeps_last_transition_time_but_updates_the_rest() -> None:
    before = ready(ConditionStatus.FALSE, reason="ReplicasNotReady", now=T0)
    [after] = set_condition(
        before,
        kind=ConditionType.READY,
        status=ConditionStatus.FALSE,
        reason="ImagePullBackOff",
        message="1/3 ready",
        now=T1,
        generation=2,
    )
    assert after.last_transition_time == T0
    assert (after.reason, after.message, after.observed_generation) == ("ImagePullBackOff", "1/3 ready", 2)


def test_a_status_change_moves_last_transition_time() -> None:
    before = ready(ConditionStatus.FALSE, reason="ReplicasNotReady", now=T0)
    [after] = set_condition(
        before,
        kind=ConditionType.READY,
        status=ConditionStatus.TRUE,
        reason="ReplicasReady",
        message="3/3 ready",
        now=T1,
        generation=1,
    )
    assert after.last_transition_time == T1
    assert after.status is ConditionStatus.TRUE


def test_other_conditions_are_kept_and_the_order_is_fixed() -> None:
    conditions = ready(ConditionStatus.TRUE, reason="ReplicasReady", now=T0)
    for kind in (ConditionType.IDLE, ConditionType.TOKEN_ISSUED, ConditionType.ACCEPTED, ConditionType.APPLIED):
        conditions = set_condition(
            conditions, kind=kind, status=ConditionStatus.TRUE, reason=kind.value, message="", now=T1, generation=1
        )
    assert [c.type for c in conditions] == list(ConditionType)
    assert conditions[2].last_transition_time == T0, "setting other kinds leaves Ready alone"


def test_set_condition_does_not_change_its_input() -> None:
    before = ready(ConditionStatus.FALSE, reason="ReplicasNotReady", now=T0)
    snapshot = list(before)
    set_condition(
        before, kind=ConditionType.READY, status=ConditionStatus.TRUE, reason="R", message="", now=T1, generation=1
    )
    assert before == snapshot


def status(**fields: object) -> SandboxStatus:
    """A status record; keyword arguments (camelCase) replace or add fields."""
    body = {"sandboxId": "sandbox-ceo-at-acme-com", "phase": "Ready", "updatedAt": "2026-05-21T09:30:00Z"}
    return SandboxStatus.model_validate({**body, **fields})


def test_status_round_trips_and_leaves_nones_out() -> None:
    original = status(
        conditions=[c.model_dump(mode="json") for c in ready(ConditionStatus.TRUE, reason="ReplicasReady", now=T0)],
        appliedObjects=[{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "pty-server", "namespace": "ns"}],
        replicas={"desired": 3, "ready": 3},
        timingsMs={"apply": 812.5},
    )
    wire = original.to_json().decode()
    assert SandboxStatus.model_validate_json(wire) == original
    assert '"lastTransitionTime":"2026-05-21T09:30:00Z"' in wire
    assert "lastError" not in wire
    assert "idleSince" not in wire
    assert original.applied_objects == [
        ObjectRef(api_version="apps/v1", kind="StatefulSet", name="pty-server", namespace="ns")
    ]


def test_condition_lookup() -> None:
    current = status(conditions=ready(ConditionStatus.TRUE, reason="ReplicasReady", now=T0))
    found = current.condition(ConditionType.READY)
    assert found is not None
    assert found.reason == "ReplicasReady"
    assert current.condition(ConditionType.IDLE) is None


def test_every_phase_of_the_architecture() -> None:
    expected = ["Pending", "Provisioning", "Ready", "Idle", "Suspended", "Deleting", "Deleted", "Failed", "Rejected"]
    assert [p.value for p in Phase] == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"phase": "Running"}, "phase: Input should be 'Pending', 'Provisioning'"),
        ({"attempts": -1}, "attempts: Input should be greater than or equal to 0"),
        ({"replicas": {"desired": -1}}, "replicas.desired: Input should be greater than or equal to 0"),
        ({"secretToken": "x"}, "secretToken: is not a known field"),
        (
            {
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "", "lastTransitionTime": "2026-05-21T09:30:00Z"}
                ]
            },
            "conditions.0.reason: String should have at least 1 character",
        ),
        (
            {
                "conditions": [
                    {"type": "Ready", "status": "Yes", "reason": "R", "lastTransitionTime": "2026-05-21T09:30:00Z"}
                ]
            },
            "conditions.0.status: Input should be 'True', 'False' or 'Unknown'",
        ),
    ],
)
def test_a_refusal_names_the_field(fields: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError) as refused:
        status(**fields)
    assert expected in describe(refused.value)


def test_status_is_frozen() -> None:
    current = status()
    with pytest.raises(ValidationError, match="frozen"):
        current.phase = Phase.FAILED  # type: ignore[misc]
    changed = current.model_copy(update={"phase": Phase.FAILED})
    assert (current.phase, changed.phase) == (Phase.READY, Phase.FAILED)
