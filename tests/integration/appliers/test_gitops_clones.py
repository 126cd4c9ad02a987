"""Working clones a killed GitOps applier leaves behind are removed when the next one opens its clone; a live
clone of another process (a second replica sharing ``$TMPDIR``) is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxd.adapters.gitops import GitOpsApplier
from sandboxd.adapters.gitops.repository import CLONE_PREFIX, OWNER_LOCK, UNCLAIMED_STALE_S
from support.sandboxes import sample_sandbox

pytestmark = [pytest.mark.git, pytest.mark.anyio]

AUTHOR = "Sandbox Bot <bot@sandboxd.test>"
#: A process that opens a working clone in the cache folder and lives on (as a replica does) until killed.
HOLDER = """
import sys, anyio
from pathlib import Path
from sandboxd.adapters.gitops import GitOpsApplier
from support.sandboxes import sample_sandbox

async def main():
    applier = GitOpsApplier(repo=sys.argv[1], author="h <h@x>", cache_dir=Path(sys.argv[2]))
    await applier.apply(sample_sandbox(), generation=1)
    print(applier._clone.path, flush=True)
    await anyio.sleep(3600)

anyio.run(main)
"""


def clones(cache: Path) -> set[Path]:
    return {entry for entry in cache.iterdir() if entry.name.startswith(CLONE_PREFIX)} if cache.exists() else set()


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.wait(10)


def hold_a_clone(bare: Path, cache: Path, started: list[subprocess.Popen[str]]) -> tuple[subprocess.Popen[str], Path]:
    tests = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent / "service")])}
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(bare), str(cache)], stdout=subprocess.PIPE, text=True, env=env
    )
    started.append(process)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    assert line, f"the holder exited with {process.wait(10)}"
    return process, Path(line)


async def test_clones_of_killed_appliers_go_and_live_ones_stay(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    bare, cache = tmp_path / "gitops.git", tmp_path / "cache"
    _, live = hold_a_clone(bare, cache, holders)  # another replica on the same host, running throughout
    doomed = [hold_a_clone(bare, cache, holders) for _ in range(3)]
    for process, _ in doomed:  # three crashes, each leaving a full working clone behind
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    killed = [clone for _, clone in doomed]
    assert clones(cache) == {live, *killed}  # none of them removed another's live clone as it opened its own
    assert all(clone.is_dir() and (clone / ".git" / OWNER_LOCK).exists() for clone in [*killed, live])
    # Left by a version without owner locks (or a process killed before it claimed its clone): an old one
    # goes, a fresh one may be a clone being made right now and stays. Other names are never ours to remove.
    old_unclaimed, fresh_unclaimed = cache / f"{CLONE_PREFIX}old", cache / f"{CLONE_PREFIX}fresh"
    for folder in (old_unclaimed, fresh_unclaimed, cache / "not-a-clone"):
        folder.mkdir()
    long_ago = time.time() - UNCLAIMED_STALE_S - 60
    os.utime(old_unclaimed, (long_ago, long_ago))

    applier = GitOpsApplier(repo=str(bare), author=AUTHOR, cache_dir=cache)
    try:
        await applier.apply(sample_sandbox(), generation=2)
        assert applier._clone is not None
        mine = applier._clone.path
        assert clones(cache) == {live, mine, fresh_unclaimed}
        assert (cache / "not-a-clone").is_dir()
        # The sweep ran as the clone was opened; the clone's own lock survives every sync (git never sees it).
        await applier.apply(sample_sandbox(image="ghcr.io/example/pty-server:v2"), generation=3)
        assert (mine / ".git" / OWNER_LOCK).exists()
    finally:
        await applier.aclose()
    assert clones(cache) == {live, fresh_unclaimed}  # a clean stop removes its own clone, and only its own


async def test_a_clone_discarded_or_closed_releases_its_lock(tmp_path: Path) -> None:
    bare, cache = tmp_path / "gitops.git", tmp_path / "cache"
    first = GitOpsApplier(repo=str(bare), author=AUTHOR, cache_dir=cache)
    await first.apply(sample_sandbox(), generation=1)
    assert first._clone is not None
    kept = first._clone.path
    first._clone = None  # dropped without a clean stop (the folder stays, as after a crash of this component)
    second = GitOpsApplier(repo=str(bare), author=AUTHOR, cache_dir=cache)
    try:
        await second.apply(sample_sandbox(), generation=2)
        assert second._clone is not None
        assert clones(cache) == {second._clone.path} and not kept.exists()
    finally:
        await second.aclose()
    assert clones(cache) == set()
