"""The consume loop (``runtime.consumer.Consumer``) on a ``ManualClock``: fetch, admit, hand to the queue.

What a user relies on: events reach the keyed queue in stream order per sandbox, stale and rejected ones are
settled at once, the loop stops fetching while the queue holds its limit and goes on when it drains, and a
stop lets the fetch in progress finish and hands its events back.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import anyio
import pytest

from sandboxd.errors import InvalidEvent, SandboxdError
from sandboxd.models.bounds import QUOTE_LIMIT, quote
from sandboxd.naming import SANDBOX_ID_RULE
from sandboxd.reconcile.intake import Admission, Verdict
from sandboxd.reconcile.ports import Delivery
from sandboxd.reconcile.reconciler import Outcome as PassOutcome
from sandboxd.reconcile.reconciler import Result
from sandboxd.runtime.clock import ManualClock
from sandboxd.runtime.consumer import Consumer
from sandboxd.runtime.disposition import Disposition
from sandboxd.runtime.queueing import Backlog, KeyedQueue
from sandboxd.runtime.retry import Backoff
from unit.runtime.fakes import FakeDelivery, Letters

pytestmark = pytest.mark.anyio


class Stream:
    """Hands out queued batches; an empty fetch waits its timeout on the clock, as a real pull fetch does."""

    def __init__(self, clock: ManualClock, *batches: list[FakeDelivery]) -> None:
        self.clock, self.batches, self.fetches = clock, list(batches), 0

    async def fetch(self, batch: int, timeout: float) -> list[FakeDelivery]:
        self.fetches += 1
        if self.batches:
            return self.batches.pop(0)[:batch]
        await self.clock.sleep(timeout)
        return []


class Intake:
    """Accepts every event except those whose body is in ``stale`` or ``rejected``."""

    def __init__(self) -> None:
        self.admitted: list[tuple[str, list[int]]] = []

    async def admit(self, sandbox_id: str, events: Sequence[Delivery]) -> list[Admission]:
        self.admitted.append((sandbox_id, [e.stream_sequence for e in events]))
        verdicts = {b"stale": Verdict.STALE, b"bad": Verdict.REJECTED}
        return [
            Admission(
                verdicts.get(e.data, Verdict.ACCEPTED),
                sandbox_id,
                error=InvalidEvent("no") if e.data == b"bad" else None,
            )
            for e in sorted(events, key=lambda d: d.stream_sequence)
        ]

    async def gave_up(
        self, sandbox_id: str, events: Sequence[Delivery], error: SandboxdError, *, note: str = ""
    ) -> None:
        raise AssertionError("this intake never fails")


def parts(clock: ManualClock, handler: object = None) -> tuple[Disposition, KeyedQueue]:
    d = Disposition(dead_letters=Letters(), backoff=Backoff(1.0, 60.0), max_deliver=5, rng=random.Random(1))

    async def done(key: str, after_intake: bool) -> PassOutcome:
        return PassOutcome(Result.DONE)

    return d, KeyedQueue(handler=handler or done, disposition=d, concurrency=2, clock=clock)  # type: ignore[arg-type]


async def test_a_batch_is_admitted_per_sandbox_in_stream_order_and_stale_or_rejected_events_settle_at_once() -> None:
    clock = ManualClock()
    d, queue = parts(clock)
    a1, b1, a2 = (
        FakeDelivery("sandbox.create.a", stream_sequence=1),
        FakeDelivery("sandbox.create.b", stream_sequence=2),
        FakeDelivery("sandbox.update.a", stream_sequence=3),
    )
    stale = FakeDelivery("sandbox.update.b", b"stale", stream_sequence=4)
    bad = FakeDelivery("sandbox.update.c", b"bad", stream_sequence=5)
    nameless = FakeDelivery("sandbox.update.NOT A NAME", stream_sequence=6)
    intake = Intake()
    consumer = Consumer(source=Stream(clock), intake=intake, queue=queue, disposition=d, clock=clock)
    await consumer.admit([a2, b1, a1, stale, bad, nameless])
    assert sorted(intake.admitted) == [("a", [3, 1]), ("b", [2, 4]), ("c", [5])]
    assert stale.settled == [("ack", None)]
    assert bad.settled == [("term", None)] and nameless.settled == [("term", None)]
    assert queue.held == 3 and a1.settled == a2.settled == b1.settled == []


async def test_a_long_subject_is_quoted_in_its_rejection_at_most_200_characters() -> None:
    clock = ManualClock()
    letters = Letters()
    d = Disposition(dead_letters=letters, backoff=Backoff(1.0, 60.0), max_deliver=5, rng=random.Random(1))
    _, queue = parts(clock)
    consumer = Consumer(source=Stream(clock), intake=Intake(), queue=queue, disposition=d, clock=clock)
    long = FakeDelivery("sandbox.create." + "x" * 4000 + "!", stream_sequence=7)
    await consumer.admit([long])
    [(sequence, _, message)] = letters.sent
    assert sequence == 7 and long.settled == [("term", None)]
    assert f"subject {quote(long.subject)} does not name a valid sandbox id ({SANDBOX_ID_RULE})" in message
    assert len(quote(long.subject)) == QUOTE_LIMIT + 3 and len(message) < 500


async def test_the_loop_stops_fetching_while_the_queue_holds_its_limit() -> None:
    clock = ManualClock()
    release = anyio.Event()

    async def slow(key: str, after_intake: bool) -> PassOutcome:
        await release.wait()
        return PassOutcome(Result.DONE)

    d, queue = parts(clock, slow)
    full = [FakeDelivery(f"sandbox.create.s{n}", stream_sequence=n) for n in range(1, 5)]
    later = FakeDelivery("sandbox.create.late", stream_sequence=9)
    stream = Stream(clock, full, [later])
    consumer = Consumer(source=stream, intake=Intake(), queue=queue, disposition=d, batch=4, max_held=4, clock=clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run)
        tg.start_soon(consumer.run)
        await clock.advance(5.0)
        assert stream.fetches == 1 and queue.held == 4  # no room: the loop waits instead of fetching
        release.set()
        await clock.advance(0.01)
        assert later.settled == [("ack", None)]
        assert all(d.settled == [("ack", None)] for d in full)
        consumer.stop()
        await clock.advance(1.0)
        await queue.close(0)


async def test_a_burst_is_reported_to_the_backlog_and_settles_after_admission() -> None:
    clock = ManualClock()
    d, queue = parts(clock)
    backlog = Backlog(threshold=4, settle_s=0.25, clock=clock)
    burst = [FakeDelivery(f"sandbox.create.s{n}", stream_sequence=n, num_pending=100) for n in range(1, 9)]
    stream = Stream(clock, burst)
    consumer = Consumer(
        source=stream, intake=Intake(), queue=queue, disposition=d, batch=8, backlog=backlog, clock=clock
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await clock.advance(0)
        assert backlog.behind  # the last fetch said 100 more wait in the stream
        await clock.advance(1.0)  # the next fetch came back empty: the stream is drained
        assert not backlog.behind
        consumer.stop()
        await clock.advance(1.0)
    assert queue.held == 8


async def test_events_fetched_while_stopping_are_handed_back() -> None:
    clock = ManualClock()
    d, queue = parts(clock)
    late = FakeDelivery("sandbox.create.a")
    stops: list[Consumer] = []

    class StoppingStream(Stream):
        async def fetch(self, batch: int, timeout: float) -> list[FakeDelivery]:
            stops[0].stop()  # stop() arrives while this fetch is in flight
            return [late]

    stops.append(Consumer(source=StoppingStream(clock), intake=Intake(), queue=queue, disposition=d, clock=clock))
    with anyio.fail_after(5):
        await stops[0].run()
    assert late.settled == [("nak", None)]
