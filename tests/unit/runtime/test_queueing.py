"""The keyed queue (``runtime.queueing.KeyedQueue``) on a ``ManualClock``: time is advanced, never slept on.

Each test drives the queue with fake deliveries and a handler the test controls, and checks what a user of the
service relies on: one pass at a time per sandbox, coalescing, ack only after a pass that saw the event, the
retry delay, the burst hold, the heartbeat and the shutdown hand-back.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from sandboxd.errors import (
    ApplyRejected,
    ApplyUnavailable,
    BrokerUnavailable,
    PermanentError,
    RetryableError,
    SandboxdError,
)
from sandboxd.reconcile.reconciler import Outcome as PassOutcome
from sandboxd.reconcile.reconciler import Result
from sandboxd.runtime.clock import ManualClock
from sandboxd.runtime.disposition import Disposition
from sandboxd.runtime.queueing import Backlog, KeyedQueue
from sandboxd.runtime.retry import Backoff
from unit.runtime.fakes import FakeDelivery, Letters

pytestmark = pytest.mark.anyio


class Handler:
    """Records each pass; a key in ``blocked`` waits for ``release`` (on the same task, so no sleeping)."""

    def __init__(self) -> None:
        self.passes: list[tuple[str, bool]] = []
        self.blocked: set[str] = set()
        self.release = anyio.Event()
        self.fail: dict[str, int] = {}  # key -> passes still to fail with a retryable error

    async def __call__(self, key: str, after_intake: bool) -> PassOutcome:
        self.passes.append((key, after_intake))
        if key in self.blocked:
            await self.release.wait()
        if self.fail.get(key, 0) > 0:
            self.fail[key] -= 1
            return PassOutcome(Result.RETRY, error=RetryableError("kube-apiserver busy"))
        return PassOutcome(Result.DONE)


def disposition() -> Disposition:
    return Disposition(dead_letters=Letters(), backoff=Backoff(1.0, 60.0), max_deliver=5, rng=random.Random(1))


@asynccontextmanager
async def running(queue: KeyedQueue, clock: ManualClock) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run)
        await clock.advance(0)
        yield
        async with anyio.create_task_group() as closing:
            closing.start_soon(queue.close, 1.0)
            await clock.advance(1.0)


async def test_events_for_a_busy_sandbox_coalesce_into_one_more_pass() -> None:
    clock, handler = ManualClock(), Handler()
    queue = KeyedQueue(handler=handler, disposition=disposition(), concurrency=2, clock=clock)
    first, *later = [FakeDelivery("sandbox.update.a", stream_sequence=n) for n in range(1, 5)]
    handler.blocked.add("a")
    async with running(queue, clock):
        queue.submit("a", first)
        await clock.advance(0)
        for delivery in later:
            queue.submit("a", delivery)
        await clock.advance(0)
        assert [d.settled for d in later] == [[], [], []]  # not acked by the pass that started before them
        handler.release.set()
        await clock.advance(0)
    assert handler.passes == [("a", True), ("a", True)]
    assert [d.settled for d in [first, *later]] == [[("ack", None)]] * 4


async def test_one_pass_at_a_time_per_sandbox_many_sandboxes_at_once() -> None:
    clock, handler = ManualClock(), Handler()
    queue = KeyedQueue(handler=handler, disposition=disposition(), concurrency=3, clock=clock)
    handler.blocked |= {"a", "b", "c"}
    async with running(queue, clock):
        for key in "abc":
            queue.submit(key, FakeDelivery(f"sandbox.create.{key}"))
        await clock.advance(0)
        assert sorted(key for key, _ in handler.passes) == ["a", "b", "c"]  # all three run together
        assert queue.held == 3
        handler.release.set()
        await clock.advance(0)
        assert queue.idle() and queue.held == 0


async def test_a_retried_kick_runs_again_only_after_the_backoff_delay() -> None:
    clock, handler = ManualClock(), Handler()
    queue = KeyedQueue(handler=handler, disposition=disposition(), concurrency=1, clock=clock)
    handler.fail["a"] = 1
    async with running(queue, clock):
        queue.submit("a")  # a resync kick: no delivery to nak, so the queue re-submits it itself
        await clock.advance(0)
        assert handler.passes == [("a", False)]
        await clock.advance(0.5)  # Backoff(1.0, ...): the first retry waits at least half of a second
        assert handler.passes == [("a", False)]
        await clock.advance(60)
        assert handler.passes == [("a", False), ("a", False)]
        assert queue.stats.retries == 1 and queue.stats.passes == 2


async def test_a_retried_pass_naks_its_deliveries_with_a_delay_and_holds_no_more_passes() -> None:
    clock, handler = ManualClock(), Handler()
    queue = KeyedQueue(handler=handler, disposition=disposition(), concurrency=1, clock=clock)
    handler.fail["a"] = 1
    delivery = FakeDelivery("sandbox.update.a")
    async with running(queue, clock):
        queue.submit("a", delivery)
        await clock.advance(120)
    [(kind, delay)] = delivery.settled
    assert kind == "nak" and delay is not None and delay > 0
    assert handler.passes == [("a", True)]  # the redelivery, not the queue, brings the next pass


async def test_during_a_burst_a_sandbox_waits_for_its_later_events_at_most_the_hold_cap() -> None:
    clock, handler = ManualClock(), Handler()
    backlog = Backlog(threshold=4, clock=clock)
    backlog.fetched(100, pending=1000)  # intake is far behind
    queue = KeyedQueue(
        handler=handler, disposition=disposition(), concurrency=1, backlog=backlog, hold_cap_s=2.0, clock=clock
    )
    async with running(queue, clock):
        queue.submit("a", FakeDelivery("sandbox.create.a", stream_sequence=1))
        await clock.advance(1.0)
        queue.submit("a", FakeDelivery("sandbox.update.a", stream_sequence=2))  # joins the held key
        await clock.advance(0.9)
        assert handler.passes == []
        await clock.advance(0.2)
        assert handler.passes == [("a", True)]
        assert queue.stats.passes == 1


async def test_with_no_backlog_a_sandbox_starts_at_once() -> None:
    clock, handler = ManualClock(), Handler()
    queue = KeyedQueue(handler=handler, disposition=disposition(), concurrency=1, clock=clock)
    async with running(queue, clock):
        queue.submit("a", FakeDelivery("sandbox.create.a"))
        await clock.advance(0)
        assert handler.passes == [("a", True)]


async def test_held_deliveries_are_kept_alive_every_heartbeat() -> None:
    clock, handler = ManualClock(), Handler()
    queue = KeyedQueue(handler=handler, disposition=disposition(), concurrency=1, heartbeat_s=10.0, clock=clock)
    handler.blocked.add("a")
    running_pass, waiting = FakeDelivery("sandbox.create.a"), FakeDelivery("sandbox.update.a", stream_sequence=2)
    async with running(queue, clock):
        queue.submit("a", running_pass)
        await clock.advance(0)
        queue.submit("a", waiting)
        await clock.advance(9.0)
        assert running_pass.progress == waiting.progress == 0
        await clock.advance(1.0)
        assert running_pass.progress == waiting.progress == 1
        await clock.advance(20.0)
        assert running_pass.progress == waiting.progress == 3
        handler.release.set()


async def test_close_hands_back_what_has_not_started_and_cancels_a_pass_past_the_grace() -> None:
    clock, handler = ManualClock(), Handler()
    queue = KeyedQueue(handler=handler, disposition=disposition(), concurrency=1, clock=clock)
    handler.blocked.add("slow")
    slow, queued = FakeDelivery("sandbox.create.slow"), FakeDelivery("sandbox.create.other", stream_sequence=2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run)
        queue.submit("slow", slow)
        await clock.advance(0)
        queue.submit("other", queued)  # the only worker is busy: this one waits
        tg.start_soon(queue.close, 5.0)
        await clock.advance(0)
        assert queued.settled == [("nak", None)]  # handed back at once, for another replica
        assert slow.settled == []
        await clock.advance(4.9)
        assert slow.settled == []  # still within the grace
        await clock.advance(0.1)
    assert slow.settled == [("nak", None)]
    assert handler.passes == [("slow", True)]
    with pytest.raises(RuntimeError, match="closing"):
        queue.submit("late", FakeDelivery("sandbox.create.late"))


async def test_close_waits_for_a_running_pass_that_finishes_within_the_grace() -> None:
    clock, handler = ManualClock(), Handler()
    queue = KeyedQueue(handler=handler, disposition=disposition(), concurrency=1, clock=clock)
    handler.blocked.add("a")
    delivery = FakeDelivery("sandbox.create.a")
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run)
        queue.submit("a", delivery)
        await clock.advance(0)
        tg.start_soon(queue.close, 30.0)
        await clock.advance(1.0)
        handler.release.set()
        await clock.advance(0)
    assert delivery.settled == [("ack", None)]
    assert clock.now() == 1.0  # the grace did not have to run out


async def test_a_broker_outage_logs_one_warning_without_a_traceback_and_a_bug_keeps_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """docs/operations.md: a traceback means a bug; a broker that is down is expected and said once per run."""
    clock, raising = ManualClock(), {"a": BrokerUnavailable("JetStream did not answer"), "b": None}

    async def handler(key: str, after_intake: bool) -> PassOutcome:
        error = raising.get(key)
        if error is not None:
            raise error
        return PassOutcome(Result.DONE)

    queue = KeyedQueue(handler=handler, disposition=disposition(), concurrency=1, clock=clock)
    caplog.set_level(logging.INFO, logger="sandboxd.runtime")
    async with running(queue, clock):
        for key in ("a", "c", "d"):
            raising[key] = raising["a"]
            queue.submit(key, FakeDelivery(f"sandbox.update.{key}"))
        await clock.advance(0)
        queue.submit("b", FakeDelivery("sandbox.update.b"))  # the broker is back: a pass succeeds
        await clock.advance(0)
        raising["e"] = KeyError("a bug in one sandbox's pass")
        queue.submit("e", FakeDelivery("sandbox.update.e"))
        await clock.advance(0)
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines == [
        ("WARNING", "reconcile of a failed: JetStream did not answer; retrying", False),
        ("INFO", "reconcile recovered after 3 failed attempts", False),
        ("ERROR", "reconcile of e raised KeyError", True),
    ]


class Failing:
    """A pass that keeps failing (returning ``error``, or raising it when ``raises``) and records when it ran."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock, self.raises = clock, False
        self.error: BaseException = ApplyUnavailable("notadir: Not a directory")
        self.at: list[float] = []  # when each pass started
        self.ended: list[float] = []
        self.blocked: anyio.Event | None = None

    async def __call__(self, key: str, after_intake: bool) -> PassOutcome:
        self.at.append(self.clock.now())
        if self.blocked is not None:
            await self.blocked.wait()
        self.ended.append(self.clock.now())
        if self.raises:
            raise self.error
        if isinstance(self.error, SandboxdError):
            retried = not isinstance(self.error, PermanentError)
            return PassOutcome(Result.RETRY if retried else Result.FAILED, error=self.error)
        return PassOutcome(Result.DONE)

    def gaps(self) -> list[float]:
        """From the end of each pass to the start of the next: the delay the queue waited."""
        return [start - end for end, start in zip(self.ended, self.at[1:], strict=False)]


