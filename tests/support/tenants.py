"""The tenant service's side of the tenant bridge, for tests: its stream and its ``sandbox_requested`` events.

``tenant_request`` is the envelope and payload upstream's tenant service publishes (reference §6), with
``data`` fields overridable; ``TENANT_STREAM_CONFIG`` is a stand-in for the tenant service's own stream.
"""

from __future__ import annotations

import json
from typing import Any, Final

from nats.js import api

from sandboxd import naming
from sandboxd.settings import TenantBridgeSettings

DEFAULTS: Final = TenantBridgeSettings()
TENANT_STREAM_CONFIG: Final = api.StreamConfig(name=DEFAULTS.stream, subjects=["catalyst.tenant.>"])


def tenant_request(event_id: str, **data: Any) -> bytes:
    payload = {
        "tenant_id": "t-42",
        "org_slug": "acme",
        "owner_id": "u-7",
        "owner_email": "ceo@acme.com",
        "agents": ["claude-code", " "],
        "sovereign": "omantel",
        "plan_id": "sandbox-ent",
        "requested_at": "2026-05-01T10:00:00Z",
        **data,
    }
    envelope = {
        "id": event_id,
        "type": "tenant.sandbox_requested",
        "source": "tenant-service",
        "timestamp": "2026-05-01T10:00:01Z",
        "tenant_id": "t-42",
        "data": payload,
    }
    return json.dumps(envelope).encode()


def sandbox_of(email: str) -> str:
    """The sandbox id the bridge gives a request for ``email``."""
    return naming.namespace_for(naming.owner_uid(email).value)
