"""What the renderer takes and gives: plain frozen values, no behaviour beyond naming files and objects.

What it deliberately does not do: build, validate or serialise objects (``sandboxd.render.sandbox`` and
``sandboxd.render.yamlio`` do); other layers depend on these names, so they only ever grow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sandboxd.models.spec import SandboxSpec


class Workload(StrEnum):
    """Whether session pods should run: replicas are concurrentSessions when ACTIVE, else 0."""

    ACTIVE = "active"
    IDLE = "idle"
    SUSPENDED = "suspended"


@dataclass(frozen=True, slots=True)
class RenderRequest:
    sandbox_id: str
    spec: SandboxSpec
    workload: Workload = Workload.ACTIVE
    #: Changes whenever the LLM-gateway token is rotated; stamped on the pod template so pods restart (G3).
    token_revision: str | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    """One Kubernetes object and the GitOps file it lives in."""

    filename: str
    body: Mapping[str, Any]

    @property
    def api_version(self) -> str:
        return str(self.body["apiVersion"])

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        ns = self.body["metadata"].get("namespace")
        return None if ns is None else str(ns)


@dataclass(frozen=True, slots=True)
class RenderedSandbox:
    """A sandbox's whole runtime, in apply order (the Namespace first)."""

    sandbox_id: str
    owner_uid: str
    namespace: str
    endpoint: str
    replicas: int
    manifests: tuple[Manifest, ...]

    def by_kind(self, kind: str) -> tuple[Manifest, ...]:
        return tuple(m for m in self.manifests if m.kind == kind)