BACKOFF = Backoff(1.0, 60.0)
HOUR = 3600.0  # the heartbeat's period in these tests: no deliveries to keep alive, fewer wake-ups


def most_passes(window_s: float, *, backoff: Backoff = BACKOFF, failures: int = 0) -> int:
    """The most passes a key already failed ``failures`` times can run in ``window_s`` (its first one at once):
    every delay at its shortest, half the capped exponential."""
    passes, spent = 1, 0.0
    while (spent := spent + backoff.ceiling(failures + passes) / 2) <= window_s:
        passes += 1
    return passes


def assert_backs_off(gaps: list[float], *, after: int = 0) -> None:
    """Each gap lies in the backoff's window for the failures before it (equal jitter: upper half)."""
    for failures, gap in enumerate(gaps, start=after + 1):
        ceiling = BACKOFF.ceiling(failures)
        assert ceiling / 2 <= gap <= ceiling, f"retry after {failures} failures waited {gap:.2f}s: {gaps}"


async def test_kick_driven_retries_back_off_to_the_cap() -> None:
    """F3: a failing sandbox with no delivery (a resync kick after a restart) retried every ~1 s forever: its
    failure count was dropped with the idle key, so every retry waited the first-failure delay."""
    clock = ManualClock()
    failing = Failing(clock)
    queue = KeyedQueue(handler=failing, disposition=disposition(), concurrency=2, clock=clock, heartbeat_s=HOUR)
    async with running(queue, clock):
        queue.submit("a")  # the start-up resync
        await clock.advance(600)
        assert queue.failing("a") == len(failing.at)
    assert len(failing.at) <= most_passes(600)  # 25; a delay stuck at the first one gives 600 or more
    assert_backs_off(failing.gaps())
    assert max(failing.gaps()) >= BACKOFF.cap_s / 2  # it reached the cap


