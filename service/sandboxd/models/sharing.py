"""Sharing the equal parts of the records a replica holds for every sandbox (its desired-state view).

A parsed record is a tree of small objects, and each pydantic model in it carries its own ``__dict__`` and its
own set of the field names that were set. Most of a sandbox's spec equals many other sandboxes' (the quota, the
org, the repos, the agents), and every record of one type has one of a handful of field-name sets. Held for
50,000 sandboxes, those copies were most of the service's memory, and the garbage collector walked every one of
them on each full collection. ``Sharing.share(record)`` replaces, in place, each part equal to one it has seen
with that one: sub-models (when hashable) and lists by value and type, the field-name sets by content. What is
unique to a sandbox (its id, owner, event id, timestamps) stays as it is.

Why it is safe: the models are frozen and nothing in the service changes a model's list or field-name set in
place (pydantic's ``model_copy`` copies the set before it adds to it). Two parts are shared only when they are
equal with the same types, field names set included, so nothing a record says or serialises to changes.

What it deliberately does not do: parse, copy or hold records itself. Its table of shared parts is bounded
(``capacity``): when full it starts again, and what was shared stays shared.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from typing import Final, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

#: Distinct shared parts remembered before the table starts again (each costs a dict slot, ~100 bytes).
DEFAULT_CAPACITY: Final = 4096

#: Values that are never shared (nothing inside to share, and mostly unique to a sandbox).
_ATOMIC: Final = frozenset({str, int, bool, float, type(None), datetime})


class Sharing:
    """One table of shared parts (one per view); single-threaded, no I/O."""

    __slots__ = ("_capacity", "_field_sets", "_parts")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._parts: dict[Hashable, object] = {}
        self._field_sets: dict[frozenset[str], set[str]] = {}

    def share(self, record: M) -> M:
        """``record``, its parts replaced in place by equal ones already held elsewhere."""
        self._share_fields(record)
        return record

    def _share_fields(self, model: BaseModel) -> None:
        values = model.__dict__
        for name, value in values.items():
            shared = self._shared(value)
            if shared is not value:
                values[name] = shared
        names = model.__pydantic_fields_set__
        known = self._field_sets.setdefault(frozenset(names), names)
        if known is not names:
            object.__setattr__(model, "__pydantic_fields_set__", known)

    def _shared(self, value: object) -> object:
        kind = type(value)
        if kind in _ATOMIC:
            return value
        if isinstance(value, BaseModel):
            self._share_fields(value)
            return self._part((kind, value, frozenset(value.__pydantic_fields_set__)), value)
        if isinstance(value, list) and kind is list and value:
            value[:] = [self._shared(item) for item in value]
            return self._part((list, tuple(map(type, value)), tuple(value)), value)
        return value

    def _part(self, key: Hashable, value: object) -> object:
        try:
            known = self._parts.get(key)
        except TypeError:  # a model holding a list is not hashable: its parts are shared, not itself
            return value
        if known is not None:
            return known
        if len(self._parts) >= self._capacity:
            self._parts.clear()
        self._parts[key] = value
        return value
