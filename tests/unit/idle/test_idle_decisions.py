"""The idle lifecycle's pure decisions: when a sandbox goes idle, when it wakes, what the commands say.

Upstream's idle-scaler cases (reference §9.5) that still apply are here by number; what changed on purpose:
a probe failure with no earlier activity falls back to the time the last event was accepted instead of skipping
the sandbox forever (case 4), the opt-out is honoured and idle sandboxes scale back up (G8).
"""

from __future__ import annotations

import pytest

from sandboxd.errors import ApplyUnavailable
from sandboxd.models.activity import ActivityReport
from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.models.status import SandboxStatus
from sandboxd.reconcile import idle, scaling, statuses
from sandboxd.reconcile.activity import CLOCK_SKEW, ActivityBook
from sandboxd.reconcile.idle import Action
from sandboxd.render import Workload, workload
from unit.idle.factories import T0, desired, minutes, report

DEFAULT = 30


def decide(state: DesiredState, activity: ActivityReport | None = None, *, at: float) -> idle.Decision | None:
    return idle.decide(state, activity, now=T0 + minutes(at), default_timeout_minutes=DEFAULT)


# --- going idle ---------------------------------------------------------------------------------------------


def test_upstream_1_recent_activity_is_not_idle() -> None:
    assert decide(desired(), report(T0 + minutes(59)), at=60) is None


def test_upstream_2_idle_past_the_timeout() -> None:
    decision = decide(desired(timeout=30), report(T0), at=45)
    assert decision is not None and decision.action is Action.IDLE
    assert "timeout 30 min" in decision.why and "2026-11-27T09:00:00Z" in decision.why


def test_the_timeout_is_inclusive_and_never_early() -> None:
    assert decide(desired(), report(T0), at=DEFAULT - 0.01) is None
    decision = decide(desired(), report(T0), at=DEFAULT)
    assert decision is not None and decision.action is Action.IDLE


def test_upstream_3_never_idle_while_a_session_is_active() -> None:
    assert decide(desired(), report(T0, sessions=2), at=120) is None
    assert decide(desired(), report(T0, sessions=1), at=60 * 24 * 7) is None


def test_upstream_5_the_sandbox_timeout_wins_over_the_default() -> None:
    short = desired(timeout=5)
    decision = idle.decide(short, report(T0), now=T0 + minutes(10), default_timeout_minutes=60)
    assert decision is not None and decision.action is Action.IDLE
    long = desired(timeout=120)
    assert decide(long, report(T0), at=90) is None
    assert decide(long, report(T0), at=120) is not None


def test_without_a_report_the_last_accepted_event_is_the_last_activity() -> None:
    """Changed from upstream case 4: no usable activity is not 'skip forever', it is 'since the last event'."""
    assert decide(desired(), None, at=DEFAULT - 1) is None
    decision = decide(desired(), None, at=DEFAULT)
    assert decision is not None and decision.action is Action.IDLE


def test_a_recent_event_outweighs_an_old_report() -> None:
    """A sandbox resumed (or updated) a moment ago is not idled because of a report from days before."""
    resumed = desired(accepted_at=T0 + minutes(60 * 24))
    assert decide(resumed, report(T0), at=60 * 24 + 1) is None
    assert decide(resumed, report(T0), at=60 * 24 + DEFAULT) is not None


def test_opt_out_is_honoured() -> None:
    """G8: upstream stamped the opt-out annotation and then ignored it."""
    assert decide(desired(enabled=False), report(T0), at=60 * 24) is None
    assert decide(desired(enabled=False, timeout=5), None, at=60 * 24) is None


@pytest.mark.parametrize("lifecycle", [Lifecycle.SUSPENDED, Lifecycle.DELETED])
def test_only_active_sandboxes_are_swept(lifecycle: Lifecycle) -> None:
    assert decide(desired(lifecycle=lifecycle), report(T0), at=600) is None
    assert decide(desired(lifecycle=lifecycle, idle_since=T0), report(T0 + minutes(5), sessions=3), at=600) is None


def test_upstream_7_an_idle_sandbox_is_not_idled_again() -> None:
    assert decide(desired(idle_since=T0 + minutes(30)), report(T0), at=600) is None


