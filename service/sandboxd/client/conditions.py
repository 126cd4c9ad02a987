"""Conditions to wait for: a predicate over a sandbox's status (``None``: it has no status record).

``wait_for`` evaluates a condition on the current status and then on every change until it holds. A condition
may also raise ``SandboxFailed`` to end the wait early: ``settled(published)`` does when the status says the
event was refused (``Accepted=False`` naming its id) or the sandbox failed for good after it.

What a verb settles as, once the reconcile of its event (or of a later one) is recorded in the status:

    create, resume   available, decided by the ``Ready`` condition, per applier:
                     - kubernetes (and memory), which observe session pods: ``Ready=True``, i.e. every
                       session pod ready. ``Ready=False`` (``ReplicasNotReady``: pods starting, images
                       pulling) is not yet; the applier's readiness watch records ``Ready=True`` once they
                       are, and a wait that runs out says which of the two it last saw;
                     - gitops, directory, which cannot: ``Applied=True`` with ``Ready=Unknown``
                       (``NotObservable``): written; the cluster applies the commit on its own
    update           available, or ``Suspended`` / ``Idle`` (an update does not wake a sandbox)
    suspend          ``Suspended``
    delete           ``Deleted``, or no status record left
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sandboxd.client.errors import SandboxFailed
from sandboxd.client.events import Published
from sandboxd.models.status import ConditionStatus, ConditionType, Phase, SandboxStatus

Predicate = Callable[[SandboxStatus | None], bool]


@dataclass(frozen=True, slots=True)
class Condition:
    """A named predicate; the name is what a timeout says was not reached."""

    name: str
    holds: Predicate

    def __call__(self, status: SandboxStatus | None) -> bool:
        return self.holds(status)


def _available(status: SandboxStatus | None) -> bool:
    """``Ready=True`` where the applier observes pods; ``Applied=True`` and ``Ready=Unknown`` where it cannot."""
    if status is None or status.phase not in (Phase.READY, Phase.PROVISIONING):
        return False
    ready, applied = status.condition(ConditionType.READY), status.condition(ConditionType.APPLIED)
    if ready is None or applied is None or applied.status is not ConditionStatus.TRUE:
        return False
    return ready.status is ConditionStatus.TRUE or ready.status is ConditionStatus.UNKNOWN


def describe(status: SandboxStatus | None) -> str:
    """Where a sandbox is, in a few words: its phase and, while it is not ready, its ``Ready`` condition."""
    if status is None:
        return "it has no status"
    ready = status.condition(ConditionType.READY)
    if ready is None or ready.status is ConditionStatus.TRUE or status.phase is not Phase.PROVISIONING:
        return f"it is {status.phase.value}"
    said = f": {ready.message}" if ready.message else ""
    return f"it is {status.phase.value}, Ready={ready.status.value} {ready.reason}{said}"


def phase(*phases: Phase) -> Condition:
    """The status is in one of ``phases``."""
    return Condition("phase " + " or ".join(p.value for p in phases), lambda s: s is not None and s.phase in phases)


AVAILABLE = Condition("available (Ready=True, or Applied=True where pods cannot be observed)", _available)
READY = phase(Phase.READY)
SUSPENDED = phase(Phase.SUSPENDED)
DELETED = Condition("Deleted (or no status left)", lambda s: s is None or s.phase is Phase.DELETED)
_RESTING = (Phase.SUSPENDED, Phase.IDLE)
_SETTLED: dict[str, Condition] = {
    "create": AVAILABLE,
    "resume": AVAILABLE,
    "update": Condition(
        "available, Suspended or Idle", lambda s: _available(s) or (s is not None and s.phase in _RESTING)
    ),
    "suspend": SUSPENDED,
    "delete": DELETED,
}


def settled(published: Published) -> Condition:
    """The event (or a later one) is reconciled and the sandbox is where its verb takes it; ``SandboxFailed``
    when the status says the event was refused or the sandbox failed after it."""
    target = _SETTLED[published.verb]

    def holds(status: SandboxStatus | None) -> bool:
        if status is None:
            return target(status)
        _raise_if_failed(status, published)
        return status.observed_sequence >= published.sequence and target(status)

    return Condition(f"{published.verb} of {published.sandbox_id} settled: {target.name}", holds)


def _raise_if_failed(status: SandboxStatus, published: Published) -> None:
    accepted = status.condition(ConditionType.ACCEPTED)
    what = f"{published.verb} of sandbox {published.sandbox_id} (event {published.event_id})"
    if status.event_id == published.event_id and accepted is not None and accepted.status is ConditionStatus.FALSE:
        raise SandboxFailed(f"{what} was refused: {accepted.reason}: {accepted.message}", status=status)
    if status.observed_sequence >= published.sequence and status.phase is Phase.FAILED:
        error = status.last_error
        said = f"{error.reason}: {error.message}" if error else "no error recorded"
        raise SandboxFailed(f"{what} failed: {said}", status=status)
