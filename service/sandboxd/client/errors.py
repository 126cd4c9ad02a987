"""What the client raises beyond the adapters' broker errors: all of them in the ``sandboxd.errors`` tree.

    SandboxdError
    ├── PermanentError
    │   ├── NotFound            no status for that sandbox (never created, deleted, rejected), or no bucket
    │   ├── AlreadyExists       ``create`` of a sandbox id that is live
    │   ├── SandboxFailed       a wait saw the event refused or the sandbox Failed (the status's own words)
    │   └── StatusUnreadable    a status record this client cannot parse (a newer sandboxd?)
    └── WaitTimedOut            a wait's deadline passed first (the last status seen is on the error)

The broker's own failures (``BrokerUnavailable``, ``BrokerRefused``) come from ``adapters.jetstream.errors``.
"""

from __future__ import annotations

from sandboxd.errors import PermanentError, SandboxdError
from sandboxd.models.status import SandboxStatus


class NotFound(PermanentError):
    """No sandbox (or bucket) by that name; ``--force`` / ``force=True`` publishes anyway."""

    reason = "NotFound"


class AlreadyExists(PermanentError):
    """``create`` of a sandbox id that already has a live sandbox (use ``update``, or ``force=True``)."""

    reason = "AlreadyExists"


class SandboxFailed(PermanentError):
    """A wait ended because the event was refused or the reconcile failed for good."""

    reason = "SandboxFailed"

    def __init__(self, message: str, *, status: SandboxStatus | None = None) -> None:
        super().__init__(message)
        self.status = status


class StatusUnreadable(PermanentError):
    """A status record that does not parse as ``SandboxStatus``: ``sandbox_id`` is its key, ``revision`` its KV
    revision (``None``: not known). Raised by a read by id; what a list or a watch hands ``on_unreadable``."""

    reason = "StatusUnreadable"

    def __init__(self, message: str, *, sandbox_id: str = "", revision: int | None = None) -> None:
        super().__init__(message)
        self.sandbox_id = sandbox_id
        self.revision = revision


class WaitTimedOut(SandboxdError):
    """The condition did not hold within the timeout; ``status`` is the last one seen (``None``: none)."""

    reason = "WaitTimedOut"

    def __init__(self, message: str, *, status: SandboxStatus | None = None) -> None:
        super().__init__(message)
        self.status = status
