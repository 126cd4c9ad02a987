"""``reconcile.tenants.already_done``: get, then create, as upstream's orchestrator (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.models.spec import SandboxSpec
from sandboxd.reconcile.tenants import already_done, create_event
from support.spine import spec
from support.tenants import sandbox_of, tenant_request

CREATE = create_event(tenant_request("evt-9", owner_email="ceo@acme.com"))


def desired(lifecycle: Lifecycle) -> DesiredState:
    return DesiredState(
        sandbox_id=sandbox_of("ceo@acme.com"),
        generation=4,
        sequence=12,
        event_id="evt-update",
        spec=SandboxSpec.model_validate(spec("ceo@acme.com")),
        owner_uid="ceo-at-acme-com",
        lifecycle=lifecycle,
        accepted_at=datetime(2026, 5, 1, tzinfo=UTC),
    )


def test_a_create_is_published_only_for_a_sandbox_that_is_not_there_and_a_request_not_bridged_before() -> None:
    assert already_done(CREATE, desired=None, last_create_id=None) is None
    assert already_done(CREATE, desired=desired(Lifecycle.DELETED), last_create_id="tenant:evt-1") is None

    exists = already_done(CREATE, desired=desired(Lifecycle.SUSPENDED), last_create_id="tenant:evt-1")
    assert exists is not None and "exists (generation 4)" in exists
    again = already_done(CREATE, desired=None, last_create_id="tenant:evt-9")
    assert again is not None and "bridged before" in again
