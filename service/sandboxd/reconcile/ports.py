"""The protocols a reconcile talks to; adapters implement them, tests use the in-memory fakes.

``Applier`` is where rendered objects go (Kubernetes server-side apply, a GitOps commit, a folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sandboxd.models.status import ObjectRef
from sandboxd.render.model import RenderedSandbox


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: tuple[ObjectRef, ...]
    #: False when the target already held exactly these objects (no write, no commit).
    changed: bool
    #: Ready pty-server replicas the target reports; None when it cannot know (GitOps, directory).
    ready_replicas: int | None = None
    pruned: tuple[ObjectRef, ...] = field(default=())


class Applier(Protocol):
    """Makes a target hold exactly a sandbox's rendered objects. Every method is idempotent.

    Errors are ``sandboxd.errors.ApplyRejected`` (permanent, with the target's own message) or
    ``ApplyUnavailable`` (retryable).
    """

    async def apply(self, sandbox: RenderedSandbox, *, generation: int) -> ApplyResult:
        """Create or update every object; prune the sandbox's objects that are no longer rendered (PVCs kept)."""
        ...

    async def delete(self, sandbox: RenderedSandbox, *, purge: bool) -> None:
        """Retain: remove workloads, Service, route and Secrets; keep namespace, quota and PVCs.

        Purge: remove everything, the namespace and its PVCs included, and return once it is gone.
        """
        ...

    async def ready_replicas(self, sandbox: RenderedSandbox) -> int | None:
        """Ready pty-server replicas now, or None when the target cannot tell."""
        ...

    async def aclose(self) -> None: ...

