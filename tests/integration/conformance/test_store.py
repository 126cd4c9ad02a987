"""The ``Store`` port's contract (``reconcile.ports.Store``), held by ``MemoryStore`` and ``KvStore`` alike.

The use case relies on exactly these: a create that fails when the key exists, a replace of one exact
revision, revisions that grow across keys, a lost race raised as ``StoreConflict`` (and forgotten from the
writer's memory), a memory (``recent``) kept per process, deletes, and sorted keys.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sandboxd.errors import StoreConflict
from sandboxd.models.status import Phase, SandboxStatus
from support.conformance import Views

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def record(phase: Phase, sandbox_id: str = "sb-1") -> SandboxStatus:
    return SandboxStatus(sandbox_id=sandbox_id, phase=phase, updated_at=NOW)


async def test_a_missing_key_reads_as_none_and_an_empty_bucket_has_no_keys(views: Views) -> None:
    assert await views.mine.get("sb-1") is None
    assert views.mine.recent("sb-1") is None
    assert await views.mine.keys() == []


async def test_create_fails_when_the_key_exists(views: Views) -> None:
    await views.mine.put("sb-1", record(Phase.PENDING), revision=None)
    with pytest.raises(StoreConflict):
        await views.theirs.put("sb-1", record(Phase.READY), revision=None)
    got = await views.theirs.get("sb-1")
    assert got is not None and got.value.phase is Phase.PENDING


async def test_a_replace_needs_the_exact_current_revision(views: Views) -> None:
    first = await views.mine.put("sb-1", record(Phase.PENDING), revision=None)
    second = await views.theirs.put("sb-1", record(Phase.READY), revision=first)
    assert second > first
    with pytest.raises(StoreConflict):
        await views.mine.put("sb-1", record(Phase.FAILED), revision=first)  # lost the race
    assert views.mine.recent("sb-1") is None  # a lost race forgets what this process remembered
    got = await views.mine.get("sb-1")
    assert got is not None and (got.revision, got.value.phase) == (second, Phase.READY)


async def test_revisions_grow_across_keys(views: Views) -> None:
    a = await views.mine.put("sb-a", record(Phase.PENDING, "sb-a"), revision=None)
    b = await views.theirs.put("sb-b", record(Phase.PENDING, "sb-b"), revision=None)
    a2 = await views.mine.put("sb-a", record(Phase.READY, "sb-a"), revision=a)
    assert a < b < a2


async def test_recent_is_what_this_process_wrote_or_read_and_is_never_shared(views: Views) -> None:
    written = await views.mine.put("sb-1", record(Phase.PENDING), revision=None)
    mine = views.mine.recent("sb-1")
    assert mine is not None and mine.revision == written and mine.value.phase is Phase.PENDING
    assert views.theirs.recent("sb-1") is None
    await views.theirs.get("sb-1")
    theirs = views.theirs.recent("sb-1")
    assert theirs is not None and theirs.revision == written


async def test_a_deleted_key_is_gone_and_can_be_created_again(views: Views) -> None:
    await views.mine.put("sb-1", record(Phase.PENDING), revision=None)
    await views.theirs.delete("sb-1")
    assert await views.mine.get("sb-1") is None and views.theirs.recent("sb-1") is None
    assert await views.mine.keys() == []
    again = await views.mine.put("sb-1", record(Phase.READY), revision=None)
    got = await views.theirs.get("sb-1")
    assert got is not None and (got.revision, got.value.phase) == (again, Phase.READY)


async def test_a_delete_of_an_exact_revision_fails_once_the_record_changed(views: Views) -> None:
    first = await views.mine.put("sb-1", record(Phase.PENDING), revision=None)
    second = await views.theirs.put("sb-1", record(Phase.READY), revision=first)
    with pytest.raises(StoreConflict):
        await views.mine.delete("sb-1", revision=first)
    assert await views.mine.get("sb-1") is not None
    await views.mine.delete("sb-1", revision=second)
    assert await views.theirs.get("sb-1") is None


async def test_keys_are_sorted(views: Views) -> None:
    for key in ["sb-c", "sb-a", "sb-b"]:
        await views.mine.put(key, record(Phase.PENDING, key), revision=None)
    assert await views.theirs.keys() == ["sb-a", "sb-b", "sb-c"]