async def test_kicks_while_backing_off_join_the_scheduled_retry() -> None:
    """A resync or a watch kick while a failing sandbox waits for its retry runs no extra pass, and a kick that
    came during the failing pass does not run it again at once."""
    clock = ManualClock()
    failing = Failing(clock)
    queue = KeyedQueue(handler=failing, disposition=disposition(), concurrency=2, clock=clock, heartbeat_s=HOUR)
    async with running(queue, clock):
        queue.submit("a")
        await clock.advance(10)  # failures 1, 2, 3 (and maybe 4): delays of 0.5-1, 1-2, 2-4 s
        runs = len(failing.at)
        for _ in range(5):
            queue.submit("a")
            await clock.advance(0)
        assert len(failing.at) == runs  # joined the scheduled retry
        failing.blocked = anyio.Event()
        await clock.advance(BACKOFF.ceiling(runs))  # the scheduled retry starts, and blocks
        assert len(failing.at) == runs + 1
        queue.submit("a")  # arrives during the pass
        failing.blocked.set()
        failing.blocked = None
        await clock.advance(0)
        assert len(failing.at) == runs + 1  # absorbed by the retry it failed into
        await clock.advance(120)
    assert_backs_off(failing.gaps())


async def test_a_new_event_runs_at_once_and_its_deliveries_carry_the_count_on() -> None:
    """An event does not wait for the scheduled retry (it may be the fix); a redelivered event's count (from
    before a restart, or from another replica) becomes the sandbox's, so later kicks go on from it."""
    clock = ManualClock()
    failing = Failing(clock)
    many = Disposition(dead_letters=Letters(), backoff=BACKOFF, max_deliver=50, rng=random.Random(1))
    queue = KeyedQueue(handler=failing, disposition=many, concurrency=1, clock=clock, heartbeat_s=HOUR)
    redelivered = FakeDelivery("sandbox.update.a", num_delivered=4)
    async with running(queue, clock):
        queue.submit("a")  # fails once: a retry is scheduled 0.5-1 s on
        await clock.advance(0)
        queue.submit("a", redelivered)
        await clock.advance(0)
        assert len(failing.at) == 2 and queue.failing("a") == 4
        [(kind, delay)] = redelivered.settled  # nak'd after the delivery's own count, 4
        assert kind == "nak" and delay is not None and 4.0 <= delay <= 8.0
        await clock.advance(60)
        assert len(failing.at) == 2  # the redelivery brings the next pass: no retry kick besides it
        queue.submit("a")  # the periodic resync
        await clock.advance(0)
        await clock.advance(120)
    assert queue.failing("a") >= 6
    assert_backs_off(failing.gaps()[2:], after=4)  # the kick retries go on from 5 failures, not from 1


