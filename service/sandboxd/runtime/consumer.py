"""The consume loop: fetch a batch, admit it through intake, and hand accepted events to the keyed queue.

One loop per process (never two fetches on one subscription). A batch is grouped by sandbox id; groups are
admitted concurrently by at most ``intake_concurrency`` tasks, each taking the next group until none is left
(not a task and a limiter per group: a batch of 512 new sandboxes costs a quarter of the task starts), the
events of one group in stream order, and the whole batch is admitted before the next fetch, so one sandbox's
events are never admitted by two tasks at once in this process (other replicas are kept honest by
compare-and-set).

Isolation: whatever intake raises is reported to the disposition as the outcome of the events it was admitting
(``Outcome.failed``), never raised out of the loop; when that outcome dead-letters them (a refusal, or the last
retry), intake is told (``gave_up``) so the sandbox's status says why its events were not recorded. When a
group of several events fails with an exception outside the error tree, its events are admitted again one at a
time, so only the event that causes it is retried (and dead-lettered once its deliveries run out) and the
others go on. A failed fetch is logged with
its class, counted, and retried after a growing pause; only cancellation ends ``run``.

Time is injected (``runtime.clock.Clock``, the queue's clock): the pause while the queue holds too much is slept
on it.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Protocol

import anyio

from sandboxd import naming
from sandboxd.errors import InvalidEvent, RetryableError, SandboxdError
from sandboxd.models.bounds import quote
from sandboxd.naming import SandboxId
from sandboxd.reconcile.intake import Admission, Verdict, sandbox_id_of
from sandboxd.reconcile.ports import Delivery, Source
from sandboxd.runtime.clock import SYSTEM, Clock
from sandboxd.runtime.disposition import SHUTTING_DOWN, STALE, Disposition, Outcome, Settlement
from sandboxd.runtime.loops import FailureLog, LoopGuard
from sandboxd.runtime.queueing import Backlog, KeyedQueue

log = logging.getLogger(__name__)


class Admits(Protocol):
    """What the loop needs of intake (``reconcile.intake.Intake``): one verdict per event, in stream order, and
    a status that says why when intake itself failed for good on events it could not record."""

    async def admit(self, sandbox_id: SandboxId, events: Sequence[Delivery]) -> list[Admission]: ...

    async def gave_up(
        self, sandbox_id: SandboxId, events: Sequence[Delivery], error: SandboxdError, *, note: str = ""
    ) -> None: ...


class Consumer:
    def __init__(
        self,
        *,
        source: Source,
        intake: Admits,
        queue: KeyedQueue,
        disposition: Disposition,
        batch: int = 512,
        fetch_timeout_s: float = 1.0,
        intake_concurrency: int = 128,
        max_held: int = 10_000,
        backlog: Backlog | None = None,
        guard: LoopGuard | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self._clock = clock
        self._source = source
        self._intake = intake
        self._queue = queue
        self._disposition = disposition
        self._batch = batch
        self._fetch_timeout_s = fetch_timeout_s
        self._intake_concurrency = intake_concurrency
        self._max_held = max_held
        self._backlog = backlog or Backlog(clock=clock)
        self._stopping = anyio.Event()
        self._guard = guard or LoopGuard("consume")
        self._retrying = FailureLog("intake")
        self.fetched = 0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Fetch and admit until ``stop()``; a fetch in progress finishes (bounded by its timeout)."""
        while not self._stopping.is_set():
            room = self._max_held - self._queue.held
            self._backlog.room = room > self._batch
            if room <= 0:
                await self._clock.sleep(0.01)
                continue
            try:
                deliveries = await self._source.fetch(min(self._batch, room), self._fetch_timeout_s)
            except Exception as exc:  # noqa: BLE001 - the loop outlives any one failed fetch
                await self._guard.failed(exc)
                continue
            self._guard.succeeded()
            self._backlog.fetched(len(deliveries), deliveries[-1].num_pending if deliveries else 0)
            if not deliveries:
                continue
            self.fetched += len(deliveries)
            if self._stopping.is_set():
                await self._disposition.settle(deliveries, SHUTTING_DOWN)
                return
            await self.admit(deliveries)
            self._backlog.admitted()

    async def admit(self, deliveries: Sequence[Delivery]) -> None:
        groups: dict[SandboxId | None, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            groups[sandbox_id_of(delivery.subject)].append(delivery)
        waiting = deque(groups.items())

        async def admit_groups() -> None:
            while waiting:
                await self._admit_group(*waiting.popleft())

        async with anyio.create_task_group() as tg:
            for _ in range(min(len(waiting), self._intake_concurrency)):
                tg.start_soon(admit_groups)

    async def _admit_group(self, sandbox_id: SandboxId | None, group: list[Delivery]) -> None:
        if sandbox_id is None:
            for delivery in group:
                error = InvalidEvent(
                    f"subject {quote(delivery.subject)} does not name a valid sandbox id ({naming.SANDBOX_ID_RULE})"
                )
                await self._disposition.settle([delivery], Outcome.failed(error, where="intake"))
            return
        try:
            admissions = await self._intake.admit(sandbox_id, group)
        except Exception as exc:  # noqa: BLE001 - reported as the outcome of these events, never raised
            await self._intake_failed(sandbox_id, group, exc)
            return
        self._retrying.succeeded()
        ordered = sorted(group, key=lambda d: d.stream_sequence)
        for delivery, admission in zip(ordered, admissions, strict=True):
            await self._settle(sandbox_id, delivery, admission)

    async def _intake_failed(self, sandbox_id: SandboxId, group: list[Delivery], exc: Exception) -> None:
        if isinstance(exc, SandboxdError) or len(group) == 1:
            if not isinstance(exc, SandboxdError):
                log.error("intake of %s raised %s", sandbox_id, exc.__class__.__name__, exc_info=exc)
                self._guard.count(exc)
            elif isinstance(exc, RetryableError):  # a broker outage or election fails many at once: said once a run
                self._retrying.failed(exc, of=sandbox_id)
            else:
                log.warning("intake of %s failed: %s", sandbox_id, exc.message)
            settlement = await self._disposition.settle(group, Outcome.failed(exc, where="intake"))
            await self._tell_gave_up(sandbox_id, group, settlement)
            return
        # An unforeseen failure of a group: find the event that causes it, one at a time in stream order.
        for delivery in sorted(group, key=lambda d: d.stream_sequence):
            await self._admit_group(sandbox_id, [delivery])

    async def _settle(self, sandbox_id: SandboxId, delivery: Delivery, admission: Admission) -> None:
        if admission.verdict is Verdict.ACCEPTED:
            try:
                self._queue.submit(sandbox_id, delivery)
            except RuntimeError:  # the queue is closing: another replica takes it
                await self._disposition.settle([delivery], SHUTTING_DOWN)
        elif admission.verdict is Verdict.STALE:
            await self._disposition.settle([delivery], STALE)
        else:  # rejected (intake wrote why in the status), or waiting for its create (retried like a failure)
            error = admission.error or InvalidEvent("rejected by intake")
            settlement = await self._disposition.settle([delivery], Outcome.failed(error, where="intake"))
            if admission.verdict is not Verdict.REJECTED:
                await self._tell_gave_up(sandbox_id, [delivery], settlement)

    async def _tell_gave_up(self, sandbox_id: SandboxId, group: list[Delivery], settlement: Settlement) -> None:
        """Events dead-lettered unrecorded (a failure for good, or the last retry): intake writes why in the
        status."""
        dead = [
            (d, decision) for d, decision in zip(group, settlement.decisions, strict=True) if decision.dead_lettered
        ]
        if dead and (error := dead[-1][1].error) is not None:
            await self._intake.gave_up(sandbox_id, [d for d, _ in dead], error, note=dead[-1][1].note)
