"""A small bounded LRU map, for the memories that must not grow with the number of sandboxes: the record a KV
store last wrote or read per key (``adapters.jetstream.stores``, which says why a stale one is harmless) and the
reconciler's renders per incarnation and generation.

Generic, with no import from the package: it sits below every layer, so the use case and the adapters both
use it without one reaching into the other.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most ``capacity`` entries; ``put`` evicts the least recently used."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        """The value, without making it the most recently used."""
        return self._data.get(key)

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self._capacity:
            self._data.popitem(last=False)

    def drop(self, key: K) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)
