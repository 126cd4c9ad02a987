"""The status projection: pure transitions from one ``SandboxStatus`` to the next, and the CAS writer.

Every function here takes the previous record (or ``None``) and returns the next one; ``StatusWriter`` applies
such a transition with compare-and-set (``reconcile.cas``), re-reading on a lost race, so the intake and
reconciles of several replicas can write one key without losing each other's fields. ``lastTransitionTime``
moves only when a condition's status changes (``models.status.set_condition``). Messages come from errors and
never carry secret values: the renderer renders none and adapters quote only the target's refusal.

Order: a record describes one *incarnation* of the sandbox id and one generation of it. A transition for an
older (incarnation, generation) than the record's leaves the record alone (that pass is stale; the reconciler
runs again), so the generation a console sees never goes backwards. A transition for a newer incarnation (a
create after a delete) starts from a fresh record: nothing of the earlier life carries over.

What the conditions say (the table in ``docs/events.md``): after an apply, ``Accepted`` names the generation and
its event, and ``Applied``, ``Ready`` and ``Idle`` say what runs. After a delete every condition speaks of it:
``Accepted`` names the delete's generation; ``Applied``, ``Ready`` and ``Idle`` are False with reason ``Deleted``
(retain: namespace, quota and PVCs kept) or ``Purged``; no objects, no endpoint, the namespace only on retain.
A failed pass sets ``Applied=False`` (phase ``Failed``; or, when it will be retried, unchanged, ``Deleting``
for a deletion). A rejected event sets ``Accepted=False`` until an event is accepted again.

Retention: ``StatusWriter`` writes Deleted and Rejected records to expire after ``SANDBOXD_STATUS_RETENTION_SECONDS``
(the store's per-message TTL), so the projection does not keep every id it ever saw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Final

from pydantic import TypeAdapter

from sandboxd import naming
from sandboxd.errors import SandboxdError
from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.models.status import (
    Condition,
    ConditionStatus,
    ConditionType,
    LastError,
    ObjectRef,
    Phase,
    Replicas,
    SandboxStatus,
    set_condition,
)
from sandboxd.naming import SandboxId
from sandboxd.reconcile import cas
from sandboxd.reconcile.ports import Store
from sandboxd.render import Workload
from sandboxd.render.workload import workload_of
from sandboxd.telemetry.metrics import Instruments

Transition = Callable[[SandboxStatus | None], SandboxStatus]
MAX_CAS_ATTEMPTS = 20

#: One validation of every reference at once: about a third of the CPU of 13 ``model_construct`` calls.
_OBJECT_REFS: Final = TypeAdapter(tuple[ObjectRef, ...])


def object_refs(refs: Iterable[tuple[str, str, str, str | None]]) -> tuple[ObjectRef, ...]:
    """``appliedObjects`` for (apiVersion, kind, name, namespace) tuples, in their order."""
    return _OBJECT_REFS.validate_python(
        [{"api_version": a, "kind": k, "name": n, "namespace": ns} for a, k, n, ns in refs]
    )


def _base(previous: SandboxStatus | None, sandbox_id: SandboxId, now: datetime) -> SandboxStatus:
    if previous is not None:
        return previous
    return SandboxStatus(sandbox_id=sandbox_id, phase=Phase.PENDING, updated_at=now)


def _is_newer(previous: SandboxStatus | None, desired: DesiredState) -> bool:
    """Whether the record already describes a later (incarnation, generation) than ``desired``."""
    if previous is None:
        return False
    return (previous.incarnation, previous.observed_generation) > (desired.incarnation, desired.generation)


def _life(previous: SandboxStatus | None, desired: DesiredState, now: datetime) -> SandboxStatus:
    """The record a transition for ``desired`` starts from: the previous one while it describes the same
    incarnation, else a fresh one (conditions, errors, objects and activity of an earlier life do not apply)."""
    if previous is not None and previous.incarnation == desired.incarnation:
        return previous
    return SandboxStatus(
        sandbox_id=desired.sandbox_id, phase=Phase.PENDING, incarnation=desired.incarnation, updated_at=now
    )


def _accepted(status: SandboxStatus, desired: DesiredState, now: datetime) -> list[Condition]:
    """``Accepted=True`` for the desired generation, unless the condition already speaks of it (a rejection of
    a later event stays visible until an event is accepted again)."""
    current = status.condition(ConditionType.ACCEPTED)
    if current is not None and current.observed_generation >= desired.generation:
        return status.conditions
    return set_condition(
        status.conditions,
        kind=ConditionType.ACCEPTED,
        status=ConditionStatus.TRUE,
        reason="EventAccepted",
        message=f"generation {desired.generation} from event {desired.event_id}",
        now=now,
        generation=desired.generation,
    )


def _expiry(desired: DesiredState) -> dict[str, object]:
    """``expiresAt`` and ``expiryPolicy`` as the desired state asks (both None when it never expires)."""
    expiry = desired.spec.expiry
    return {"expires_at": expiry.at if expiry else None, "expiry_policy": expiry.policy if expiry else None}


def _with(status: SandboxStatus, **changes: object) -> SandboxStatus:
    return status.model_copy(update=changes)


def rejected(
    previous: SandboxStatus | None,
    *,
    sandbox_id: SandboxId,
    error: SandboxdError,
    event_id: str | None,
    now: datetime,
    message: str | None = None,
    superseded: bool = False,
) -> SandboxStatus:
    """An event was refused (or could not be recorded: ``message`` then says why, else the error's). A sandbox
    that never had a valid spec becomes ``Rejected``; one that has keeps its phase (its runtime still runs the
    last valid spec) and says why in ``Accepted=False``. A ``superseded`` event (older than the desired state
    recorded when it was refused) says why in ``lastError`` only: ``Accepted`` stays the newer event's."""
    message = error.message if message is None else message
    status = _base(previous, sandbox_id, now)
    last_error = LastError(reason=error.reason, message=message, at=now, retryable=False)
    if superseded:
        return _with(status, last_error=last_error, updated_at=now)
    generation = status.observed_generation
    conditions = set_condition(
        status.conditions,
        kind=ConditionType.ACCEPTED,
        status=ConditionStatus.FALSE,
        reason=error.reason,
        message=message,
        now=now,
        generation=generation,
    )
    phase = Phase.REJECTED if previous is None or previous.phase in (Phase.PENDING, Phase.REJECTED) else status.phase
    return _with(
        status,
        phase=phase,
        conditions=conditions,
        last_error=last_error,
        event_id=event_id,
        updated_at=now,
    )


def _phase_for(desired: DesiredState, *, replicas: int, ready: int | None) -> tuple[Phase, ConditionStatus, str, str]:
    if desired.lifecycle is Lifecycle.SUSPENDED:
        return Phase.SUSPENDED, ConditionStatus.FALSE, "Suspended", "suspended: no session pods run until resume"
    if workload_of(desired) is Workload.IDLE:  # an opted-out sandbox with a stale idleSince runs: not idle
        return Phase.IDLE, ConditionStatus.FALSE, "Idle", "scaled to zero for inactivity; activity wakes it"
    if ready is None:
        return (
            Phase.PROVISIONING,
            ConditionStatus.UNKNOWN,
            "NotObservable",
            "written; this applier cannot observe pods (GitOps: the cluster applies the commit; directory: "
            "whatever reads the folder applies it)",
        )
    if ready >= replicas:
        return Phase.READY, ConditionStatus.TRUE, "ReplicasReady", f"{ready}/{replicas} session pods ready"
    return Phase.PROVISIONING, ConditionStatus.FALSE, "ReplicasNotReady", f"{ready}/{replicas} session pods ready"


def applied(
    previous: SandboxStatus | None,
    *,
    desired: DesiredState,
    namespace: str,
    endpoint: str,
    objects: tuple[ObjectRef, ...],
    replicas: int,
    ready: int | None,
    timings_ms: Mapping[str, float],
    now: datetime,
) -> SandboxStatus:
    """A reconcile applied the desired state (never over a record of a newer generation: that pass is stale,
    and the reconciler runs again)."""
    if _is_newer(previous, desired):
        assert previous is not None
        return previous
    status = _life(previous, desired, now)
    generation = desired.generation
    phase, ready_status, ready_reason, ready_message = _phase_for(desired, replicas=replicas, ready=ready)
    conditions = set_condition(
        _accepted(status, desired, now),
        kind=ConditionType.APPLIED,
        status=ConditionStatus.TRUE,
        reason="Applied",
        message=f"{len(objects)} objects applied",
        now=now,
        generation=generation,
    )
    conditions = set_condition(
        conditions,
        kind=ConditionType.READY,
        status=ready_status,
        reason=ready_reason,
        message=ready_message,
        now=now,
        generation=generation,
    )
    idle = workload_of(desired) is not Workload.ACTIVE
    conditions = set_condition(
        conditions,
        kind=ConditionType.IDLE,
        status=ConditionStatus.TRUE if idle else ConditionStatus.FALSE,
        reason=ready_reason if idle else "Active",
        message=ready_message if idle else "session pods scheduled",
        now=now,
        generation=generation,
    )
    same_generation = status.observed_generation == generation
    return _with(
        status,
        phase=phase,
        conditions=conditions,
        observed_generation=generation,
        observed_sequence=desired.sequence,
        owner_uid=desired.owner_uid,
        namespace=namespace,
        endpoint=endpoint,
        applied_objects=list(objects),
        replicas=Replicas(desired=replicas, ready=ready or 0),
        idle_since=desired.idle_since,
        idle_reason=status.idle_reason if idle else None,
        **_expiry(desired),
        last_error=None,
        attempts=(status.attempts + 1) if same_generation else 1,
        timings_ms=dict(timings_ms),
        event_id=desired.event_id,
        updated_at=now,
        deleted_at=None,
    )


def failed(
    previous: SandboxStatus | None,
    *,
    desired: DesiredState,
    error: SandboxdError,
    retryable: bool,
    now: datetime,
) -> SandboxStatus:
    """A reconcile failed; permanent failures make the phase ``Failed``, retryable ones keep it (``Deleting``
    while a deletion is retried)."""
    if _is_newer(previous, desired):
        assert previous is not None
        return previous
    status = _life(previous, desired, now)
    conditions = set_condition(
        _accepted(status, desired, now),
        kind=ConditionType.APPLIED,
        status=ConditionStatus.FALSE,
        reason=error.reason,
        message=error.message,
        now=now,
        generation=desired.generation,
    )
    if not retryable:
        phase = Phase.FAILED
    elif desired.lifecycle is Lifecycle.DELETED:
        phase = Phase.DELETING
    else:
        phase = status.phase
    same_generation = status.observed_generation == desired.generation
    return _with(
        status,
        phase=phase,
        conditions=conditions,
        observed_generation=desired.generation,
        observed_sequence=desired.sequence,
        owner_uid=desired.owner_uid,
        namespace=naming.namespace_for(desired.owner_uid),
        last_error=LastError(reason=error.reason, message=error.message, at=now, retryable=retryable),
        **_expiry(desired),
        attempts=(status.attempts + 1) if same_generation else 1,
        updated_at=now,
    )


def deleted(
    previous: SandboxStatus | None, *, desired: DesiredState, timings_ms: Mapping[str, float], now: datetime
) -> SandboxStatus:
    """The runtime is gone (purge) or reduced to its retained data (retain); the record is a tombstone that
    keeps the last generation, so a later create of the same sandbox id continues from it."""
    if _is_newer(previous, desired):
        assert previous is not None
        return previous
    status = _life(previous, desired, now)
    if desired.purge:
        reason, message = "Purged", "deleted with its namespace and data (purge)"
    else:
        reason, message = "Deleted", "session pods, Service, route and Secrets removed; namespace, quota and PVCs kept"
    conditions = _accepted(status, desired, now)
    for kind in (ConditionType.APPLIED, ConditionType.READY, ConditionType.IDLE):
        conditions = set_condition(
            conditions,
            kind=kind,
            status=ConditionStatus.FALSE,
            reason=reason,
            message=message,
            now=now,
            generation=desired.generation,
        )
    same_generation = status.observed_generation == desired.generation
    return _with(
        status,
        phase=Phase.DELETED,
        conditions=conditions,
        observed_generation=desired.generation,
        observed_sequence=desired.sequence,
        owner_uid=desired.owner_uid,
        namespace=None if desired.purge else naming.namespace_for(desired.owner_uid),
        endpoint=None,
        applied_objects=[],
        replicas=Replicas(desired=0, ready=0),
        idle_since=None,
        idle_reason=None,
        expires_at=None,
        expiry_policy=None,
        last_error=None,
        attempts=(status.attempts + 1) if same_generation else 1,
        timings_ms=dict(timings_ms),
        event_id=desired.event_id,
        updated_at=now,
        deleted_at=status.deleted_at if same_generation and status.deleted_at else now,
    )


def activity_observed(
    previous: SandboxStatus | None,
    *,
    sandbox_id: SandboxId,
    now: datetime,
    last_activity_at: datetime | None = None,
    reason: str | None = None,
    set_reason: bool = False,
) -> SandboxStatus:
    """What the idle sweeper observed: the last activity (never moved backwards, unless the held one is in the
    future of ``now``: no activity can have happened then) and, when ``set_reason``, the idle reason.
    Everything else (phase, conditions, replicas) is the reconcile's."""
    status = previous or SandboxStatus(sandbox_id=sandbox_id, phase=Phase.PENDING, updated_at=now)
    changes: dict[str, object] = {}
    held = status.last_activity_at
    if last_activity_at is not None and (held is None or last_activity_at > held or held > now):
        changes["last_activity_at"] = last_activity_at
    if set_reason and status.idle_reason != reason:
        changes["idle_reason"] = reason
    if not changes:
        return status
    return status.model_copy(update={**changes, "updated_at": now})


#: Phases whose record is written to expire: the sandbox is gone, or never was (a never-created id's rejection).
EXPIRING_PHASES: Final = frozenset({Phase.DELETED, Phase.REJECTED})


class StatusWriter:
    """Writes one transition with compare-and-set, re-reading and re-applying it when another writer won.

    It starts from the record the store remembers (``Store.recent``), so the common case, this process being
    the only recent writer, is one round trip instead of a read and a write.

    A record in an ``EXPIRING_PHASES`` phase is written to expire ``retention_s`` after its last write (the
    store removes it; nothing sweeps the keys). Any later write (a re-create, a rejection of an event for a
    live sandbox) replaces it and is kept. After expiry the sandbox id is unknown: a create starts a new
    incarnation at generation 1 (docs/events.md, "Generations, incarnations and deletion").
    """

    def __init__(
        self, store: Store[SandboxStatus], *, metrics: Instruments | None = None, retention_s: float | None = None
    ) -> None:
        self._store = store
        self._phases = metrics.phases if metrics is not None else None
        self._retention_s = retention_s

    async def read(self, sandbox_id: SandboxId) -> SandboxStatus | None:
        """The record as it is now (read from the store; the next ``write`` then needs no read of its own)."""
        stored = await self._store.get(naming.status_key(sandbox_id))
        return stored.value if stored is not None else None

    async def write(self, sandbox_id: SandboxId, transition: Transition) -> SandboxStatus:
        """Apply ``transition`` to the record and write it (``reconcile.cas``: a blind create when this process
        knows no record, a re-read and a re-applied transition on a lost race)."""
        key = naming.status_key(sandbox_id)

        async def decide(previous: SandboxStatus | None) -> SandboxStatus:
            return transition(previous)

        written = await cas.write(
            self._store,
            key,
            decide,
            start=self._store.recent(key),
            blind=True,
            attempts=MAX_CAS_ATTEMPTS,
            gave_up=f"status of {sandbox_id} kept changing; gave up after {MAX_CAS_ATTEMPTS} tries",
            expire_after_s=self._expiry,
        )
        new = written.value
        assert new is not None  # a transition always returns a record
        if self._phases is not None:
            self._phases.observe(sandbox_id, str(new.phase))
        return new

    def _expiry(self, status: SandboxStatus) -> float | None:
        return self._retention_s if status.phase in EXPIRING_PHASES else None
