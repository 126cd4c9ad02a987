"""How a held worker waits on the backlog (``Backlog.wait``): woken when intake catches up, by the settle
period's end or by its limit, never by polling. Time is a ``ManualClock``: nothing here sleeps for real."""

from __future__ import annotations

import anyio
import pytest

from sandboxd.runtime.clock import ManualClock
from sandboxd.runtime.queueing import Backlog

pytestmark = pytest.mark.anyio


class Waiter:
    """One ``Backlog.wait`` in a task; ``done`` once it returned."""

    def __init__(self, backlog: Backlog, limit_s: float) -> None:
        self.backlog, self.limit_s, self.done = backlog, limit_s, False

    async def run(self) -> None:
        await self.backlog.wait(self.limit_s)
        self.done = True


async def test_a_deep_backlog_holds_until_intake_catches_up_without_time_passing() -> None:
    clock = ManualClock()
    backlog = Backlog(threshold=64, settle_s=0.0, clock=clock)
    backlog.fetched(10, pending=500)
    waiter = Waiter(backlog, 5.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter.run)
        await clock.advance(1.0)
        assert not waiter.done  # still 510 waiting: nothing to wake it
        backlog.fetched(3, pending=0)
        await anyio.wait_all_tasks_blocked()
        assert waiter.done and clock.now() == 1.0
    assert not backlog.behind


async def test_the_settle_period_and_the_limit_end_a_wait() -> None:
    clock = ManualClock()
    backlog = Backlog(threshold=64, settle_s=0.25, clock=clock)
    backlog.fetched(512, pending=0)
    backlog.admitted()  # intake admitted the burst: only the settle period holds now
    settling, capped = Waiter(backlog, 5.0), Waiter(Backlog(threshold=64, clock=clock), 0.5)
    capped.backlog.fetched(10, pending=500)
    async with anyio.create_task_group() as tg:
        tg.start_soon(settling.run)
        tg.start_soon(capped.run)
        await clock.advance(0.249)
        assert not settling.done
        await clock.advance(0.001)
        assert settling.done and not backlog.behind
        assert not capped.done
        await clock.advance(0.25)
        assert capped.done and capped.backlog.behind  # the cap ended it: the worker starts the key anyway


async def test_a_queue_without_room_wakes_its_held_workers() -> None:
    clock = ManualClock()
    backlog = Backlog(threshold=64, clock=clock)
    backlog.fetched(10, pending=500)
    waiter = Waiter(backlog, 5.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter.run)
        await anyio.wait_all_tasks_blocked()
        backlog.room = False  # the consume loop cannot fetch the later events: holding would stall
        await anyio.wait_all_tasks_blocked()
        assert waiter.done and not backlog.behind
