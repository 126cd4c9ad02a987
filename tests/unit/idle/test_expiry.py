"""Expiry: the sweeper deletes a sandbox whose ``spec.expiry.at`` has passed, with one derived delete event.

In-memory ports and injected time (the sweeper tests' rig); the event is read back as a publisher's would be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from sandboxd.errors import BrokerUnavailable
from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.models.events import DeleteEvent, parse_event
from sandboxd.models.spec import ExpiryPolicy
from sandboxd.reconcile import expiry, statuses
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.runtime.outbox import CommandOutbox
from sandboxd.runtime.sweeper import SweepEffects, Sweeper, SweepFeeds, SweepPolicy
from unit.idle.factories import T0, desired, minutes
from unit.idle.test_idle_sweeper import Rig, rig

pytestmark = pytest.mark.anyio


@dataclass
class Events:
    sent: list[DeleteEvent] = field(default_factory=list)
    failing: bool = False

    async def publish(self, event: DeleteEvent) -> None:
        if self.failing:
            raise BrokerUnavailable("no NATS")
        self.sent.append(event)


def expiring(sandbox_id: str = "sb-1", *, at: datetime, policy: str = "retain", **kwargs: Any) -> DesiredState:
    state = desired(sandbox_id, **kwargs)
    wire = state.spec.model_dump(mode="json", exclude_none=True)
    spec = state.spec.model_validate({**wire, "expiry": {"at": at.isoformat(), "policy": policy}})
    return state.model_copy(update={"spec": spec, "incarnation": 7})


def with_events(r: Rig, events: Events) -> Rig:
    r.sweeper = Sweeper(
        feeds=SweepFeeds(view=r.view, activity=r.book),
        effects=SweepEffects(
            desired=r.desired,
            status=StatusWriter(r.status),
            commands=CommandOutbox(r.commands),
            kick=r.kicked.append,
            events=events,
        ),
        policy=SweepPolicy(default_timeout_minutes=600),
        clock=lambda: T0,
    )
    return r


async def test_nothing_is_published_before_the_time_and_one_delete_at_it() -> None:
    events = Events()
    r = with_events(rig(), events)
    await r.put(expiring(at=T0 + minutes(60)))

    await r.sweep(59)
    assert events.sent == []

    await r.sweep(60)
    await r.sweep(61)  # a later sweep of this process does not publish it again

    [event] = events.sent
    assert event.id == "expire:sb-1:7:20261127T100000Z"
    assert event.subject == "sb-1" and event.source == expiry.SOURCE
    assert event.data.purge is False
    assert parse_event(event.to_json()) == event  # a delete any publisher could have sent


async def test_the_id_is_the_same_for_every_replica_and_moves_with_the_time() -> None:
    state = expiring(at=T0 + minutes(5), policy="purge")
    first = expiry.delete_event(state, now=T0 + minutes(5))
    second = expiry.delete_event(state, now=T0 + minutes(9))  # another replica, a later sweep
    assert first.id == second.id and first.data.purge is True

    moved = expiring(at=T0 + minutes(6))
    assert expiry.delete_event(moved, now=T0 + minutes(9)).id != first.id
    reborn = state.model_copy(update={"incarnation": 8})
    assert expiry.delete_event(reborn, now=T0 + minutes(9)).id != first.id


async def test_a_deleted_or_unexpiring_sandbox_is_never_due() -> None:
    assert not expiry.due(desired(), now=T0 + minutes(10**6))
    gone = expiring(at=T0, lifecycle=Lifecycle.DELETED)
    assert not expiry.due(gone, now=T0 + minutes(1))
    with pytest.raises(ValueError, match="not due"):
        expiry.delete_event(expiring(at=T0 + minutes(1)), now=T0)


async def test_a_failed_publish_is_tried_again_at_the_next_sweep() -> None:
    events = Events(failing=True)
    r = with_events(rig(), events)
    await r.put(expiring(at=T0))

    await r.sweep(1)
    assert events.sent == [] and r.sweeper.stats.errors == 1

    events.failing = False
    await r.sweep(2)
    assert len(events.sent) == 1 and r.sweeper.stats.expired == 1


async def test_status_shows_when_and_how_the_sandbox_expires() -> None:
    state = expiring(at=T0 + minutes(90), policy="purge")
    status = statuses.applied(
        None,
        desired=state,
        namespace="sandbox-sb-1-at-acme-com",
        endpoint="https://sandbox.example.com/sessions/sb-1-at-acme-com/",
        objects=(),
        replicas=2,
        ready=0,
        timings_ms={},
        now=T0,
    )
    assert status.expires_at == T0 + minutes(90)
    assert status.expiry_policy is ExpiryPolicy.PURGE
    assert b'"expiresAt":"2026-11-27T10:30:00Z"' in status.to_json()
    removed = state.model_copy(update={"lifecycle": Lifecycle.DELETED})
    gone = statuses.deleted(status, desired=removed, timings_ms={}, now=T0)
    assert gone.expires_at is None and gone.expiry_policy is None