# --- waking -------------------------------------------------------------------------------------------------


def test_activity_after_idle_since_wakes() -> None:
    """Upstream never scaled back up (G8); here activity does."""
    idle_state = desired(idle_since=T0 + minutes(30))
    assert decide(idle_state, report(T0 + minutes(30)), at=40) is None  # not newer: still idle
    decision = decide(idle_state, report(T0 + minutes(31)), at=40)
    assert decision is not None and decision.action is Action.WAKE
    assert "activity at 2026-11-27T09:31:00Z" in decision.why


def test_an_active_session_wakes() -> None:
    decision = decide(desired(idle_since=T0 + minutes(30)), report(T0, sessions=1), at=40)
    assert decision is not None and decision.action is Action.WAKE


def test_opting_out_while_idle_wakes() -> None:
    decision = decide(desired(idle_since=T0 + minutes(30), enabled=False), None, at=40)
    assert decision is not None and decision.action is Action.WAKE


def test_a_suspended_sandbox_holds_whatever_its_activity() -> None:
    suspended = desired(lifecycle=Lifecycle.SUSPENDED, idle_since=T0)
    assert decide(suspended, report(T0 + minutes(100), sessions=5), at=101) is None
    assert workload.replicas_for(suspended) == 0


# --- what a decision writes and publishes -------------------------------------------------------------------


def test_deciding_bumps_the_generation_and_sets_or_clears_idle_since() -> None:
    now = T0 + minutes(45)
    went_idle = idle.desired_after(desired(generation=4), idle.Decision(Action.IDLE, "x"), now=now)
    assert went_idle.idle_since == now and went_idle.generation == 5
    woke = idle.desired_after(went_idle, idle.Decision(Action.WAKE, "y"), now=now + minutes(1))
    assert woke.idle_since is None and woke.generation == 6
    with pytest.raises(ValueError, match="not a sweeper decision"):
        idle.desired_after(woke, idle.Decision(Action.RESUME, "z"), now=now)


def test_commands_carry_the_rendered_replicas_and_a_deterministic_id() -> None:
    now = T0 + minutes(45)
    state = desired("sb-7", email="ceo@acme.com", sessions=3, generation=4)
    went_idle = idle.desired_after(state, idle.Decision(Action.IDLE, "x"), now=now)
    command = scaling.scale_command(went_idle, Action.IDLE, now=now)
    assert command.command_id == "sb-7:5:idle"
    assert (command.namespace, command.stateful_set) == ("sandbox-ceo-at-acme-com", "pty-server")
    assert (command.replicas, command.reason, command.generation) == (0, "Idle", 5)
    assert command.idle_since == now and command.issued_at == now
    assert command == scaling.scale_command(went_idle, Action.IDLE, now=now)  # every replica computes the same
    woke = idle.desired_after(went_idle, idle.Decision(Action.WAKE, "y"), now=now)
    wake = scaling.scale_command(woke, Action.WAKE, now=now)
    assert (wake.command_id, wake.replicas, wake.reason, wake.idle_since) == ("sb-7:6:wake", 3, "Active", None)


def test_replicas_follow_the_renderer() -> None:
    assert workload.replicas_for(desired(sessions=4)) == 4
    assert workload.replicas_for(desired(sessions=4, idle_since=T0)) == 0
    assert workload.replicas_for(desired(sessions=4, idle_since=T0, enabled=False)) == 4  # opted out: runs
    assert workload.replicas_for(desired(sessions=4, lifecycle=Lifecycle.SUSPENDED)) == 0
    assert workload.replicas_for(desired(sessions=4, lifecycle=Lifecycle.DELETED)) == 0


def applied(state: DesiredState, previous: SandboxStatus | None = None) -> SandboxStatus:
    """The status record a pass that applied ``state`` writes."""
    return statuses.applied(
        previous,
        desired=state,
        namespace="sandbox-x",
        endpoint="https://x/",
        objects=(),
        replicas=workload.replicas_for(state),
        ready=None,
        timings_ms={},
        now=T0,
    )