async def test_a_success_ends_the_run_and_the_next_failure_starts_from_the_base() -> None:
    clock = ManualClock()
    failing = Failing(clock)
    queue = KeyedQueue(handler=failing, disposition=disposition(), concurrency=1, clock=clock, heartbeat_s=HOUR)
    async with running(queue, clock):
        queue.submit("a")
        await clock.advance(30)
        failing.error = KeyError("unused: the pass succeeds")  # not a SandboxdError: DONE
        await clock.advance(60)
        assert queue.failing("a") == 0
        recovered = len(failing.at)
        failing.error = ApplyUnavailable("down again")
        queue.submit("a")
        await clock.advance(0)
        await clock.advance(BACKOFF.ceiling(1))
        assert len(failing.at) == recovered + 2


async def test_a_sandbox_whose_events_ran_out_goes_on_being_retried_by_the_queue() -> None:
    """Its last delivery is dead-lettered, but the desired state still says what to apply."""
    clock = ManualClock()
    failing = Failing(clock)
    letters = Letters()
    d = Disposition(dead_letters=letters, backoff=BACKOFF, max_deliver=5, rng=random.Random(1))
    queue = KeyedQueue(handler=failing, disposition=d, concurrency=1, clock=clock, heartbeat_s=HOUR)
    last = FakeDelivery("sandbox.update.a", num_delivered=4)
    async with running(queue, clock):
        queue.submit("a", last)
        await clock.advance(0)
        assert last.settled == [("term", None)] and len(letters.sent) == 1
        await clock.advance(BACKOFF.ceiling(4))
        assert len(failing.at) == 2


