"""The consume loop: fetch a batch, admit it through intake, and hand accepted events to the keyed queue.

One loop per process (never two fetches on one subscription). A batch is grouped by sandbox id; groups are
admitted concurrently, the events of one group in stream order, and the whole batch is admitted before the
next fetch, so one sandbox's events are never admitted by two tasks at once in this process (other replicas
are kept honest by compare-and-set).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

import anyio

from sandboxd.errors import InvalidEvent, RetryableError
from sandboxd.reconcile.intake import Admission, Intake, Verdict, sandbox_id_of
from sandboxd.reconcile.ports import Delivery, Source
from sandboxd.runtime.disposition import Disposition
from sandboxd.runtime.queueing import Backlog, KeyedQueue

log = logging.getLogger(__name__)


class Consumer:
    def __init__(
        self,
        *,
        source: Source,
        intake: Intake,
        queue: KeyedQueue,
        disposition: Disposition,
        batch: int = 512,
        fetch_timeout_s: float = 1.0,
        intake_concurrency: int = 128,
        max_held: int = 10_000,
        backlog: Backlog | None = None,
    ) -> None:
        self._source = source
        self._intake = intake
        self._queue = queue
        self._disposition = disposition
        self._batch = batch
        self._fetch_timeout_s = fetch_timeout_s
        self._limiter = anyio.CapacityLimiter(intake_concurrency)
        self._max_held = max_held
        self._backlog = backlog or Backlog()
        self._stopping = anyio.Event()
        self.fetched = 0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Fetch and admit until ``stop()``; a fetch in progress finishes (bounded by its timeout)."""
        while not self._stopping.is_set():
            room = self._max_held - self._queue.held
            self._backlog.room = room > self._batch
            if room <= 0:
                await anyio.sleep(0.01)
                continue
            try:
                deliveries = await self._source.fetch(min(self._batch, room), self._fetch_timeout_s)
            except RetryableError as exc:
                log.warning("fetch failed: %s; retrying", exc.message)
                await anyio.sleep(1.0)
                continue
            self._backlog.fetched(len(deliveries), deliveries[-1].num_pending if deliveries else 0)
            if not deliveries:
                continue
            self.fetched += len(deliveries)
            if self._stopping.is_set():
                await self._disposition.hand_back(deliveries)
                return
            await self.admit(deliveries)
            self._backlog.admitted()

    async def admit(self, deliveries: Sequence[Delivery]) -> None:
        groups: dict[str | None, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            groups[sandbox_id_of(delivery.subject)].append(delivery)
        async with anyio.create_task_group() as tg:
            for sandbox_id, group in groups.items():
                tg.start_soon(self._admit_group, sandbox_id, group)

    async def _admit_group(self, sandbox_id: str | None, group: list[Delivery]) -> None:
        if sandbox_id is None:
            for delivery in group:
                error = InvalidEvent(f"subject {delivery.subject!r} does not name a valid sandbox id")
                await self._disposition.reject(delivery, error)
            return
        async with self._limiter:
            try:
                admissions = await self._intake.admit(sandbox_id, group)
            except RetryableError as exc:
                log.warning("intake of %s failed: %s", sandbox_id, exc.message)
                await self._disposition.retry(group, failures=max(d.num_delivered for d in group), error=exc)
                return
        ordered = sorted(group, key=lambda d: d.stream_sequence)
        for delivery, admission in zip(ordered, admissions, strict=True):
            await self._settle(sandbox_id, delivery, admission)

    async def _settle(self, sandbox_id: str, delivery: Delivery, admission: Admission) -> None:
        if admission.verdict is Verdict.ACCEPTED:
            self._queue.submit(sandbox_id, delivery)
        elif admission.verdict is Verdict.STALE:
            await self._disposition.stale(delivery)
        else:
            assert admission.error is not None
            await self._disposition.reject(delivery, admission.error)
