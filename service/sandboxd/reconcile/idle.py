"""The idle lifecycle's decisions: when a sandbox goes idle or wakes, and what a scale command may do.

Pure functions over plain values (desired state, latest activity report, ``now``), the in-memory
``ActivityBook`` they read, the ports the sweeper and the scaler talk to, and the scaler's use case
``execute_scale``. What it deliberately does not do: read a clock, loop, or talk to NATS, Kubernetes or HTTP
(``runtime.sweeper`` loops; adapters implement the ports).

The rules (upstream §7, with G8 and the missing scale-up fixed):

- Only an ACTIVE sandbox with idle scaling enabled (``spec.idleScaling.enabled`` is not false) can go idle.
  A suspended sandbox holds at zero whatever its activity, until ``resume``; a deleted one is left alone.
- Idle: no active session (``activeSessions == 0``) and the last activity is older than the timeout.
  The last activity is the newest of the report's ``lastActivityAt`` and the time the last event was
  accepted (a sandbox created, updated or resumed a moment ago is not idle, whatever an old report says).
  The timeout is ``spec.idleScaling.timeoutMinutes``, else the service default.
- Wake: activity newer than ``idleSince``, or an active session. An idle sandbox that opted out since it went
  idle wakes too (otherwise its status would say Idle while it runs).
- Every idle/wake decision bumps the desired generation, so each has a distinct, deterministic command id
  (``<id>:<generation>:<action>``) that every replica deciding the same thing computes alike.
- A scale command only ever touches its sandbox's own pty-server: the target is derived from the desired state
  (``target_of``: ``sandbox-<owner-uid>``/``pty-server``), never taken from the message; a command naming
  anything else is refused (``TARGET_REFUSED``: dead-lettered, counted) before anything is read or written.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol

from sandboxd import naming
from sandboxd.errors import InvalidEvent, StoreConflict
from sandboxd.models.activity import ActivityReport, ScaleCommand
from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.models.status import Phase, SandboxStatus
from sandboxd.reconcile.ports import Store, Versioned
from sandboxd.reconcile.reconciler import workload_of
from sandboxd.render import Workload

#: The session workload the scaler patches (render/components.PTY_SERVER, the upstream name).
STATEFUL_SET: Final = "pty-server"
SUSPENDED_REASON: Final = "Suspended"
#: ``InvalidEvent.reason`` of a scale command naming a workload that is not its sandbox's pty-server.
TARGET_REFUSED: Final = "ScaleTargetRefused"


class Action(StrEnum):
    IDLE = "idle"  # the sweeper decided: scale to zero
    WAKE = "wake"  # the sweeper decided: scale back to concurrentSessions
    SUSPEND = "suspend"  # an accepted event suspended the sandbox
    RESUME = "resume"  # an accepted event made it run again (a resume, of a suspended or an idle sandbox)


#: ``ScaleCommand.reason`` for each action (the contract's words).
REASONS: Final = {Action.IDLE: "Idle", Action.WAKE: "Active", Action.SUSPEND: "Suspended", Action.RESUME: "Resumed"}


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    #: One sentence for logs and ``status.idleReason``.
    why: str


# --- activity -----------------------------------------------------------------------------------------------


class ActivityBook:
    """The newest activity report per sandbox, in memory (one per service replica).

    A report older (by ``lastActivityAt``) than the one held is ignored; an equally old one replaces it (the
    session count may change without new keystrokes). ``ready`` is false until the feed that fills the book
    has replayed what the broker kept, so nobody decides idleness from a half-filled book after a restart.
    """

    __slots__ = ("_latest", "ready")

    def __init__(self, *, ready: bool = False) -> None:
        self._latest: dict[str, ActivityReport] = {}
        self.ready = ready

    def record(self, sandbox_id: str, report: ActivityReport) -> bool:
        """Keep ``report`` unless it is stale; returns whether it was kept."""
        current = self._latest.get(sandbox_id)
        if current is not None and report.last_activity_at < current.last_activity_at:
            return False
        self._latest[sandbox_id] = report
        return True

    def latest(self, sandbox_id: str) -> ActivityReport | None:
        return self._latest.get(sandbox_id)

    def prune(self, *, keep: Container[str], before: datetime) -> int:
        """Forget reports of sandboxes not in ``keep`` whose activity is older than ``before``; how many.

        A report older than a sandbox's own creation never matters (its last accepted event is newer), so
        this only bounds memory against ids that come and go.
        """
        gone = [sid for sid, r in self._latest.items() if r.last_activity_at < before and sid not in keep]
        for sandbox_id in gone:
            del self._latest[sandbox_id]
        return len(gone)

    def __len__(self) -> int:
        return len(self._latest)


# --- decisions ----------------------------------------------------------------------------------------------


def timeout_of(desired: DesiredState, *, default_minutes: int) -> timedelta:
    """The sandbox's own timeout if it set one, else the default (upstream: annotation over default)."""
    scaling = desired.spec.idle_scaling
    minutes = scaling.timeout_minutes if scaling is not None and scaling.timeout_minutes else default_minutes
    return timedelta(minutes=minutes)


