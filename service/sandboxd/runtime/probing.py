"""The activity prober loop: ask every running sandbox's pty-server for its activity, into the activity book.

``probe_once`` probes every ACTIVE, not idle sandbox of the desired-state view once, at most ``concurrency`` at
a time. A report it gets is recorded in the ``ActivityBook``, received at the probe's clock (the sweeper
decides from it) and, when the book kept it, shared with the other replicas (``ActivityPublisher``, best
effort). A probe that fails records nothing: a sandbox that cannot be reached is not thereby active.

What it does not do: decide idleness (``reconcile.idle``) or talk HTTP (the ``Prober`` port does).
Concurrency: probes run in one task group per round; ``run`` starts a round every interval (±10 %).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio

from sandboxd import naming
from sandboxd.errors import SandboxdError
from sandboxd.models.activity import ActivityReport
from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.naming import SandboxId
from sandboxd.reconcile.activity import ActivityBook
from sandboxd.reconcile.ports import ActivityPublisher, DesiredView, Prober
from sandboxd.runtime.loops import LoopGuard, Record

log = logging.getLogger(__name__)


@dataclass
class ProbeStats:
    probes: int = 0
    failures: int = 0  # probes that got no answer
    unshared: int = 0  # answers that could not be shared with the other replicas


class ActivityProber:
    def __init__(
        self,
        *,
        view: DesiredView,
        activity: ActivityBook,
        prober: Prober,
        publisher: ActivityPublisher | None = None,
        concurrency: int = 32,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._view = view
        self._activity = activity
        self._prober = prober
        self._publisher = publisher
        self._clock = clock
        self._limit = anyio.CapacityLimiter(concurrency)
        self.stats = ProbeStats()

    async def probe_once(self) -> int:
        """Probe every running sandbox once (bounded concurrency); returns how many answered."""
        targets = [
            r.value
            for r in self._view.snapshot()
            if r.value.lifecycle is Lifecycle.ACTIVE and r.value.idle_since is None
        ]
        answered = 0

        async def probe(desired: DesiredState) -> None:
            nonlocal answered
            async with self._limit:
                report = await self._prober.probe(
                    sandbox_id=desired.sandbox_id,
                    namespace=naming.namespace_for(desired.owner_uid),
                    owner_uid=desired.owner_uid,
                )
            self.stats.probes += 1
            if report is None:
                self.stats.failures += 1
                return
            answered += 1
            kept = self._activity.record(desired.sandbox_id, report, received_at=self._clock())
            if kept and self._publisher is not None:  # as the book holds it: its time capped
                await self._share(desired.sandbox_id, self._activity.latest(desired.sandbox_id) or report)

        async with anyio.create_task_group() as tg:
            for desired in targets:
                tg.start_soon(probe, desired, name=f"probe-{desired.sandbox_id}")
        return answered

    async def _share(self, sandbox_id: SandboxId, report: ActivityReport) -> None:
        assert self._publisher is not None
        try:
            await self._publisher.publish(sandbox_id, report)
        except Exception as exc:  # noqa: BLE001 - sharing is best effort; this replica recorded the report
            self.stats.unshared += 1
            what = exc.message if isinstance(exc, SandboxdError) else f"unexpected {exc.__class__.__name__}"
            log.warning("sharing the activity of %s: %s", sandbox_id, what)

    async def run(self, *, interval_s: float, record: Record | None = None) -> None:
        """Once the view and the book hold what the broker had at start, probe every ``interval_s`` (±10 %)
        until cancelled; a failed round is logged, counted (``record``) and retried at the next interval."""
        while not (self._view.ready and self._activity.ready):  # noqa: ASYNC110 - the feeds report no event
            await anyio.sleep(0.05)
        guard = LoopGuard("idle probe", record=record)
        await guard.forever(self.probe_once, every_s=lambda: interval_s * random.uniform(0.9, 1.1))
