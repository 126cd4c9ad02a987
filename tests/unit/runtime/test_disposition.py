"""Where an event's fate is decided (``runtime.disposition``): the decision table, then carrying it out."""

from __future__ import annotations

import random

import pytest

from sandboxd.errors import (
    ApplyUnavailable,
    BrokerUnavailable,
    InvalidEvent,
    PermanentError,
    RetryableError,
    UnexpectedError,
)
from sandboxd.runtime.disposition import (
    DONE,
    SHUTTING_DOWN,
    STALE,
    Action,
    Disposition,
    Outcome,
    decide,
)
from sandboxd.runtime.retry import Backoff
from unit.runtime.fakes import FakeDelivery, Letters

MAX = 5  # the consumer's max_deliver in these tests: deliveries 1..5, the runtime gives up at 4

TRANSIENT = Outcome.failed(ApplyUnavailable("apiserver: HTTP 503"), where="reconcile")
PERMANENT = Outcome.failed(InvalidEvent("spec.sessions: must be at least 1"), where="intake")
BUG = Outcome.failed(RuntimeError("secret=hunter2"), where="intake")


@pytest.mark.parametrize(
    ("outcome", "delivered", "action"),
    [
        (DONE, 1, Action.ACK),
        (DONE, MAX, Action.ACK),
        (STALE, 1, Action.ACK),
        (STALE, MAX, Action.ACK),
        (PERMANENT, 1, Action.DEAD_LETTER),
        (PERMANENT, MAX, Action.DEAD_LETTER),
        (TRANSIENT, 1, Action.NAK),
        (TRANSIENT, MAX - 2, Action.NAK),
        (TRANSIENT, MAX - 1, Action.DEAD_LETTER),  # the last one is the spare for a dead letter that fails
        (TRANSIENT, MAX, Action.DEAD_LETTER),
        (BUG, 1, Action.NAK),
        (BUG, MAX - 1, Action.DEAD_LETTER),
        (SHUTTING_DOWN, 1, Action.HAND_BACK),
        (SHUTTING_DOWN, MAX, Action.HAND_BACK),
    ],
)
def test_the_decision_table(outcome: Outcome, delivered: int, action: Action) -> None:
    decision = decide(outcome, delivered=delivered, max_deliver=MAX, delay=7.0)
    assert decision.action is action
    assert (decision.delay == 7.0) is (action is Action.NAK)
    if action is Action.DEAD_LETTER and not isinstance(outcome.error, PermanentError):
        assert decision.note == f"gave up after {delivered} deliveries"


def test_unlimited_deliveries_never_give_up() -> None:
    assert decide(TRANSIENT, delivered=10_000, max_deliver=-1, delay=1.0).action is Action.NAK


def test_an_exception_outside_the_tree_is_retried_under_its_class_name_only() -> None:
    assert BUG.retried
    assert isinstance(BUG.error, UnexpectedError) and isinstance(BUG.error, RetryableError)
    assert BUG.error.message == "unexpected RuntimeError in intake"
    assert "hunter2" not in BUG.error.message
    assert isinstance(BUG.error.__cause__, RuntimeError)
    assert not PERMANENT.retried and not DONE.retried and not SHUTTING_DOWN.retried


def disposition(letters: Letters) -> Disposition:
    return Disposition(dead_letters=letters, backoff=Backoff(1.0, 60.0), max_deliver=MAX, rng=random.Random(7))


@pytest.mark.anyio
async def test_settle_carries_out_each_decision_once() -> None:
    letters = Letters()
    d = disposition(letters)
    done, stale, bad, back = (FakeDelivery("sandbox.create.a", stream_sequence=n) for n in (1, 2, 3, 4))
    await d.settle([done], DONE)
    await d.settle([stale], STALE)
    await d.settle([bad], PERMANENT)
    await d.settle([back], SHUTTING_DOWN)
    assert done.settled == [("ack", None)] and stale.settled == [("ack", None)]
    assert bad.settled == [("term", None)]
    assert letters.sent == [(3, "InvalidEvent", "spec.sessions: must be at least 1")]
    assert back.settled == [("nak", None)]
    assert d.counts["ack"] == 2 and d.counts["term"] == 1 and d.counts["dead_letter"] == 1


@pytest.mark.anyio
async def test_a_retry_waits_longer_the_more_often_it_failed_and_never_less_than_the_source_asks() -> None:
    d = disposition(Letters())
    first, later = FakeDelivery("sandbox.create.a"), FakeDelivery("sandbox.create.a", num_delivered=3)
    settled = await d.settle([first], TRANSIENT)
    assert first.settled == [("nak", settled.delay)] and settled.delay is not None and 0.5 <= settled.delay <= 1.0
    again = await d.settle([later], TRANSIENT)
    assert again.delay is not None and 2.0 <= again.delay <= 4.0  # the delivery's own count: 3 failures
    kick = await d.settle([], Outcome.failed(ApplyUnavailable("busy"), where="reconcile", failures=4))
    assert kick.delay is not None and 4.0 <= kick.delay <= 8.0  # no delivery: the caller's count
    hinted = await d.settle([], Outcome.failed(ApplyUnavailable("busy", delay=30.0), where="reconcile"))
    assert hinted.delay == 30.0  # a Retry-After is a floor


@pytest.mark.anyio
async def test_an_event_is_terminated_only_once_its_dead_letter_is_durable() -> None:
    letters = Letters(fail=BrokerUnavailable("publish to sandbox.dlq.x: NATS did not answer in time"))
    d = disposition(letters)
    poison = FakeDelivery("sandbox.create.a", num_delivered=1)
    await d.settle([poison], PERMANENT)
    [(kind, delay)] = poison.settled
    assert kind == "nak" and delay is not None and delay > 0  # redelivered: the dead letter is tried again
    assert d.counts["dead_letter_failed"] == 1 and d.counts["term"] == 0
    letters.fail = None
    again = FakeDelivery("sandbox.create.a", num_delivered=2)
    await d.settle([again], PERMANENT)
    assert again.settled == [("term", None)] and len(letters.sent) == 1


@pytest.mark.anyio
async def test_a_settlement_that_fails_is_logged_not_raised() -> None:
    class Gone(FakeDelivery):
        async def ack(self) -> None:
            raise ConnectionError("closed")

    d = disposition(Letters())
    result = await d.settle([Gone("sandbox.create.a")], DONE)
    assert [decision.action for decision in result.decisions] == [Action.ACK]
    assert d.counts["ack"] == 0
