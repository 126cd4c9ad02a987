"""Each port's conformance suite runs once per implementation: the in-memory fake and the real adapter.

The ``views`` fixture hands a test two processes' views of one fresh bucket, once per ``Store``
implementation: ``MemoryStore`` (runs anywhere) and ``KvStore`` on a real nats-server (``nats`` marker), on a bucket
with direct gets as ``sandboxd init`` makes it and on one without (``kv-no-direct``: a store reads it nats-py's way).
The ``applier`` fixture is each ``Applier`` that needs no server: ``MemoryApplier`` and ``DirectoryApplier``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest

from sandboxd.adapters.directory import DirectoryApplier
from sandboxd.adapters.jetstream.stores import KvStore
from sandboxd.adapters.memory import MemoryApplier, MemoryStore
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.models.status import SandboxStatus
from sandboxd.reconcile.ports import Applier
from support.conformance import Views
from support.spine import unique_id


@pytest.fixture(
    params=["memory", pytest.param("kv", marks=pytest.mark.nats), pytest.param("kv-no-direct", marks=pytest.mark.nats)]
)
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.param


@pytest.fixture
async def views(implementation: str, request: pytest.FixtureRequest) -> AsyncIterator[Views]:
    if implementation == "memory":
        mine: MemoryStore[SandboxStatus] = MemoryStore()
        yield Views(mine, mine.replica())
        return
    server: NatsServer = request.getfixturevalue("nats_server")
    nc = await nats.connect(server.url)
    try:
        bucket = unique_id("conformance")
        kv = await nc.jetstream().create_key_value(bucket=bucket, direct=implementation == "kv")
        yield Views(KvStore(kv, SandboxStatus), KvStore(kv, SandboxStatus))
    finally:
        await nc.close()


@pytest.fixture(params=["memory", "directory"])
def applier(request: pytest.FixtureRequest, tmp_path: Path) -> Applier:
    """Each ``Applier`` with no server behind it; the Kubernetes and GitOps appliers have their own suites."""
    if request.param == "memory":
        return MemoryApplier()
    return DirectoryApplier(tmp_path / "tree")
