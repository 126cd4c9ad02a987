"""Two token writers at once (two replicas with ``SANDBOXD_TOKEN_WRITER=service``, or a second ``sandboxd tokens``
started by mistake) mint once for a sandbox: the compare-and-set claim in its status decides which one mints.

Each writer has its own connection to a real nats-server, as two processes would; the HTTP bridge holds every
mint in flight until the test lets it go, so both writers are inside their visit at the same time. The token
Secret is one recording double, as there is one cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import anyio
import pytest
from pydantic import SecretStr

from integration.idle.rig import until
from sandboxd import naming
from sandboxd.adapters.jetstream.stores import KvStore
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.adapters.newapi import NewApiBridge
from sandboxd.models.desired import DesiredState
from sandboxd.models.status import Phase, SandboxStatus, TokenClaim
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.reconcile.tokens import TokenWriter
from sandboxd.settings import TopologySettings
from sandboxd.settings.tokens import TokenSettings
from support.spine import client, unique_id

from .bridge import ADMIN, Bridge, serving
from .test_token_writer_kube import START, Clock, desired_state
from .test_tokens_process import RecordedSecrets

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


@dataclass
class Writers:
    first: TokenWriter
    second: TokenWriter
    statuses: KvStore[SandboxStatus]
    bridge: Bridge
    secrets: RecordedSecrets
    clock: Clock


@asynccontextmanager
async def two_writers(url: str, sandbox_id: str) -> AsyncIterator[Writers]:
    clock, secrets = Clock(), RecordedSecrets()
    async with AsyncExitStack() as stack:
        bridge = await stack.enter_async_context(serving(Bridge(now=clock, hold=anyio.Event())))
        settings = TokenSettings(admin_secret=SecretStr(ADMIN), base_url=bridge.url, channels="qwen", timeout_s=10)
        setup = await stack.enter_async_context(client(url))
        await ensure_topology(setup.js, TopologySettings())
        desired = KvStore(await setup.js.key_value(naming.DESIRED_BUCKET), DesiredState)
        await desired.put(naming.desired_key(sandbox_id), desired_state(sandbox_id), revision=None)
        statuses = KvStore(await setup.js.key_value(naming.STATUS_BUCKET), SandboxStatus)

        async def writer() -> TokenWriter:
            own = await stack.enter_async_context(client(url))  # a connection of its own, as a process has
            newapi = NewApiBridge(bridge.url, SecretStr(ADMIN), timeout_s=10)
            stack.push_async_callback(newapi.aclose)
            return TokenWriter(
                desired=KvStore(await own.js.key_value(naming.DESIRED_BUCKET), DesiredState),
                status=StatusWriter(KvStore(await own.js.key_value(naming.STATUS_BUCKET), SandboxStatus)),
                bridge=newapi,
                secrets=secrets,
                settings=settings,
                clock=clock,
            )

        yield Writers(await writer(), await writer(), statuses, bridge, secrets, clock)


async def visit_together(writers: Writers, sandbox_id: str) -> None:
    """Both writers visit at once; the bridge answers no mint until each writer is either minting or done."""
    done: list[TokenWriter] = []

    async def visit(writer: TokenWriter) -> None:
        await writer.visit(sandbox_id)
        done.append(writer)

    hold = writers.bridge.hold
    assert hold is not None
    async with anyio.create_task_group() as tg:
        tg.start_soon(visit, writers.first)
        tg.start_soon(visit, writers.second)
        minted_before = len(writers.bridge.minted())
        in_flight: Callable[[], bool] = lambda: len(writers.bridge.minted()) - minted_before + len(done) >= 2  # noqa: E731
        await until(in_flight, timeout=30, what="both writers to mint or to stand back")
        hold.set()


async def test_two_writers_at_once_mint_one_token(nats_server: NatsServer) -> None:
    sid = unique_id("tok2")
    async with two_writers(nats_server.url, sid) as writers:
        await visit_together(writers, sid)

        assert len(writers.bridge.minted()) == 1
        namespace = naming.namespace_for(f"{sid}-at-acme-test")
        assert writers.secrets.written == {namespace: 1}
        stored = await writers.statuses.get(naming.status_key(sid))
        assert stored is not None and stored.value.token is not None
        assert stored.value.token.revision == 1
        assert stored.value.token_claim is None  # the claim ends with the mint

        # Both visit again: the token is current, nothing is minted; at its rotation time, one of them rotates.
        await visit_together(writers, sid)
        assert len(writers.bridge.minted()) == 1
        writers.clock.now = stored.value.token.rotate_at + timedelta(seconds=1)
        writers.bridge.hold = anyio.Event()
        await visit_together(writers, sid)
        assert len(writers.bridge.minted()) == 2
        rotated = await writers.statuses.get(naming.status_key(sid))
        assert rotated is not None and rotated.value.token is not None
        assert rotated.value.token.revision == 2 and writers.secrets.written == {namespace: 2}


async def test_a_claim_whose_writer_died_lapses_and_another_writer_mints(nats_server: NatsServer) -> None:
    sid = unique_id("tok2")
    async with two_writers(nats_server.url, sid) as writers:
        hold = writers.bridge.hold
        assert hold is not None
        hold.set()
        until_s = 2 * 10  # twice the bridge's timeout (timeout_s=10)
        dead = TokenClaim(holder="a-writer-that-died", revision=1, until=START + timedelta(seconds=until_s))
        pending = SandboxStatus(sandbox_id=sid, phase=Phase.PENDING, updated_at=START, token_claim=dead)
        await writers.statuses.put(naming.status_key(sid), pending, revision=None)

        await writers.first.visit(sid)
        assert writers.bridge.minted() == []  # the claim holds: the first writer stands back

        writers.clock.now = START + timedelta(seconds=until_s + 1)
        await writers.first.visit(sid)
        assert len(writers.bridge.minted()) == 1
        stored = await writers.statuses.get(naming.status_key(sid))
        assert stored is not None and stored.value.token is not None and stored.value.token_claim is None
