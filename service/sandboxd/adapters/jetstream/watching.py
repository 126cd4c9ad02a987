"""When a KV watch's replay of the current values is over: the one rule every watcher here uses.

nats-py marks the end of a watch's replay with ``None``, and sends it at once when the consumer it just created
reports nothing pending and nothing has reached the subscription yet. On a busy server the replay can still be
on its way then (the consumer counts values as delivered when it queues them, before they are on the wire), so
the marker comes first and the values after it: a listing that stops at the marker sees nothing, or part. Seen
on a loaded CI machine (``sandboxctl status`` listed no sandbox although one was there).

``ReplayEnd`` decides it again from what really arrived: the replay is over at the value whose ``delta`` (what
the consumer still had to deliver after it) is 0, or, when nats-py's marker comes first, once as many values
have arrived as its consumer had delivered when asked. Feed it every item the watcher yields, in order.
"""

from __future__ import annotations

from nats.js.kv import KeyValue


class ReplayEnd:
    """Feed it each item a ``KeyWatcher`` yields; ``ends(item)`` is true exactly once, for the item that ends the
    replay (the caller marks the end after handling that item)."""

    def __init__(self, watcher: KeyValue.KeyWatcher) -> None:
        self._watcher = watcher
        self._taken = 0
        self._expected: int | None = None
        self.over = False

    async def ends(self, item: KeyValue.Entry | None) -> bool:
        if self.over:
            return False
        if item is None:  # nats-py's marker: true only if nothing it counted as delivered is still on its way
            info = await self._watcher._sub.consumer_info()  # type: ignore[union-attr]
            self._expected = int(info.delivered.consumer_seq or 0)
            self.over = self._taken >= self._expected
        else:
            self._taken += 1
            self.over = item.delta == 0 or (self._expected is not None and self._taken >= self._expected)
        return self.over
