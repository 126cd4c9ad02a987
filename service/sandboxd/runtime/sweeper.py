"""The idle sweeper: looks at every sandbox now and then, and carries out the idle lifecycle's decisions.

One sweep (``sweep_once(now)``) walks this process's view of every desired state once, without I/O, and asks
``reconcile.idle.decide`` about each; only the few sandboxes with something to do cost a round trip:

- idle / wake: write the desired state with compare-and-set (``idleSince`` set or cleared, generation
  bumped), publish the scale command, note the reason in the status and kick the reconcile, which renders the
  same replica count the command carries (so a resync never undoes a scale-down);
- activity that moved by more than the resolution: write ``status.lastActivityAt``;
- expiry (``reconcile.expiry``): a sandbox whose ``spec.expiry.at`` has passed gets its delete event published
  once by this process (the derived event id dedupes it across replicas and restarts); intake then deletes it
  like any other delete;
- first, commands that failed to publish (``runtime.outbox.CommandOutbox``, shared with the reconcile passes)
  are published again while still current.

Suspend and resume are not the sweeper's: the reconcile pass that applies one sends its scale command
(``reconcile.reconciler``); a suspended sandbox simply never idles or wakes here.

Its collaborators come in three groups: ``SweepFeeds`` (what a sweep reads, in memory), ``SweepEffects`` (where
its decisions go) and ``SweepPolicy`` (the numbers), plus the injected ``clock``.

Concurrency: every replica of the service runs a sweeper over the same records. Two that decide at once
write from the same revision, so one compare-and-set wins; the loser re-reads and does nothing more, and the
deterministic command id dedupes whatever both publish. A sweep never runs before the desired-state view and
the activity book have replayed what the broker holds. Time is injected: the loop asks ``clock`` for ``now``;
tests call ``sweep_once`` with the instant they want, and never sleep through a timeout.

What it does not do: decide (``reconcile.idle`` does), talk to a broker or a cluster (the ports do), probe
(``runtime.probing.ActivityProber`` fills the activity book), keep a command that failed to publish
(``runtime.outbox.CommandOutbox`` does, and the next sweep resends it), or retry a lost race within a sweep
(the next sweep looks again).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio

from sandboxd import naming
from sandboxd.errors import SandboxdError, StoreConflict
from sandboxd.models.desired import DesiredState
from sandboxd.models.events import DeleteEvent
from sandboxd.naming import SandboxId
from sandboxd.reconcile import expiry, idle, scaling, statuses
from sandboxd.reconcile.activity import ActivityBook
from sandboxd.reconcile.expiry import EventPublisher
from sandboxd.reconcile.idle import Action, Decision
from sandboxd.reconcile.ports import Clock, DesiredView, Store, Versioned
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.runtime.loops import LoopGuard, Record
from sandboxd.runtime.outbox import CommandOutbox
from sandboxd.settings.idle import IdleSettings

log = logging.getLogger(__name__)


@dataclass
class SweepStats:
    sweeps: int = 0
    not_ready: int = 0
    idled: int = 0
    woken: int = 0
    lost_races: int = 0
    errors: int = 0
    status_writes: int = 0
    expired: int = 0


@dataclass
class _Plan:
    """What one pass over the records found to do."""

    decisions: list[tuple[Versioned[DesiredState], Decision]] = field(default_factory=list)
    activity: list[tuple[SandboxId, datetime]] = field(default_factory=list)
    expired: list[DeleteEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SweepFeeds:
    """What a sweep reads, in memory and without I/O: every desired state, and the newest activity of each."""

    view: DesiredView
    activity: ActivityBook


@dataclass(frozen=True, slots=True)
class SweepEffects:
    """Where a sweep's decisions go: the desired state (compare-and-set), the status, scale commands, a kick
    of the sandbox's reconcile, and expiry's delete events (None: expiry off)."""

    desired: Store[DesiredState]
    status: StatusWriter
    commands: CommandOutbox
    kick: Callable[[SandboxId], None]
    events: EventPublisher | None = None


@dataclass(frozen=True, slots=True)
class SweepPolicy:
    """The numbers: the idle timeout of a sandbox that sets none (minutes), how far activity must move before
    ``status.lastActivityAt`` is written again (s), and the most such writes one sweep makes."""

    default_timeout_minutes: int
    activity_resolution_s: float = 60.0
    status_writes_per_sweep: int = 500

    @classmethod
    def of(cls, settings: IdleSettings, *, default_timeout_minutes: int) -> SweepPolicy:
        return cls(
            default_timeout_minutes=default_timeout_minutes,
            activity_resolution_s=settings.activity_resolution_s,
            status_writes_per_sweep=settings.status_writes_per_sweep,
        )


class Sweeper:
    def __init__(self, *, feeds: SweepFeeds, effects: SweepEffects, policy: SweepPolicy, clock: Clock) -> None:
        self._view, self._activity = feeds.view, feeds.activity
        self._desired, self._status, self._commands = effects.desired, effects.status, effects.commands
        self._kick, self._events = effects.kick, effects.events
        self._policy = policy
        self._resolution = timedelta(seconds=policy.activity_resolution_s)
        self._clock = clock
        self._noted: dict[SandboxId, datetime] = {}  # lastActivityAt this process last wrote into status
        self._expiries: dict[str, str] = {}  # sandbox id -> id of the expiry delete this process published
        self.stats = SweepStats()

    # --- one sweep -----------------------------------------------------------------------------------------

    async def sweep_once(self, now: datetime | None = None) -> SweepStats:
        """Look at every sandbox once at ``now`` (default: the clock) and act on what needs acting on."""
        now = now or self._clock()
        if not self.ready:
            self.stats.not_ready += 1
            return self.stats
        await self._resend()
        plan = self._plan(now)
        for record, decision in plan.decisions:
            await self._guarded(record.value.sandbox_id, self._carry_out(record, decision, now))
        for sandbox_id, at in plan.activity[: self._policy.status_writes_per_sweep]:
            await self._guarded(sandbox_id, self._note_activity(sandbox_id, at, now))
        for event in plan.expired:
            await self._guarded(event.subject, self._expire(event))
        self.stats.sweeps += 1
        return self.stats

    def _plan(self, now: datetime) -> _Plan:
        """The pure part of a sweep: no I/O, one pass over every record."""
        plan = _Plan()
        seen: set[SandboxId] = set()
        noted: dict[SandboxId, datetime] = {}
        latest, default, resolution = self._activity.latest, self._policy.default_timeout_minutes, self._resolution
        previous_noted, events = self._noted, self._events
        for record in self._view.snapshot():
            desired = record.value
            sandbox_id = desired.sandbox_id
            seen.add(sandbox_id)
            report = latest(sandbox_id)
            decision = idle.decide(desired, report, now=now, default_timeout_minutes=default)
            if decision is not None:
                plan.decisions.append((record, decision))
            written = previous_noted.get(sandbox_id)
            if written is not None:
                noted[sandbox_id] = written
            if report is not None and (
                written is None or report.last_activity_at - written >= resolution or written > now
            ):
                plan.activity.append((sandbox_id, report.last_activity_at))
            if events is not None and expiry.due(desired, now=now):
                event = expiry.delete_event(desired, now=now)
                if self._expiries.get(sandbox_id) != event.id:
                    plan.expired.append(event)
        self._noted = noted
        self._activity.prune(keep=seen, before=now - timedelta(minutes=default))
        return plan

    async def _guarded(self, sandbox_id: SandboxId, step: Awaitable[object]) -> None:
        """Run one sandbox's step; its failure is logged and left for the next sweep, never the whole sweep's."""
        try:
            await step
        except Exception as exc:  # noqa: BLE001 - one sandbox's failure (or bug) never stops the sweep
            self.stats.errors += 1
            what = exc.message if isinstance(exc, SandboxdError) else f"unexpected {exc.__class__.__name__}"
            log.warning("idle sweep of %s: %s (next sweep retries)", sandbox_id, what)

    # --- idle and wake -------------------------------------------------------------------------------------

    async def _carry_out(self, record: Versioned[DesiredState], decision: Decision, now: datetime) -> None:
        current = record.value
        sandbox_id = current.sandbox_id
        key = naming.desired_key(sandbox_id)
        new = idle.desired_after(current, decision, now=now)
        try:
            revision = await self._desired.put(key, new, revision=record.revision)
        except StoreConflict:
            # Another replica decided (or an event arrived) since this view was taken: its writer acts on it.
            self.stats.lost_races += 1
            fresh = await self._desired.get(key)
            if fresh is not None:
                self._view.note(fresh)
            return
        self._view.note(Versioned(new, revision))
        if decision.action is Action.IDLE:
            self.stats.idled += 1
        else:
            self.stats.woken += 1
        log.info("sandbox %s %s: %s", sandbox_id, "idle" if decision.action is Action.IDLE else "wakes", decision.why)
        await self._guarded(sandbox_id, self._commands.send(scaling.scale_command(new, decision.action, now=now)))
        reason = idle.idle_reason(new, decision)
        await self._guarded(
            sandbox_id,
            self._status.write(
                sandbox_id,
                lambda prev: statuses.activity_observed(
                    prev, sandbox_id=sandbox_id, now=now, reason=reason, set_reason=True
                ),
            ),
        )
        self._kick(sandbox_id)  # the reconcile renders the new replica count and shows the phase

    # --- commands ------------------------------------------------------------------------------------------

    async def _resend(self) -> None:
        """Publish again what failed to publish (``CommandOutbox.resend``), against the current generations."""
        waiting = self._commands.waiting_for()
        if not waiting:
            return
        generations = {
            r.value.sandbox_id: r.value.generation for r in self._view.snapshot() if r.value.sandbox_id in waiting
        }
        await self._commands.resend(generations, self._guarded)

    # --- expiry --------------------------------------------------------------------------------------------

    async def _expire(self, event: DeleteEvent) -> None:
        assert self._events is not None
        await self._events.publish(event)
        self._expiries[event.subject] = event.id
        self.stats.expired += 1
        log.info("sandbox %s expired: delete published (purge=%s)", event.subject, event.data.purge)

    # --- activity in the status ----------------------------------------------------------------------------

    async def _note_activity(self, sandbox_id: SandboxId, at: datetime, now: datetime) -> None:
        await self._status.write(
            sandbox_id,
            lambda prev: statuses.activity_observed(prev, sandbox_id=sandbox_id, now=now, last_activity_at=at),
        )
        self._noted[sandbox_id] = at
        self.stats.status_writes += 1

    # --- loops ---------------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether the desired-state view and the activity book hold what the broker had at start."""
        return self._view.ready and self._activity.ready

    async def run(self, *, interval_s: float, record: Record | None = None) -> None:
        """Once the view and the book are ready, sweep every ``interval_s`` (±10 %) until cancelled; a failed
        sweep is logged, counted (``record``) and retried at the next interval (``runtime.loops``)."""
        while not self.ready:  # noqa: ASYNC110 - two feeds fill in the background and report no event
            await anyio.sleep(0.05)
        sweeping = LoopGuard("idle sweep", record=record)
        await sweeping.forever(self.sweep_once, every_s=lambda: interval_s * random.uniform(0.9, 1.1))
