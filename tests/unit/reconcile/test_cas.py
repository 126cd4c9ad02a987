"""The one compare-and-set loop (``reconcile.cas.write``) on the in-memory store: guesses, races, giving up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sandboxd.adapters.memory import MemoryStore
from sandboxd.errors import OwnershipConflict, StoreConflict
from sandboxd.models.status import Phase, SandboxStatus
from sandboxd.reconcile import cas

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def status(phase: Phase) -> SandboxStatus:
    return SandboxStatus(sandbox_id="sb-1", phase=phase, updated_at=NOW)


class Counting(MemoryStore[SandboxStatus]):
    """Counts reads and writes; ``rival`` is written by 'another replica' just before each of our next puts."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = self.puts = 0
        self.rivals: list[SandboxStatus] = []

    async def get(self, key: str):  # type: ignore[no-untyped-def]
        self.gets += 1
        return await super().get(key)

    async def put(
        self, key: str, value: SandboxStatus, *, revision: int | None, expire_after_s: float | None = None
    ) -> int:
        self.puts += 1
        if self.rivals:
            other = self.replica()
            current = await other.get(key)
            await other.put(key, self.rivals.pop(0), revision=current.revision if current else None)
        return await super().put(key, value, revision=revision, expire_after_s=expire_after_s)


async def test_a_blind_create_of_a_new_key_is_one_write_and_no_read() -> None:
    store = Counting()

    async def decide(previous: SandboxStatus | None) -> SandboxStatus:
        assert previous is None
        return status(Phase.PENDING)

    written = await cas.write(store, "sb-1", decide, start=None, blind=True, attempts=3, gave_up="no")
    assert written.value == status(Phase.PENDING) and written.current is None
    assert (store.gets, store.puts) == (0, 1)


async def test_a_lost_race_reads_the_winner_and_decides_again_from_it() -> None:
    store = Counting()
    store.rivals.append(status(Phase.READY))
    seen: list[Phase | None] = []

    async def decide(previous: SandboxStatus | None) -> SandboxStatus:
        seen.append(previous.phase if previous else None)
        return status(Phase.FAILED)

    written = await cas.write(store, "sb-1", decide, start=None, blind=True, attempts=3, gave_up="no")
    assert seen == [None, Phase.READY]  # the second decision saw the record the other replica wrote
    assert written.current is not None and written.current.value.phase is Phase.READY
    stored = await store.get("sb-1")
    assert stored is not None and stored.value.phase is Phase.FAILED


async def test_a_guess_with_nothing_to_write_reads_the_record_before_it_settles() -> None:
    store = Counting()
    await store.put("sb-1", status(Phase.READY), revision=None)
    seen: list[Phase | None] = []

    async def decide(previous: SandboxStatus | None) -> SandboxStatus | None:
        seen.append(previous.phase if previous else None)
        return None  # nothing to write, whatever the record

    written = await cas.write(store, "sb-1", decide, start=None, blind=True, attempts=3, gave_up="no")
    assert seen == [None, Phase.READY] and written.value is None and written.current is not None
    assert store.puts == 1  # only the set-up's


async def test_without_a_guess_an_unknown_record_is_read_first() -> None:
    store = Counting()
    await store.put("sb-1", status(Phase.READY), revision=None)

    async def decide(previous: SandboxStatus | None) -> SandboxStatus:
        assert previous is not None and previous.phase is Phase.READY
        return status(Phase.DELETED)

    await cas.write(
        store, "sb-1", decide, start=None, blind=False, attempts=1, gave_up="no", expire_after_s=lambda s: 60.0
    )
    assert store.gets == 1 and store.expires_after("sb-1") == 60.0


async def test_it_gives_up_after_its_attempts_and_a_refusal_leaves_the_loop_as_is() -> None:
    store = Counting()
    store.rivals.extend(status(Phase.READY) for _ in range(3))

    async def decide(previous: SandboxStatus | None) -> SandboxStatus:
        return status(Phase.FAILED)

    with pytest.raises(StoreConflict, match="kept changing"):
        await cas.write(store, "sb-1", decide, start=None, blind=True, attempts=3, gave_up="sb-1 kept changing")

    async def refuse(previous: SandboxStatus | None) -> SandboxStatus:
        raise OwnershipConflict("taken")

    with pytest.raises(OwnershipConflict):
        await cas.write(store, "sb-1", refuse, start=None, blind=False, attempts=3, gave_up="no")
