"""``ReplayEnd``: when a KV watch's replay of the current values is over, whatever order nats-py's marker comes in.

The race it exists for cannot be forced on a real server (it needs the server's send queue to lag behind its
consumer-info answer), so these feed it the orders a watcher yields; tests/integration/spine/test_kv_store.py
runs it on a real bucket."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from nats.js.kv import KeyValue

from sandboxd.adapters.jetstream.watching import ReplayEnd

pytestmark = pytest.mark.anyio


class Subscription:
    def __init__(self, delivered: int) -> None:
        self.delivered, self.asked = delivered, 0

    async def consumer_info(self) -> Any:
        self.asked += 1
        return SimpleNamespace(delivered=SimpleNamespace(consumer_seq=self.delivered))


def watcher(delivered: int) -> Any:
    return SimpleNamespace(_sub=Subscription(delivered))


def entry(key: str, delta: int) -> KeyValue.Entry:
    return KeyValue.Entry(bucket="b", key=key, value=b"{}", revision=1, delta=delta, created=None, operation=None)


async def test_the_marker_ahead_of_the_values_it_should_follow_is_not_the_end() -> None:
    """Seen under load: nats-py's marker first (the consumer had queued both values, none had arrived)."""
    w = watcher(delivered=2)
    replay = ReplayEnd(w)
    assert [await replay.ends(item) for item in (None, entry("a", 1), entry("b", 0), None)] == [
        False,
        False,
        True,
        False,
    ]
    assert replay.over


async def test_the_usual_order_ends_at_the_last_value_without_asking_the_server() -> None:
    w = watcher(delivered=2)
    replay = ReplayEnd(w)
    assert [await replay.ends(item) for item in (entry("a", 1), entry("b", 0), None)] == [False, True, False]
    assert w._sub.asked == 0


async def test_an_empty_bucket_ends_at_the_marker() -> None:
    replay = ReplayEnd(watcher(delivered=0))
    assert await replay.ends(None) and replay.over


async def test_values_counted_as_delivered_end_the_replay_even_without_a_last_delta_of_0() -> None:
    """A value that changed during the replay can leave no entry with delta 0: the count the consumer gave ends it."""
    replay = ReplayEnd(watcher(delivered=2))
    assert [await replay.ends(item) for item in (None, entry("a", 3), entry("b", 2))] == [False, False, True]
