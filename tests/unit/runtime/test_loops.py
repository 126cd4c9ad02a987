"""How loops outlive failures (``runtime.loops``) and how /readyz learns that JetStream stopped answering."""

from __future__ import annotations

import logging

import pytest

from sandboxd.app.http import Health, broker_check
from sandboxd.errors import BrokerRefused, BrokerUnavailable
from sandboxd.runtime.loops import LoopGuard, until_done
from sandboxd.runtime.retry import Backoff

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def guard(clock: Clock, counted: list[tuple[str, str]]) -> LoopGuard:
    return LoopGuard(
        "consume", record=lambda loop, error: counted.append((loop, error)), backoff=Backoff(0.0, 0.0), clock=clock
    )


async def test_a_run_of_failures_is_logged_once_counted_each_time_and_ends_with_a_success(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, counted = Clock(), []
    loop = guard(clock, counted)
    with caplog.at_level(logging.INFO, logger="sandboxd.runtime.loops"):
        for _ in range(3):
            await loop.failed(BrokerUnavailable("fetching deliveries: NATS did not answer in time"))
        await loop.failed(KeyError("secret-value"))
        loop.succeeded()
    assert counted == [("consume", "BrokerUnavailable")] * 3 + [("consume", "KeyError")]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "consume failed: fetching deliveries: NATS did not answer in time; retrying",
        "consume failed: unexpected KeyError; retrying",
        "consume recovered after 4 failed attempts",
    ]
    assert "secret-value" not in " ".join(lines)
    assert loop.failures == 0 and loop.failing_for() == 0.0


async def test_readyz_says_jetstream_once_the_fetch_loop_failed_longer_than_a_moment() -> None:
    clock, counted = Clock(), []
    loop = guard(clock, counted)
    health = Health(connected=True, consumer_bound=True)
    health.checks["jetstream"] = broker_check(loop, grace_s=10.0)
    await loop.failed(BrokerUnavailable("leader election"))
    clock.now += 5
    await loop.failed(BrokerUnavailable("leader election"))
    assert health.ready  # a moment: an election usually ends sooner
    clock.now += 6
    assert health.problems() == {"jetstream": "JetStream has not answered for 11s"}
    loop.succeeded()
    assert health.ready


async def test_a_start_up_step_waits_out_transient_failures_and_raises_permanent_ones() -> None:
    clock, counted = Clock(), []
    attempts = iter([BrokerUnavailable("no meta leader"), BrokerUnavailable("no meta leader"), None])

    async def step() -> str:
        error = next(attempts)
        if error is not None:
            raise error
        return "bound"

    assert await until_done(step, guard(clock, counted)) == "bound"
    assert len(counted) == 2

    async def refused() -> str:
        raise BrokerRefused("binding consumer: JetStream refused it")

    with pytest.raises(BrokerRefused):
        await until_done(refused, guard(clock, counted))