def test_the_applied_workload_is_read_back_from_what_an_apply_writes() -> None:
    assert idle.applied_workload(applied(desired())) is Workload.ACTIVE
    assert idle.applied_workload(applied(desired(idle_since=T0))) is Workload.IDLE
    assert idle.applied_workload(applied(desired(lifecycle=Lifecycle.SUSPENDED))) is Workload.SUSPENDED
    gone = statuses.deleted(applied(desired()), desired=desired(generation=2), timings_ms={}, now=T0)
    assert idle.applied_workload(gone) is None


def test_only_an_event_that_changed_the_workload_calls_for_a_command() -> None:
    running = desired(generation=1)
    suspended = running.model_copy(update={"lifecycle": Lifecycle.SUSPENDED, "generation": 2, "sequence": 2})
    resumed = suspended.model_copy(update={"lifecycle": Lifecycle.ACTIVE, "generation": 3, "sequence": 3})
    assert idle.scale_after_event(None, suspended) is None  # nothing applied yet
    assert idle.scale_after_event(applied(running), suspended) is Action.SUSPEND
    assert idle.scale_after_event(applied(suspended), suspended) is None  # already past the event: a resync
    assert idle.scale_after_event(applied(suspended), resumed) is Action.RESUME
    assert idle.scale_after_event(applied(running), resumed) is None  # same workload in the end
    went_idle = idle.desired_after(running, idle.Decision(Action.IDLE, "x"), now=T0)
    assert idle.scale_after_event(applied(running), went_idle) is None  # a sweeper's decision: same sequence
    resumed_from_idle = went_idle.model_copy(update={"idle_since": None, "generation": 3, "sequence": 2})
    assert idle.scale_after_event(applied(went_idle), resumed_from_idle) is Action.RESUME
    suspended_while_idle = went_idle.model_copy(
        update={"lifecycle": Lifecycle.SUSPENDED, "generation": 3, "sequence": 2}
    )
    assert idle.scale_after_event(applied(went_idle), suspended_while_idle) is Action.SUSPEND
    opted_out = went_idle.model_copy(update={"spec": desired(enabled=False).spec, "generation": 3, "sequence": 2})
    assert idle.scale_after_event(applied(went_idle), opted_out) is Action.RESUME  # runs again at once
    updated = went_idle.model_copy(update={"generation": 3, "sequence": 2})  # an update keeps idleSince
    assert idle.scale_after_event(applied(went_idle), updated) is None
    deleted = running.model_copy(update={"lifecycle": Lifecycle.DELETED, "generation": 2, "sequence": 2})
    assert idle.scale_after_event(applied(running), deleted) is None
    reborn = suspended.model_copy(update={"incarnation": 7})  # another life of the id: its first apply
    assert idle.scale_after_event(applied(running), reborn) is None


def test_a_failed_pass_leaves_the_applied_workload_as_it_was() -> None:
    running = desired(generation=1)
    suspended = running.model_copy(update={"lifecycle": Lifecycle.SUSPENDED, "generation": 2, "sequence": 2})
    failed = statuses.failed(
        applied(running), desired=suspended, error=ApplyUnavailable("away"), retryable=True, now=T0
    )
    assert idle.applied_workload(failed) is Workload.ACTIVE
    assert idle.scale_after_event(failed, suspended) is None  # the failed pass's own write announced it


def test_idle_reasons() -> None:
    assert idle.idle_reason(desired()) is None
    assert idle.idle_reason(desired(lifecycle=Lifecycle.SUSPENDED)) == "Suspended"
    assert idle.idle_reason(desired(idle_since=T0)) == "Idle"
    why = idle.Decision(Action.IDLE, "no session and no activity since …")
    assert idle.idle_reason(desired(idle_since=T0), why) == why.why
    assert idle.idle_reason(desired(idle_since=T0, enabled=False)) is None


# --- the activity book --------------------------------------------------------------------------------------


