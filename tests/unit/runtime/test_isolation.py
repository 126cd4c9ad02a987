"""One event's failure is that event's fate, never the process's: intake, a pass or a fetch that raises."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import anyio
import pytest

from sandboxd.errors import BrokerUnavailable, SandboxdError
from sandboxd.reconcile.intake import Admission, Verdict
from sandboxd.reconcile.ports import Delivery
from sandboxd.reconcile.reconciler import Outcome as PassOutcome
from sandboxd.reconcile.reconciler import Result
from sandboxd.runtime.consumer import Consumer
from sandboxd.runtime.disposition import Disposition
from sandboxd.runtime.loops import LoopGuard
from sandboxd.runtime.queueing import KeyedQueue
from sandboxd.runtime.retry import Backoff
from unit.runtime.fakes import FakeDelivery, Letters

pytestmark = pytest.mark.anyio

MAX = 5
POISON = b'{"poison": true}'


class PoisonedIntake:
    """Accepts every event, except that one with the poison body makes the whole admission raise."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.given_up: list[tuple[str, list[int], str, str]] = []

    async def admit(self, sandbox_id: str, events: Sequence[Delivery]) -> list[Admission]:
        self.calls.append([e.stream_sequence for e in events])
        if any(e.data == POISON for e in events):
            raise RuntimeError("intake bug; value=hunter2")
        return [Admission(Verdict.ACCEPTED, sandbox_id) for _ in events]

    async def gave_up(
        self, sandbox_id: str, events: Sequence[Delivery], error: SandboxdError, *, note: str = ""
    ) -> None:
        self.given_up.append((sandbox_id, [e.stream_sequence for e in events], error.reason, note))


def disposition(letters: Letters) -> Disposition:
    return Disposition(dead_letters=letters, backoff=Backoff(1.0, 60.0), max_deliver=MAX, rng=random.Random(1))


def queue_for(d: Disposition, handler: object = None) -> KeyedQueue:
    async def done(key: str, after_intake: bool) -> PassOutcome:
        return PassOutcome(Result.DONE)

    return KeyedQueue(handler=handler or done, disposition=d, concurrency=2)  # type: ignore[arg-type]


class NoSource:
    async def fetch(self, batch: int, timeout: float) -> list[FakeDelivery]:
        return []


async def test_an_intake_that_raises_naks_only_the_event_that_causes_it() -> None:
    letters = Letters()
    d = disposition(letters)
    queue, intake = queue_for(d), PoisonedIntake()
    consumer = Consumer(source=NoSource(), intake=intake, queue=queue, disposition=d)
    good1 = FakeDelivery("sandbox.create.a", stream_sequence=1)
    poison = FakeDelivery("sandbox.update.a", POISON, stream_sequence=2)
    good2 = FakeDelivery("sandbox.update.a", stream_sequence=3)
    other = FakeDelivery("sandbox.create.b", stream_sequence=4)
    await consumer.admit([good1, poison, good2, other])
    [(kind, delay)] = poison.settled
    assert kind == "nak" and delay is not None and delay > 0
    assert good1.settled == good2.settled == other.settled == []  # accepted: held for their pass
    assert queue.held == 3
    assert [1, 2, 3] in intake.calls and [1] in intake.calls and [3] in intake.calls  # retried one at a time
    assert letters.sent == []
    assert intake.given_up == []  # retried: nothing to say in the status yet


async def test_an_intake_that_keeps_raising_is_dead_lettered_when_its_deliveries_run_out() -> None:
    letters = Letters()
    d = disposition(letters)
    intake = PoisonedIntake()
    consumer = Consumer(source=NoSource(), intake=intake, queue=queue_for(d), disposition=d)
    last = FakeDelivery("sandbox.update.a", POISON, stream_sequence=9, num_delivered=MAX - 1)
    await consumer.admit([last])
    assert last.settled == [("term", None)]
    [(sequence, reason, message)] = letters.sent
    assert (sequence, reason) == (9, "UnexpectedError")
    assert message == f"unexpected RuntimeError in intake (gave up after {MAX - 1} deliveries)"
    assert "hunter2" not in message
    assert intake.given_up == [("a", [9], "UnexpectedError", f"gave up after {MAX - 1} deliveries")]  # status says why


