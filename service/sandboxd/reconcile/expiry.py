"""Expiry: a sandbox whose ``spec.expiry.at`` has passed is deleted by an ordinary, idempotent delete event.

The sweeper asks ``due`` about every sandbox it looks at and publishes ``delete_event`` for each one that is
due. The event goes through the stream like any publisher's, so intake, the audit log, status and the retain or
purge rule (``spec.expiry.policy``) are exactly those of a ``sandboxctl delete``.

The event id is derived (``event_id``: sandbox id, incarnation, expiry time), and sent as ``Nats-Msg-Id``: every
replica that finds the same sandbox due publishes the same event, and JetStream stores it once. A re-created
sandbox is a new incarnation, so its own expiry gets a new id; an update that moves ``at`` gets a new one too.

What it deliberately does not do: publish (the ``EventPublisher`` port), or guard against an update that
extends the expiry racing a delete already published for the old time (the delete wins: extend before the
time, not at it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Protocol

from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.models.events import DeleteData, DeleteEvent
from sandboxd.models.spec import ExpiryPolicy

#: The CloudEvents ``source`` of the delete events expiry publishes.
SOURCE: Final = "sandboxd/expiry"


class EventPublisher(Protocol):
    async def publish(self, event: DeleteEvent) -> None:
        """Durably publish, deduplicated by ``event.id``; ``BrokerUnavailable`` when it could not."""
        ...


def expires_at(desired: DesiredState) -> datetime | None:
    """When this sandbox shuts down; None when it never does or is already deleted."""
    expiry = desired.spec.expiry
    if expiry is None or desired.lifecycle is Lifecycle.DELETED:
        return None
    return expiry.at


def due(desired: DesiredState, *, now: datetime) -> bool:
    at = expires_at(desired)
    return at is not None and now >= at


def event_id(desired: DesiredState, at: datetime) -> str:
    """Deterministic: the same sandbox life and expiry time always give the same id."""
    return f"expire:{desired.sandbox_id}:{desired.incarnation}:{at.strftime('%Y%m%dT%H%M%SZ')}"


def delete_event(desired: DesiredState, *, now: datetime) -> DeleteEvent:
    """The delete that carries out an expiry; ``ValueError`` for a sandbox that is not due."""
    expiry = desired.spec.expiry
    if expiry is None or not due(desired, now=now):
        raise ValueError(f"sandbox {desired.sandbox_id} is not due to expire at {now.isoformat()}")
    return DeleteEvent(
        specversion="1.0",
        id=event_id(desired, expiry.at),
        source=SOURCE,
        subject=desired.sandbox_id,
        time=now,
        data=DeleteData(purge=expiry.policy is ExpiryPolicy.PURGE),
    )