def test_newest_activity_wins_and_stale_reports_are_ignored() -> None:
    book = ActivityBook(ready=True)
    assert book.record("sb-1", report(T0 + minutes(5), sessions=1))
    assert not book.record("sb-1", report(T0 + minutes(4), sessions=3))  # stale
    assert book.latest("sb-1") == report(T0 + minutes(5), sessions=1)
    assert book.record("sb-1", report(T0 + minutes(5), sessions=0))  # same instant: the session ended
    assert book.latest("sb-1") == report(T0 + minutes(5), sessions=0)
    assert book.latest("sb-2") is None and len(book) == 1


def test_a_far_future_report_is_capped_and_the_next_received_report_replaces_it() -> None:
    """One report from the year 9999 (or a skewed clock) cannot keep a sandbox awake: its time is cut to when
    it was received plus the skew allowance, and the reporter's next report corrects it."""
    book = ActivityBook(ready=True)
    far = ActivityReport.model_validate_json('{"lastActivityAt":"9999-12-31T23:59:59Z","activeSessions":2}')
    assert book.record("sb-1", far, received_at=T0)
    held = book.latest("sb-1")
    assert held is not None and (held.last_activity_at, held.active_sessions) == (T0 + CLOCK_SKEW, 2)
    assert book.record("sb-1", report(T0 - minutes(3)), received_at=T0 + minutes(1))  # received later: it wins
    assert book.latest("sb-1") == report(T0 - minutes(3))
    assert not book.record("sb-1", report(T0 + minutes(2), sessions=1), received_at=T0)  # received earlier
    assert (
        idle.decide(
            desired(accepted_at=T0 - minutes(40)), book.latest("sb-1"), now=T0 + minutes(30), default_timeout_minutes=30
        )
        is not None
    )


def test_the_reports_held_share_their_field_name_set() -> None:
    book = ActivityBook(ready=True)
    book.record(
        "sb-1", ActivityReport.model_validate_json('{"lastActivityAt": "2026-12-03T12:00:00Z", "activeSessions": 1}')
    )
    book.record(
        "sb-2", ActivityReport.model_validate_json('{"activeSessions": 0, "lastActivityAt": "2026-12-03T12:01:00Z"}')
    )
    one, two = book.latest("sb-1"), book.latest("sb-2")
    assert one is not None and two is not None
    assert one.__pydantic_fields_set__ is two.__pydantic_fields_set__
    assert (one.active_sessions, two.to_json()) == (1, b'{"lastActivityAt":"2026-12-03T12:01:00Z","activeSessions":0}')


def test_the_observed_activity_never_moves_backwards() -> None:
    first = statuses.activity_observed(None, sandbox_id="sb-1", now=T0, last_activity_at=T0 + minutes(5))
    assert first.last_activity_at == T0 + minutes(5) and first.sandbox_id == "sb-1"
    same = statuses.activity_observed(first, sandbox_id="sb-1", now=T0 + minutes(9), last_activity_at=T0 + minutes(1))
    assert same is first
    reasoned = statuses.activity_observed(
        first, sandbox_id="sb-1", now=T0 + minutes(9), reason="Suspended", set_reason=True
    )
    assert reasoned.idle_reason == "Suspended" and reasoned.updated_at == T0 + minutes(9)
    cleared = statuses.activity_observed(
        reasoned, sandbox_id="sb-1", now=T0 + minutes(10), reason=None, set_reason=True
    )
    assert cleared.idle_reason is None


def test_an_observed_activity_in_the_future_is_corrected() -> None:
    future = statuses.activity_observed(None, sandbox_id="sb-1", now=T0, last_activity_at=T0 + minutes(60))
    fixed = statuses.activity_observed(future, sandbox_id="sb-1", now=T0 + minutes(5), last_activity_at=T0)
    assert fixed.last_activity_at == T0 and fixed.updated_at == T0 + minutes(5)


def test_reports_of_unknown_sandboxes_are_forgotten_once_they_cannot_matter() -> None:
    book = ActivityBook(ready=True)
    book.record("sb-known", report(T0))
    book.record("sb-gone", report(T0))
    book.record("sb-new", report(T0 + minutes(50)))  # its create may not have been seen yet
    assert book.prune(keep={"sb-known"}, before=T0 + minutes(30)) == 1
    assert book.latest("sb-gone") is None
    assert book.latest("sb-known") is not None and book.latest("sb-new") is not None