def last_activity(desired: DesiredState, report: ActivityReport | None) -> datetime:
    """The newest sign of life: the report's ``lastActivityAt`` or the last accepted event."""
    if report is None or report.last_activity_at < desired.accepted_at:
        return desired.accepted_at
    return report.last_activity_at


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def decide(
    desired: DesiredState, report: ActivityReport | None, *, now: datetime, default_timeout_minutes: int
) -> Decision | None:
    """Idle, wake, or nothing to do (``None``) for one sandbox at ``now``."""
    if desired.lifecycle is not Lifecycle.ACTIVE:
        return None  # suspended holds at zero until resume; deleted is the reconciler's
    if desired.idle_since is not None:
        return _wake(desired, desired.idle_since, report)
    if not desired.spec.idle_scaling_enabled or (report is not None and report.active_sessions > 0):
        return None
    last = last_activity(desired, report)
    timeout = timeout_of(desired, default_minutes=default_timeout_minutes)
    if now - last < timeout:
        return None
    minutes = int(timeout.total_seconds() // 60)
    return Decision(Action.IDLE, f"no session and no activity since {_iso(last)} (timeout {minutes} min)")


def _wake(desired: DesiredState, idle_since: datetime, report: ActivityReport | None) -> Decision | None:
    if not desired.spec.idle_scaling_enabled:
        return Decision(Action.WAKE, "idle scaling was turned off for this sandbox")
    if report is None:
        return None
    if report.active_sessions > 0:
        return Decision(Action.WAKE, f"{report.active_sessions} active session(s)")
    if report.last_activity_at > idle_since:
        return Decision(Action.WAKE, f"activity at {_iso(report.last_activity_at)}")
    return None


#: What a sweep remembers of a sandbox to spot what events changed: its workload and the event sequence.
Look = tuple[Workload, int]
_EVENT_ACTIONS: Final = {Workload.SUSPENDED: Action.SUSPEND, Workload.ACTIVE: Action.RESUME, Workload.IDLE: Action.IDLE}


def look(desired: DesiredState) -> Look:
    return workload_of(desired), desired.sequence


def event_change(before: Look | None, after: DesiredState) -> Action | None:
    """The workload change an accepted event made since the last look (``before``), if any.

    Sweeper decisions change the workload but never the event sequence, so they are not counted: only a
    suspend (→ SUSPEND), a resume (→ RESUME, also of a sandbox that was only idle) or an update that
    changed the opt-out is. ``before`` None is the first look: no change.
    """
    if before is None or after.lifecycle is Lifecycle.DELETED or after.sequence == before[1]:
        return None
    workload = workload_of(after)
    return None if workload is before[0] else _EVENT_ACTIONS[workload]


def replicas_for(desired: DesiredState) -> int:
    """Session pods the desired state asks for: what the renderer renders, so reconciler and scaler agree."""
    if desired.lifecycle is Lifecycle.DELETED or workload_of(desired) is not Workload.ACTIVE:
        return 0
    return desired.spec.quota.concurrent_sessions


def decided(desired: DesiredState, decision: Decision, *, now: datetime) -> DesiredState:
    """The desired state an idle/wake decision writes: ``idleSince`` set or cleared, generation bumped."""
    if decision.action not in (Action.IDLE, Action.WAKE):
        raise ValueError(f"{decision.action} is not a sweeper decision")
    idle_since = now if decision.action is Action.IDLE else None
    return desired.model_copy(update={"idle_since": idle_since, "generation": desired.generation + 1})


def command_id(sandbox_id: str, generation: int, action: Action) -> str:
    """Deterministic: replicas that decide the same thing from the same record publish one command."""
    return f"{sandbox_id}:{generation}:{action.value}"


@dataclass(frozen=True, slots=True)
class Target:
    """The one workload a sandbox's scale commands may touch."""

    namespace: str
    name: str


def target_of(desired: DesiredState) -> Target:
    """The sandbox's own pty-server, from its owner-uid (``naming``), never from a message."""
    return Target(naming.namespace_for(desired.owner_uid), STATEFUL_SET)


def refuse_foreign(command: ScaleCommand, target: Target | None = None) -> None:
    """``InvalidEvent`` (reason ``TARGET_REFUSED``) unless ``command`` names its sandbox's pty-server.

    Without ``target`` (no desired state to derive it from) only the shape is checked: a ``sandbox-`` namespace
    and ``pty-server``. Names from the message are quoted only after ``!r``: they are untrusted input.
    """
    named = Target(command.namespace, command.stateful_set)
    if target is None:
        fits = named.name == STATEFUL_SET and named.namespace.startswith(naming.NAMESPACE_PREFIX)
    else:
        fits = named == target
    if not fits:
        expected = "" if target is None else f" (its own is {target.namespace}/{target.name})"
        raise InvalidEvent(
            f"scale command {command.command_id!r} for sandbox {command.sandbox_id} names "
            f"{named.namespace!r}/{named.name!r}, not the sandbox's pty-server{expected}; refused",
            reason=TARGET_REFUSED,
        )


def scale_command(desired: DesiredState, action: Action, *, now: datetime) -> ScaleCommand:
    """The command for ``action`` on ``desired`` (the state *after* the decision)."""
    target = target_of(desired)
    return ScaleCommand(
        command_id=command_id(desired.sandbox_id, desired.generation, action),
        sandbox_id=desired.sandbox_id,
        namespace=target.namespace,
        stateful_set=target.name,
        replicas=replicas_for(desired),
        reason=REASONS[action],
        issued_at=now,
        idle_since=desired.idle_since,
        generation=desired.generation,
    )


# --- status -------------------------------------------------------------------------------------------------


def idle_reason(desired: DesiredState, decision: Decision | None = None) -> str | None:
    """What ``status.idleReason`` says for ``desired``: why it is at zero, or nothing while it runs."""
    if desired.lifecycle is Lifecycle.SUSPENDED:
        return SUSPENDED_REASON
    if workload_of(desired) is Workload.IDLE:
        return decision.why if decision is not None and decision.action is Action.IDLE else "Idle"
    return None


def noted(
    previous: SandboxStatus | None,
    *,
    sandbox_id: str,
    now: datetime,
    last_activity_at: datetime | None = None,
    reason: str | None = None,
    set_reason: bool = False,
) -> SandboxStatus:
    """A status transition for what the sweeper knows: the last activity (never moved backwards) and, when
    ``set_reason``, the idle reason. Everything else (phase, conditions, replicas) is the reconcile's."""
    status = previous or SandboxStatus(sandbox_id=sandbox_id, phase=Phase.PENDING, updated_at=now)
    changes: dict[str, object] = {}
    if last_activity_at is not None and (status.last_activity_at is None or last_activity_at > status.last_activity_at):
        changes["last_activity_at"] = last_activity_at
    if set_reason and status.idle_reason != reason:
        changes["idle_reason"] = reason
    if not changes:
        return status
    return status.model_copy(update={**changes, "updated_at": now})


# --- ports --------------------------------------------------------------------------------------------------


class DesiredView(Protocol):
    """Every sandbox's desired state as this process last saw it (a KV watch in production)."""

    @property
    def ready(self) -> bool:
        """False until the initial state has been read."""
        ...

    def snapshot(self) -> Iterable[Versioned[DesiredState]]:
        """The records now; cheap, no I/O."""
        ...

    def note(self, record: Versioned[DesiredState]) -> None:
        """A record this process wrote (so the next sweep does not act on the older one it replaced)."""
        ...


class CommandPublisher(Protocol):
    async def publish(self, command: ScaleCommand) -> None:
        """Durably publish, deduplicated by ``command.command_id``; ``BrokerUnavailable`` when it could not."""
        ...


class ActivityPublisher(Protocol):
    async def publish(self, sandbox_id: str, report: ActivityReport) -> None:
        """Share a probed report with the other replicas (best effort)."""
        ...


class Prober(Protocol):
    async def probe(self, *, sandbox_id: str, namespace: str, owner_uid: str) -> ActivityReport | None:
        """The sandbox's activity now, or ``None`` when it could not be read (never an error, never activity)."""
        ...


class ScaleTarget(Protocol):
    async def scale(self, *, namespace: str, name: str, replicas: int) -> int | None:
        """Make the workload run ``replicas`` pods; the count it had before, or ``None`` if it does not exist.

        Errors are ``ApplyRejected`` (permanent) or ``ApplyUnavailable`` (retryable).
        """
        ...


# --- the scaler's use case ----------------------------------------------------------------------------------


class ScaleOutcome(StrEnum):
    SCALED = "scaled"  # the replica count changed
    UNCHANGED = "unchanged"  # it already had that count (a duplicate, or the reconcile was first)
    STALE = "stale"  # a newer desired state supersedes the command (its own reconcile or command handles it)
    GONE = "gone"  # the sandbox or its StatefulSet does not exist (deleted, or not applied yet)


@dataclass(frozen=True, slots=True)
class ScaleResult:
    outcome: ScaleOutcome
    replicas: int | None = None
    previous: int | None = None


MAX_RECHECKS: Final = 3


async def execute_scale(
    command: ScaleCommand, *, desired: Store[DesiredState], target: ScaleTarget, max_rechecks: int = MAX_RECHECKS
) -> ScaleResult:
    """Carry out one command if it is still current, then make sure no newer decision was overtaken.

    The replica count comes from the desired state the command names (so it is what the renderer renders). A
    command older than the desired state is skipped, and so is one issued before the desired state was
    accepted (it was meant for an earlier sandbox of the same id); one ahead of what could be read is retried.
    After patching, the desired state is read again: when a newer generation appeared meanwhile (a resume
    reconciled while this patch was in flight), the count it asks for is patched too, so a late command never
    leaves the workload at the wrong size.

    The workload is the sandbox's own pty-server (``target_of`` the desired state); a command naming any other
    raises ``InvalidEvent`` (``TARGET_REFUSED``) and nothing is scaled.
    """
    refuse_foreign(command)
    key = naming.desired_key(command.sandbox_id)
    stored = await desired.get(key)
    if stored is None or stored.value.lifecycle is Lifecycle.DELETED:
        return ScaleResult(ScaleOutcome.GONE)
    workload = target_of(stored.value)
    refuse_foreign(command, workload)
    if stored.value.generation > command.generation:
        return ScaleResult(ScaleOutcome.STALE)
    if stored.value.generation < command.generation and command.issued_at < stored.value.accepted_at:
        return ScaleResult(ScaleOutcome.STALE)  # from a sandbox of the same id that was deleted since
    if stored.value.generation < command.generation:
        raise StoreConflict(
            f"desired state of {command.sandbox_id} is at generation {stored.value.generation}, behind the "
            f"command's {command.generation}; retrying once it has caught up"
        )
    replicas = replicas_for(stored.value)
    previous = await target.scale(namespace=workload.namespace, name=workload.name, replicas=replicas)
    if previous is None:
        return ScaleResult(ScaleOutcome.GONE, replicas)
    applied, generation = replicas, stored.value.generation
    for _ in range(max_rechecks):
        again = await desired.get(key)
        if again is None or again.value.generation == generation or again.value.lifecycle is Lifecycle.DELETED:
            break
        generation = again.value.generation
        wanted = replicas_for(again.value)
        if wanted != applied:
            await target.scale(namespace=workload.namespace, name=workload.name, replicas=wanted)
            applied = wanted
    outcome = ScaleOutcome.UNCHANGED if previous == replicas else ScaleOutcome.SCALED
    return ScaleResult(outcome, replicas, previous)
