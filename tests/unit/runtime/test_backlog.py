"""When the keyed queue holds sandboxes back so a burst's later events join one pass (``runtime.queueing.Backlog``)."""

from __future__ import annotations

import pytest

from sandboxd.runtime.clock import ManualClock
from sandboxd.runtime.queueing import Backlog


def test_normal_traffic_is_never_held() -> None:
    backlog = Backlog(threshold=64)
    for _ in range(100):
        backlog.fetched(3, pending=0)
        assert not backlog.behind
        backlog.admitted()
        assert not backlog.behind


def test_a_big_batch_or_a_deep_stream_is_a_burst() -> None:
    backlog = Backlog(threshold=64, settle_s=60)
    backlog.fetched(256, pending=0)  # one fetch brought a burst
    assert backlog.behind
    other = Backlog(threshold=64, settle_s=60)
    other.fetched(10, pending=500)  # intake is far behind the stream
    assert other.behind


@pytest.mark.anyio
async def test_a_burst_settles_a_moment_after_its_last_batch_is_admitted() -> None:
    clock = ManualClock()
    backlog = Backlog(threshold=64, settle_s=0.05, clock=clock)
    backlog.fetched(512, pending=0)
    backlog.admitted()
    assert backlog.behind  # the publishers may only be between two windows
    backlog.fetched(5, pending=0)
    assert backlog.behind
    await clock.advance(0.049)
    assert backlog.behind
    await clock.advance(0.001)
    assert not backlog.behind


def test_a_full_queue_holds_nothing() -> None:
    backlog = Backlog(threshold=64)
    backlog.fetched(512, pending=5000)
    backlog.room = False  # the consume loop cannot fetch the later events: waiting for them would stall
    assert not backlog.behind
