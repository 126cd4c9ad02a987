"""The idle lifecycle's decisions: when a sandbox goes idle or wakes, and which scale command an event calls for.

Pure functions over plain values (desired state, latest activity report, status record, ``now``). What it
deliberately does not do: read a clock, loop, hold state, or talk to NATS, Kubernetes or HTTP. Next to it: the in-memory
``reconcile.activity.ActivityBook`` the sweeper reads reports from, the ports in ``reconcile.ports``, the status
transition ``reconcile.statuses.activity_observed``, the scale commands and the scaler's use case in
``reconcile.scaling``, and the workload rules (workload, replicas, timeout) in ``render.workload``.

The rules (upstream §7, with G8 and the missing scale-up fixed):

- Only an ACTIVE sandbox with idle scaling enabled (``spec.idleScaling.enabled`` is not false) can go idle.
  A suspended sandbox holds at zero whatever its activity, until ``resume``; a deleted one is left alone.
- Idle: no active session (``activeSessions == 0``) and the last activity is older than the timeout.
  The last activity is the newest of the report's ``lastActivityAt`` and the time the last event was
  accepted (a sandbox created, updated or resumed a moment ago is not idle, whatever an old report says).
  The timeout is ``spec.idleScaling.timeoutMinutes``, else the service default.
- Wake: activity newer than ``idleSince``, or an active session. An idle sandbox that opted out since it went
  idle wakes too (otherwise its status would say Idle while it runs).
- Every idle/wake decision bumps the desired generation (``desired_after``), so each has a distinct,
  deterministic command id (``reconcile.scaling.command_id``).
- Suspend and resume are events, not decisions: the reconcile pass that applies one sends its scale command
  (``scale_after_event``). It compares the desired state with the status record the pass replaces: an event
  was accepted since that record (the desired ``sequence`` is past its ``observedSequence``) and the workload
  the record last applied (its ``Idle`` condition, ``applied_workload``) differs. A sweeper decision moves the
  generation but never the sequence, so it is never taken for an event (the sweeper sends its own command).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from sandboxd.models.activity import ActivityReport
from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.models.status import ConditionType, SandboxStatus
from sandboxd.render import Workload
from sandboxd.render.workload import idle_timeout_minutes, workload_of

SUSPENDED_REASON: Final = "Suspended"


class Action(StrEnum):
    IDLE = "idle"  # the sweeper decided: scale to zero
    WAKE = "wake"  # the sweeper decided: scale back to concurrentSessions
    SUSPEND = "suspend"  # an accepted event suspended the sandbox
    RESUME = "resume"  # an accepted event made it run again (a resume, of a suspended or an idle sandbox)


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    #: One sentence for logs and ``status.idleReason``.
    why: str


# --- decisions ----------------------------------------------------------------------------------------------


def timeout_of(desired: DesiredState, *, default_minutes: int) -> timedelta:
    """The sandbox's idle timeout (``render.workload.idle_timeout_minutes``, the StatefulSet's annotation)."""
    return timedelta(minutes=idle_timeout_minutes(desired.spec, default_minutes=default_minutes))


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


#: The ``Idle`` condition's reason ``statuses.applied`` writes for each workload it applied.
_APPLIED_REASONS: Final = {"Active": Workload.ACTIVE, "Idle": Workload.IDLE, "Suspended": Workload.SUSPENDED}


def applied_workload(status: SandboxStatus) -> Workload | None:
    """The workload the record's last successful apply rendered (``None``: none yet, or deleted since).

    Only an apply sets the ``Idle`` condition, so a failed pass or a rejected event leaves it as it was."""
    condition = status.condition(ConditionType.IDLE)
    return _APPLIED_REASONS.get(condition.reason) if condition is not None else None


def scale_after_event(status: SandboxStatus | None, desired: DesiredState) -> Action | None:
    """The scale command an accepted suspend or resume calls for, judged against ``status``, the record the
    pass that applies ``desired`` replaces; ``None`` when there is none to send.

    - SUSPEND when the sandbox is now suspended and the record last applied it running or idle; RESUME when it
      now runs and the record last applied it suspended or idle (a resume, or an update that opted an idle
      sandbox out of idle scaling).
    - Nothing unless an event was accepted since the record was written (``desired.sequence`` past its
      ``observedSequence``): a resync, a redelivery or a second pass finds the record already past it, and a
      sweeper decision (idle, wake) moves no sequence. Only the writer that moves the record past the event
      (compare-and-set: exactly one) sees the change, so one pass announces it.
    - Nothing for a record of another incarnation (a first apply), one with no apply yet, a deletion, or an
      event that ends in the workload it had (suspend then resume, an update).
    """
    if status is None or desired.lifecycle is Lifecycle.DELETED or status.incarnation != desired.incarnation:
        return None
    if desired.sequence <= status.observed_sequence:
        return None
    before, after = applied_workload(status), workload_of(desired)
    if before is None or after is before:
        return None
    if after is Workload.SUSPENDED:
        return Action.SUSPEND
    if after is Workload.ACTIVE:
        return Action.RESUME
    return None  # idle is the sweeper's decision, with its own command


def desired_after(desired: DesiredState, decision: Decision, *, now: datetime) -> DesiredState:
    """The desired state an idle/wake decision writes: ``idleSince`` set or cleared, generation bumped."""
    if decision.action not in (Action.IDLE, Action.WAKE):
        raise ValueError(f"{decision.action} is not a sweeper decision")
    idle_since = now if decision.action is Action.IDLE else None
    return desired.model_copy(update={"idle_since": idle_since, "generation": desired.generation + 1})


# --- status -------------------------------------------------------------------------------------------------


def idle_reason(desired: DesiredState, decision: Decision | None = None) -> str | None:
    """What ``status.idleReason`` says for ``desired``: why it is at zero, or nothing while it runs."""
    if desired.lifecycle is Lifecycle.SUSPENDED:
        return SUSPENDED_REASON
    if workload_of(desired) is Workload.IDLE:
        return decision.why if decision is not None and decision.action is Action.IDLE else "Idle"
    return None
