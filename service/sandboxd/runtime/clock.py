"""The runtime's monotonic clock, injected so that tests advance time instead of sleeping.

``Clock`` is what the keyed queue and the consume loop need of time: ``now()`` in seconds (monotonic, no
meaning across processes) and ``sleep(seconds)``. ``SYSTEM`` reads ``time.monotonic`` and sleeps with anyio;
``ManualClock`` is the testing twin shipped with the package: time moves only when a test calls ``advance``,
which wakes every sleeper whose deadline it passes, in deadline order, and lets them run before it returns.

Deliberately not here: wall-clock time (``datetime``; the use case takes a ``Callable[[], datetime]``).
Concurrency: ``ManualClock`` is for one event loop; it is not thread-safe.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Protocol

import anyio
import anyio.lowlevel


class Clock(Protocol):
    """Monotonic seconds and a sleep measured by the same clock."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``anyio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


SYSTEM: Clock = SystemClock()


class ManualClock:
    """A clock that stands still until ``advance``: sleepers wake in deadline order as time passes them."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._order = itertools.count()
        self._sleepers: list[tuple[float, int, anyio.Event]] = []

    def now(self) -> float:
        return self._now

    @property
    def sleepers(self) -> int:
        """Tasks asleep on this clock now."""
        return len(self._sleepers)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        woken = anyio.Event()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), woken))
        try:
            await woken.wait()
        finally:  # a cancelled sleeper leaves the heap
            self._sleepers = [s for s in self._sleepers if s[2] is not woken]
            heapq.heapify(self._sleepers)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking each sleeper it passes and letting every task settle."""
        target = self._now + seconds
        await anyio.wait_all_tasks_blocked()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, woken = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            woken.set()
            await anyio.wait_all_tasks_blocked()
        self._now = target
        await anyio.wait_all_tasks_blocked()
