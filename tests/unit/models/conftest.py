"""Valid contract bodies (camelCase, as on the wire) that each test bends one field of."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

EventFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def spec() -> dict[str, Any]:
    """A valid SandboxSpec body: the sandbox-pro plan of ceo@acme.com."""
    return {
        "owner": {"email": "ceo@acme.com", "orgRef": {"slug": "acme"}},
        "quota": {"cpu": "2", "memory": "4Gi", "storage": "50Gi", "concurrentSessions": 3},
        "repos": [{"giteaRepo": "acme/eventforge"}],
        "agentCatalogue": ["claude-code"],
        "planId": "sandbox-pro",
    }


@pytest.fixture
def make_event(spec: dict[str, Any]) -> EventFactory:
    """``make_event("create")``: a valid event body of that verb; keyword arguments replace attributes."""

    def build(verb: str, **attributes: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "specversion": "1.0",
            "type": f"io.openova.sandbox.{verb}",
            "id": "0f6c2a1e-4b7d-4c1a-9a43-2f1de0c8b7a1",
            "source": "/catalyst/tenant-service",
            "subject": "sandbox-ceo-at-acme-com",
            "time": "2026-05-21T09:30:00Z",
        }
        if verb in ("create", "update"):
            body["data"] = {"spec": spec}
        body.update(attributes)
        return body

    return build
