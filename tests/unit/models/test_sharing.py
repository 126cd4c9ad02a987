"""Sharing the equal parts of held records: same values, same wire form, fewer objects."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sandboxd.models.desired import DesiredState
from sandboxd.models.sharing import Sharing

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def desired(n: int, spec: dict[str, Any]) -> DesiredState:
    """A record as the view parses it from the wire (each from its own body, so no parts are shared yet)."""
    body = {
        "sandboxId": f"sb-{n}",
        "generation": 1,
        "sequence": n,
        "eventId": f"e{n}",
        "spec": {**spec, "owner": {"email": f"user{n}@acme.com", "orgRef": {"slug": "acme"}}},
        "ownerUid": f"user{n}-at-acme-com",
        "acceptedAt": "2026-12-03T12:00:00Z",
    }
    return DesiredState.model_validate_json(json.dumps(body))


def test_equal_parts_of_two_records_become_one_and_nothing_they_say_changes(spec: dict[str, Any]) -> None:
    first, second = desired(1, spec), desired(2, spec)
    wire = (first.to_json(), second.to_json(), first.model_dump(), second.model_dump(exclude_unset=True))
    sharing = Sharing()
    assert sharing.share(first) is first
    sharing.share(second)

    assert second.spec.quota is first.spec.quota
    assert second.spec.repos is first.spec.repos
    assert second.spec.agent_catalogue is first.spec.agent_catalogue
    assert second.spec.owner.org_ref is first.spec.owner.org_ref
    assert second.__pydantic_fields_set__ is first.__pydantic_fields_set__
    assert second.spec.owner is not first.spec.owner  # the email differs
    assert (first.to_json(), second.to_json(), first.model_dump(), second.model_dump(exclude_unset=True)) == wire


def test_parts_equal_in_value_but_not_in_the_fields_set_are_not_merged(spec: dict[str, Any]) -> None:
    # ``enabled`` given explicitly or left to its default: equal values, different exclude_unset dumps
    explicit = desired(1, {**spec, "idleScaling": {"enabled": True, "timeoutMinutes": 30}})
    implicit = desired(2, {**spec, "idleScaling": {"timeoutMinutes": 30}})
    assert explicit.spec.idle_scaling == implicit.spec.idle_scaling
    sharing = Sharing()
    sharing.share(explicit)
    sharing.share(implicit)

    assert implicit.spec.idle_scaling is not explicit.spec.idle_scaling
    assert implicit.spec.model_dump(exclude_unset=True)["idleScaling"] == {"timeoutMinutes": 30}


def test_a_copy_with_an_update_leaves_the_shared_fields_set_alone(spec: dict[str, Any]) -> None:
    first, second = desired(1, spec), desired(2, spec)
    sharing = Sharing()
    sharing.share(first)
    sharing.share(second)
    before = set(first.__pydantic_fields_set__)

    idle = second.model_copy(update={"idle_since": NOW, "generation": 2})

    assert first.__pydantic_fields_set__ == before
    assert "idle_since" in idle.model_fields_set


def test_a_full_table_starts_again_and_what_was_shared_stays_shared(spec: dict[str, Any]) -> None:
    sharing = Sharing(capacity=8)
    records = [desired(n, spec) for n in range(30)]
    for record in records:
        sharing.share(record)

    assert records[1].spec.quota is records[0].spec.quota
    assert all(r.spec.quota == records[0].spec.quota for r in records)
    assert len({id(r.spec.quota) for r in records}) <= len(records) // 3
