"""The status projection: one record per sandbox in the ``sandbox-status`` KV bucket (key = sandbox id).

Consoles and CLIs read it with a plain KV ``get`` or ``watch``. Conditions follow the Gateway API shape
(type, status, reason, message, lastTransitionTime, observedGeneration); ``lastTransitionTime`` moves only when
a condition's status changes. No secret value ever appears here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from sandboxd.models.base import Contract, Timestamp
from sandboxd.models.bounds import BoundedMessage
from sandboxd.models.spec import ExpiryPolicy
from sandboxd.naming import SandboxId


class Phase(StrEnum):
    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    READY = "Ready"
    IDLE = "Idle"
    SUSPENDED = "Suspended"
    DELETING = "Deleting"
    DELETED = "Deleted"
    FAILED = "Failed"
    REJECTED = "Rejected"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    ACCEPTED = "Accepted"  # the latest event was valid and recorded as the desired state
    APPLIED = "Applied"  # the rendered objects were written to the target
    READY = "Ready"  # the session pods are ready (desired == ready replicas)
    IDLE = "Idle"  # scaled to zero for inactivity (or suspended)
    TOKEN_ISSUED = "TokenIssued"  # noqa: S105 - a condition type; the token is in the sandbox's Secret


_CONDITION_ORDER = {kind: index for index, kind in enumerate(ConditionType)}  # the order conditions are listed in


class Condition(Contract):
    type: ConditionType
    status: ConditionStatus
    reason: str = Field(min_length=1, max_length=128)
    message: BoundedMessage = Field(default="", description="Cut to 4,096 characters (with …) when longer.")
    last_transition_time: Timestamp
    observed_generation: int = Field(default=0, ge=0)


class ObjectRef(Contract):
    api_version: str
    kind: str
    name: str
    namespace: str | None = None


class Replicas(Contract):
    desired: int = Field(ge=0)
    ready: int = Field(default=0, ge=0)


class LastError(Contract):
    reason: str
    message: BoundedMessage
    at: Timestamp
    retryable: bool


class TokenState(Contract):
    """The LLM-gateway token's bookkeeping, written by the token writer; never the token itself (it lives only
    in the sandbox's Secret)."""

    revision: int = Field(ge=1, description="Bumped on every mint; stamped on the pod templates so pods restart.")
    incarnation: int = Field(default=0, ge=0, description="The sandbox incarnation the token was minted for.")
    expires_at: Timestamp
    rotated_at: Timestamp
    rotate_at: Timestamp = Field(description="When the writer mints the next one (expiry minus the lead).")
    fingerprint: str = Field(
        description="Digest of the channels and capabilities minted with; a change mints again at once."
    )


class TokenClaim(Contract):
    """A token writer minting for this sandbox right now, claimed by compare-and-set before it asks the bridge:
    every other writer stands back until the token is recorded (which ends the claim) or ``until`` passes."""

    holder: str = Field(description="The writer that claimed the mint (an id of its own, per process).")
    revision: int = Field(ge=1, description="The token revision it is minting.")
    until: Timestamp = Field(description="When the claim lapses if its writer never finishes (it died).")


class SandboxStatus(Contract):
    """What a console shows; rewritten (compare-and-set) after every reconcile and rejection."""

    sandbox_id: SandboxId
    phase: Phase
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int = Field(default=0, ge=0, description="Desired-state generation reconciled.")
    incarnation: int = Field(
        default=0, ge=0, description="Desired-state incarnation described; a re-created sandbox has a new one."
    )
    observed_sequence: int = Field(
        default=0,
        ge=0,
        description="Stream sequence of the desired state reconciled; no event up to it is applied again.",
    )
    owner_uid: str | None = None
    namespace: str | None = None
    endpoint: str | None = Field(default=None, description="Public sessions URL.")
    applied_objects: list[ObjectRef] = Field(default_factory=list)
    replicas: Replicas | None = None
    last_activity_at: Timestamp | None = None
    expires_at: Timestamp | None = Field(
        default=None, description="When expiry deletes the sandbox (spec.expiry.at); time left = expiresAt - now."
    )
    expiry_policy: ExpiryPolicy | None = Field(default=None, description="What expiry keeps: retain or purge.")
    idle_since: Timestamp | None = None
    idle_reason: str | None = None
    last_error: LastError | None = None
    attempts: int = Field(default=0, ge=0, description="Reconcile attempts for the current generation.")
    timings_ms: dict[str, float] = Field(default_factory=dict, description="Per-stage durations, ms.")
    event_id: str | None = Field(default=None, description="CloudEvents id of the last event applied.")
    token: TokenState | None = Field(default=None, description="LLM-gateway token bookkeeping (no token value).")
    token_claim: TokenClaim | None = Field(default=None, description="A token writer minting now (the others wait).")
    updated_at: Timestamp
    deleted_at: Timestamp | None = None

    def condition(self, kind: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)


def set_condition(
    conditions: list[Condition],
    *,
    kind: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> list[Condition]:
    """Return ``conditions`` with ``kind`` set; keeps ``lastTransitionTime`` unless the status changed."""
    old = next((c for c in conditions if c.type == kind), None)
    since = old.last_transition_time if old is not None and old.status == status else now
    new = Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    kept = [c for c in conditions if c.type != kind]
    return sorted([*kept, new], key=lambda c: _CONDITION_ORDER[c.type])
