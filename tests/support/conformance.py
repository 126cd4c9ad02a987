"""What the conformance suites (tests/integration/conformance) hand their tests: the same shape per implementation."""

from __future__ import annotations

from dataclasses import dataclass

from sandboxd.models.status import SandboxStatus
from sandboxd.reconcile.ports import Store


@dataclass
class Views:
    """Two processes' views (``mine``, ``theirs``) of one fresh bucket of ``SandboxStatus`` records."""

    mine: Store[SandboxStatus]
    theirs: Store[SandboxStatus]
