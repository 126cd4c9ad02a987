"""The tenant bridge's translation: a tenant service ``sandbox_requested`` event → a ``sandbox.create`` event.

The tenant service (upstream §6) publishes ``catalyst.tenant.sandbox_requested`` on stream ``CATALYST_ORG``: an
envelope (``id``, ``type``, ``source``, ``timestamp``, ``tenant_id``, ``data``, ``metadata``) whose ``data`` is
``SandboxRequestedPayload`` (``tenant_id``, ``org_slug``, ``owner_id``, ``owner_email``, ``agents``,
``sovereign``, ``plan_id``, ``requested_at``). ``create_event`` turns one into the create a publisher would have
sent: the owner and organisation, the plan's quota (``PLAN_QUOTAS``, upstream's ``quotaForPlan``), the plan id
and the agents.

- The sandbox id is ``sandbox-<owner-uid>`` (``naming.namespace_for``), upstream's CR name for the same email,
  always a valid DNS label.
- The create's id is ``tenant:<tenant event id>`` (the tenant message's ``Nats-Msg-Id``, else the envelope's
  ``id``): a redelivered or re-published tenant event gives the same create, which JetStream stores once.
- Get, then create, as upstream's orchestrator: ``already_done`` says why a create would do nothing the request
  asked for, which JetStream's dedupe window (2 minutes) cannot say of a request sent again later: the sandbox
  exists (a request never changes an existing sandbox: no new generation, no plan over a later update), or the
  sandbox's last create is this very request's (it was bridged before: a deleted sandbox is not brought back).
- ``sandbox-ent`` asks upstream for ``concurrentSessions: 0``, which upstream's own CRD refuses (G5). Here it is
  ``ENTERPRISE_SESSIONS`` (10), the most the spec allows: the enterprise plan gets the most sessions.
- Anything that cannot become a valid create (not JSON, no owner email, an unknown agent, ...) raises
  ``InvalidEvent`` with the reason; the bridge dead-letters it.

Pure: no I/O, no clock (the tenant event's ``timestamp`` becomes the create's ``time``; ``already_done`` is
handed what the bridge read).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandboxd import naming
from sandboxd.errors import InvalidEvent
from sandboxd.models.base import describe
from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.models.events import CreateEvent

SOURCE: Final = "sandboxd/tenant-bridge"
EVENT_TYPE: Final = "tenant.sandbox_requested"
#: The most sessions the spec allows; what ``sandbox-ent`` gets instead of upstream's invalid 0.
ENTERPRISE_SESSIONS: Final = 10
#: upstream ``quotaForPlan`` (§6): cpu, memory, storage, concurrent sessions; an unknown plan gets ``DEFAULT``.
PLAN_QUOTAS: Final[Mapping[str, tuple[str, str, str, int]]] = {
    "sandbox-free": ("500m", "1Gi", "5Gi", 1),
    "sandbox-pro": ("2", "4Gi", "50Gi", 3),
    "sandbox-ent": ("8", "16Gi", "500Gi", ENTERPRISE_SESSIONS),
}
DEFAULT_QUOTA: Final = ("4", "8Gi", "50Gi", 3)


class _Tolerant(BaseModel):
    """The tenant service's JSON: snake_case, and fields this bridge does not read are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class SandboxRequested(_Tolerant):
    """The tenant service's ``SandboxRequestedPayload``: what the bridge reads of it (``sovereign`` and
    ``requested_at`` are ignored)."""

    tenant_id: str = ""
    org_slug: str = Field(min_length=1)
    owner_id: str = ""
    owner_email: str = Field(min_length=1)
    agents: list[str] = Field(default_factory=list)
    plan_id: str = ""


class TenantEvent(_Tolerant):
    """The tenant service's event envelope (upstream ``natsbus.Event``); ``type``, when set, is
    ``tenant.sandbox_requested``, and ``id`` is the fallback dedupe key when the message has no ``Nats-Msg-Id``."""

    id: str = Field(min_length=1, max_length=200)
    type: str = ""
    timestamp: datetime | None = None
    data: SandboxRequested


def quota_for(plan_id: str) -> dict[str, Any]:
    cpu, memory, storage, sessions = PLAN_QUOTAS.get(plan_id, DEFAULT_QUOTA)
    return {"cpu": cpu, "memory": memory, "storage": storage, "concurrentSessions": sessions}


def create_event(body: bytes, *, message_id: str | None = None) -> CreateEvent:
    """The create for one tenant event; ``InvalidEvent`` (with the reason) when it cannot be one."""
    try:
        event = TenantEvent.model_validate(json.loads(body))
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidEvent(_why(exc, "tenant event")) from exc
    if event.type and event.type != EVENT_TYPE:
        raise InvalidEvent(f"tenant event type {event.type!r} is not {EVENT_TYPE!r}")
    request = event.data
    spec: dict[str, Any] = {
        "owner": {"email": request.owner_email.strip(), "orgRef": {"slug": request.org_slug.strip()}},
        "quota": quota_for(request.plan_id.strip()),
        "agentCatalogue": [agent.strip() for agent in request.agents if agent.strip()],
    }
    if request.plan_id.strip():
        spec["planId"] = request.plan_id.strip()
    try:
        uid = naming.owner_uid(request.owner_email.strip()).value
        return CreateEvent.model_validate(
            {
                "specversion": "1.0",
                "id": f"tenant:{message_id or event.id}",
                "source": SOURCE,
                "subject": naming.namespace_for(uid),
                "time": event.timestamp,
                "data": {"spec": spec},
            }
        )
    except (ValueError, ValidationError) as exc:
        raise InvalidEvent(_why(exc, "sandbox.create")) from exc


def already_done(create: CreateEvent, *, desired: DesiredState | None, last_create_id: str | None) -> str | None:
    """Why publishing ``create`` would do nothing its request asked for (``None``: publish it).

    ``desired`` is the sandbox's desired state, ``last_create_id`` the id of the last create SANDBOX_EVENTS holds
    for it (``None``: none, or the stream no longer holds it).
    """
    if last_create_id == create.id:
        return f"the request was bridged before ({create.id}); sandbox {create.subject} is not created again"
    if desired is not None and desired.lifecycle is not Lifecycle.DELETED:
        return f"sandbox {create.subject} exists (generation {desired.generation}); a request does not change it"
    return None


def _why(exc: Exception, what: str) -> str:
    if isinstance(exc, ValidationError):
        return f"{what}: {describe(exc)}"
    return f"{what}: {exc.__class__.__name__}: {str(exc)[:200]}"
