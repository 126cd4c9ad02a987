"""Lifecycle events as the client publishes them: validated by the pydantic models before anything is sent.

Every event gets the caller's CloudEvents id, or a fresh uuid4. The id is the event's ``Nats-Msg-Id``, so a
caller that retries a publish with the same id (after a timeout, a crash, a redeployment) is stored once by
JetStream; ``event_id_for`` derives a stable id from what the caller already has (a request id, an order
number) for callers that keep no id of their own.

What it deliberately does not do: publish (``client.sandboxes`` does, through the JetStream adapter).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from sandboxd import naming
from sandboxd.errors import InvalidEvent
from sandboxd.models.base import describe
from sandboxd.models.events import EVENT_CLASSES, Envelope
from sandboxd.models.spec import SandboxSpec

#: One namespace for derived ids: the same (verb, sandbox id, key) always gives the same event id.
EVENT_ID_NAMESPACE = uuid.UUID("6f0f8a52-3c1e-4a8e-9a55-4f3b2b1d5e7c")


def event_id_for(verb: str, sandbox_id: str, key: str) -> str:
    """A stable event id for ``key`` (say a request id): publishing twice with it is deduplicated."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{verb}/{sandbox_id}/{key}"))


def checked_spec(spec: SandboxSpec | Mapping[str, Any]) -> SandboxSpec:
    """The spec as a model; ``InvalidEvent`` naming every problem when a mapping does not validate."""
    if isinstance(spec, SandboxSpec):
        return spec
    try:
        return SandboxSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise InvalidEvent(f"invalid spec: {describe(exc, prefix='spec')}") from exc


def build_event(
    verb: str,
    sandbox_id: str,
    data: Mapping[str, Any] | None = None,
    *,
    event_id: str | None = None,
    source: str,
) -> Envelope:
    """One validated lifecycle event; ``InvalidEvent`` naming every problem otherwise."""
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "subject": sandbox_id,
        "time": datetime.now(UTC),
    }
    if data is not None:
        body["data"] = dict(data)
    try:
        return EVENT_CLASSES[verb].model_validate(body)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid {verb} event: {describe(exc)}") from exc


@dataclass(frozen=True, slots=True)
class Published:
    """What a publish did: the event's stream sequence, and whether JetStream had it already (same id)."""

    verb: str
    sandbox_id: str
    event_id: str
    sequence: int
    duplicate: bool

    @property
    def subject(self) -> str:
        return naming.event_subject(self.verb, self.sandbox_id)