async def test_a_failing_sandbox_is_logged_once_per_run_and_once_when_it_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The WARNING when a sandbox starts failing (and when the error changes), a traceback only once per run of
    a bug, one INFO line when it recovers; each sandbox its own run."""
    clock = ManualClock()
    failing = Failing(clock)
    queue = KeyedQueue(handler=failing, disposition=disposition(), concurrency=2, clock=clock, heartbeat_s=HOUR)
    caplog.set_level(logging.INFO, logger="sandboxd.runtime")
    async with running(queue, clock):
        queue.submit("a")
        await clock.advance(100)
        failing.error, failing.raises = KeyError("a corrupt record"), True
        await clock.advance(600)
        bug_passes = len(failing.at)
        failing.raises = False  # a KeyError returned by nobody: the pass succeeds
        await clock.advance(120)
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines == [
        ("WARNING", "reconcile of a failed: notadir: Not a directory; retrying", False),
        ("ERROR", "reconcile of a raised KeyError", True),
        ("INFO", f"reconcile of a recovered after {bug_passes} failed attempts", False),
    ]
    assert bug_passes > 10  # many failures, three lines


async def test_a_permanent_failure_is_not_retried_and_said_once_however_often_it_is_resynced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    failing = Failing(clock)
    failing.error = ApplyRejected("403: forbidden")
    queue = KeyedQueue(handler=failing, disposition=disposition(), concurrency=1, clock=clock, heartbeat_s=HOUR)
    caplog.set_level(logging.INFO, logger="sandboxd.runtime")
    async with running(queue, clock):
        for _ in range(3):  # resyncs
            queue.submit("a")
            await clock.advance(600)
    assert len(failing.at) == 3
    assert [r.getMessage() for r in caplog.records] == ["reconcile of a failed: 403: forbidden; not retried"]