async def test_a_pass_that_raises_is_retried_and_the_other_sandboxes_go_on() -> None:
    letters = Letters()
    d = disposition(letters)
    seen: list[BaseException] = []

    async def handler(key: str, after_intake: bool) -> PassOutcome:
        if key == "bad":
            raise KeyError("a bug in one sandbox's pass")
        return PassOutcome(Result.DONE)

    queue = KeyedQueue(handler=handler, disposition=d, concurrency=2, on_unexpected=seen.append)
    bad, good = FakeDelivery("sandbox.create.bad"), FakeDelivery("sandbox.create.good")
    last = FakeDelivery("sandbox.update.bad", stream_sequence=2, num_delivered=MAX - 1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(queue.run)
        queue.submit("bad", bad)
        queue.submit("good", good)
        with anyio.fail_after(5):
            while not (bad.settled and good.settled):
                await anyio.sleep(0.01)
        queue.submit("bad", last)
        with anyio.fail_after(5):
            while not last.settled:
                await anyio.sleep(0.01)
        await queue.close(1.0)
    assert good.settled == [("ack", None)]
    [(kind, delay)] = bad.settled
    assert kind == "nak" and delay is not None and delay > 0
    assert last.settled == [("term", None)] and letters.sent[0][1] == "UnexpectedError"
    assert len(seen) == 2 and all(isinstance(e, KeyError) for e in seen)


async def test_the_fetch_loop_outlives_a_fetch_that_raises() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        async def fetch(self, batch: int, timeout: float) -> list[FakeDelivery]:
            self.calls += 1
            if self.calls <= 2:
                raise RuntimeError("nats-py had a bad day")
            if self.calls == 3:
                return [FakeDelivery("sandbox.create.a")]
            await anyio.sleep(0.01)
            return []

    counted: list[tuple[str, str]] = []
    d = disposition(Letters())
    guard = LoopGuard("consume", record=lambda loop, error: counted.append((loop, error)), backoff=Backoff(0.01, 0.01))
    source, queue = Flaky(), queue_for(d)
    consumer = Consumer(source=source, intake=PoisonedIntake(), queue=queue, disposition=d, guard=guard)
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        with anyio.fail_after(5):
            while consumer.fetched < 1:
                await anyio.sleep(0.01)
        consumer.stop()
    assert counted == [("consume", "RuntimeError"), ("consume", "RuntimeError")]
    assert guard.failures == 0 and queue.held == 1


async def test_an_outage_failing_every_intake_is_logged_once_per_run_not_once_per_sandbox(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A leader election fails the intake of every sandbox in the batch: one WARNING says so, one INFO line says
    when intake works again, and every event is retried."""

    class Electing(PoisonedIntake):
        down = True

        async def admit(self, sandbox_id: str, events: Sequence[Delivery]) -> list[Admission]:
            if self.down:
                raise BrokerUnavailable("KV get sandbox-desired: no stream answered (a leader election)")
            return await super().admit(sandbox_id, events)

    d = disposition(Letters())
    intake = Electing()
    consumer = Consumer(source=NoSource(), intake=intake, queue=queue_for(d), disposition=d)
    deliveries = [FakeDelivery(f"sandbox.create.s{n}", stream_sequence=n + 1) for n in range(20)]
    caplog.set_level(logging.INFO, logger="sandboxd.runtime.loops")
    await consumer.admit(deliveries)
    assert all(kind == "nak" for d_ in deliveries for kind, _ in d_.settled)
    intake.down = False
    await consumer.admit([FakeDelivery("sandbox.create.s0", stream_sequence=21)])
    lines = [r.getMessage() for r in caplog.records]
    assert len([line for line in lines if "no stream answered" in line]) == 1, lines
    assert any("recovered after 20 failed attempts" in line for line in lines), lines
