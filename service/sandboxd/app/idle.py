"""Wiring of the idle lifecycle inside the service: the sweeper half (the scaler process is ``app.scaler``).

``idle_lifecycle(...)`` builds what the service runs beside its reconcilers (``Service._serve`` starts
``IdleLifecycle.run`` in its task group): the desired-state watch, the activity feed, the optional prober loop
(``runtime.probing``) and the sweeper. The command outbox (``runtime.outbox``) is the service's, made by
``command_outbox``: its reconcile passes send suspend and resume commands into it (only while the sweeper runs,
which resends what failed), the sweeper idle and wake commands. Nothing touches the network until ``run``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Final

import anyio
from nats.js import JetStreamContext

from sandboxd.adapters.jetstream.activity import (
    ActivityFeed,
    DesiredFeed,
    JetStreamActivity,
    JetStreamCommands,
)
from sandboxd.adapters.jetstream.publishing import JetStreamEvents
from sandboxd.adapters.jetstream.stores import KvStore
from sandboxd.adapters.probing import HttpProber
from sandboxd.models.desired import DesiredState
from sandboxd.naming import SandboxId
from sandboxd.reconcile.activity import ActivityBook
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.runtime.loops import LoopGuard, Record, until_done
from sandboxd.runtime.outbox import CommandOutbox
from sandboxd.runtime.probing import ActivityProber
from sandboxd.runtime.sweeper import SweepEffects, Sweeper, SweepFeeds, SweepPolicy
from sandboxd.settings import Settings
from sandboxd.settings.idle import IdleSettings

log = logging.getLogger(__name__)

#: How soon a desired-state watch that ended (its connection closed, a leader moved) is started again, s.
WATCH_RESTART_S: Final = 1.0


@dataclass
class IdleLifecycle:
    settings: IdleSettings
    sweeper: Sweeper
    probing: ActivityProber | None
    desired: DesiredFeed
    activity: ActivityFeed
    prober: HttpProber | None

    async def run(self, *, record: Record | None = None) -> None:
        """Run the feeds and the sweeper until cancelled (returns at once when the sweeper is turned off).

        Each part outlives its own failures (``runtime.loops``, counted through ``record``): the desired-state
        watch starts again after it ends or fails, the activity feed's subscription is retried until it is
        made, and a failed sweep is retried at the next interval.
        """
        if not self.settings.sweeper:
            log.info("idle sweeper off (SANDBOXD_IDLE_SWEEPER=false)")
            return
        watching = LoopGuard("idle desired-state watch", record=record)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    partial(watching.forever, self.desired.run, every_s=lambda: WATCH_RESTART_S),
                    name="idle-desired-watch",
                )
                await until_done(self.activity.start, LoopGuard("idle activity feed", record=record))
                interval_s = self.settings.sweep_interval_s
                if self.probing is not None:
                    tg.start_soon(partial(self.probing.run, interval_s=interval_s, record=record), name="idle-probe")
                await self.sweeper.run(interval_s=interval_s, record=record)
        finally:
            with anyio.CancelScope(shield=True):
                await self.activity.close()
                if self.prober is not None:
                    await self.prober.aclose()


def command_outbox(js: JetStreamContext) -> CommandOutbox:
    """The service's scale-command outbox, publishing to SANDBOX_SCALE."""
    return CommandOutbox(JetStreamCommands(js))


def idle_lifecycle(
    js: JetStreamContext,
    settings: Settings,
    *,
    desired: KvStore[DesiredState],
    status: StatusWriter,
    commands: CommandOutbox,
    kick: Callable[[SandboxId], None],
    clock: Callable[[], datetime],
) -> IdleLifecycle:
    """Build the service's idle lifecycle (no I/O here; ``run`` opens the feeds). ``commands``: the outbox the
    service's reconcile passes share (``command_outbox``)."""
    idle = settings.idle
    view = DesiredFeed(js, records=desired)
    feed = ActivityFeed(js, ActivityBook())
    prober = (
        HttpProber(url_template=idle.probe_url, timeout_s=idle.probe_timeout_s, concurrency=idle.probe_concurrency)
        if idle.probe
        else None
    )
    sweeper = Sweeper(
        feeds=SweepFeeds(view=view, activity=feed.book),
        effects=SweepEffects(
            desired=desired,
            status=status,
            commands=commands,
            kick=kick,
            events=JetStreamEvents(js),
        ),
        policy=SweepPolicy.of(idle, default_timeout_minutes=settings.runtime.idle_timeout_minutes),
        clock=clock,
    )
    probing = (
        ActivityProber(
            view=view,
            activity=feed.book,
            prober=prober,
            publisher=JetStreamActivity(js),
            concurrency=idle.probe_concurrency,
        )
        if prober is not None
        else None
    )
    return IdleLifecycle(settings=idle, sweeper=sweeper, probing=probing, desired=view, activity=feed, prober=prober)


# --- the scaler process -------------------------------------------------------------------------------------
