"""The desired state: the truth a reconcile reads (KV bucket ``sandbox-desired``, key = sandbox id).

Events are kicks; this record is what they leave behind. It is written with compare-and-set and only by an
event newer (by stream sequence) than the one it holds, so duplicates, redeliveries and reordering between
replicas never move it backwards. ``generation`` counts accepted changes and becomes the status's
``observedGeneration``; it never restarts for one sandbox id: a create after a delete continues from the
generation the status record last showed. ``incarnation`` tells the lives of one sandbox id apart: the stream
sequence of the create (or update) that brought it into being, after nothing or after a delete. The owner
claim (bucket ``sandbox-owners``, key = owner-uid) makes one owner-uid belong to one sandbox and one email.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from sandboxd.models.base import Contract, Timestamp
from sandboxd.models.events import SandboxIdField
from sandboxd.models.spec import SandboxSpec


class Lifecycle(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"


class DesiredState(Contract):
    sandbox_id: SandboxIdField
    generation: int = Field(ge=1, description="Accepted changes; never restarts for one sandbox id.")
    incarnation: int = Field(
        default=0,
        ge=0,
        description="Stream sequence of the event that began this life of the sandbox (0: recorded before "
        "incarnations were kept); a create after a delete begins a new one.",
    )
    sequence: int = Field(ge=0, description="Stream sequence of the last event accepted.")
    event_id: str
    spec: SandboxSpec
    owner_uid: str
    lifecycle: Lifecycle = Lifecycle.ACTIVE
    purge: bool = False
    idle_since: Timestamp | None = Field(default=None, description="Set by the idle sweeper; replicas 0.")
    accepted_at: Timestamp
    traceparent: str | None = None


class OwnerClaim(Contract):
    sandbox_id: SandboxIdField
    email: str
