"""The one compare-and-set loop: read (or guess), decide, write that exact revision, and on a lost race again.

Every record the use case writes (the desired state, an owner claim, a status) goes through ``write``. The
caller supplies ``decide``: given the record as it stands (``None``: there is none), the value to write, or
``None`` for nothing to write. ``decide`` may raise to refuse; whatever it raises leaves the loop as is.

- The first attempt starts from ``start`` (usually ``Store.recent``, what this process last wrote or read: no
  I/O). With no record remembered, ``blind=True`` makes the first attempt a blind create (the common case of
  a new key: one round trip); a create that fails because the key exists, or a guess that had nothing to
  write, reads the record and decides again. Without ``blind`` an unknown record is read first.
- A lost race (``StoreConflict``) forgets the record, reads it and decides again, at most ``attempts`` times;
  then ``StoreConflict(gave_up)`` (retryable: the event is redelivered later).
- ``expire_after_s(value)`` asks the store to remove the written record after that long (``None``: keep it).

Concurrency: nothing is locked; compare-and-set is what keeps replicas honest. ``decide`` runs once per
attempt, so it must not have effects it cannot repeat.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sandboxd.errors import StoreConflict
from sandboxd.reconcile.ports import Store, Versioned

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Written(Generic[T]):
    """How the loop ended: the record it decided from, and what it wrote (``None``: nothing was needed)."""

    current: Versioned[T] | None
    value: T | None


async def write(
    store: Store[T],
    key: str,
    decide: Callable[[T | None], Awaitable[T | None]],
    *,
    start: Versioned[T] | None,
    blind: bool,
    attempts: int,
    gave_up: str,
    expire_after_s: Callable[[T], float | None] | None = None,
) -> Written[T]:
    """Decide from the record under ``key`` and write the decision with compare-and-set (see the module)."""
    current, guessing = start, blind and start is None
    for _ in range(attempts):
        if current is None and not guessing:
            current = await store.get(key)
        value = await decide(current.value if current is not None else None)
        if value is None:
            if guessing:  # nothing to write onto nothing: the guess proves nothing, read the record
                guessing = False
                continue
            return Written(current, None)
        expiry = expire_after_s(value) if expire_after_s is not None else None
        try:
            await store.put(key, value, revision=current.revision if current else None, expire_after_s=expiry)
        except StoreConflict:
            current, guessing = None, False
            continue
        return Written(current, value)
    raise StoreConflict(gave_up)
