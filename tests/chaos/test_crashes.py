"""(b) Crashes under load: two ``sandboxd run`` replicas on one consumer, a random one SIGKILLed every 2-4 s (and
started again at once) while 2,000 events are published.

It proves: nothing is lost (every sandbox's desired state, status and files end on its last event, and the
consumer ends with nothing pending or unacknowledged), and no process exits except the ones killed.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import anyio
import pytest

from integration.cli.sandboxd_processes import (
    Expectation,
    Services,
    wait_converged,
    wait_drained,
    wait_fetching,
)
from sandboxd.adapters.natsserver import NatsServer
from support.chaos import Figures, exits_fail_fast, publish_next, reconnecting_client, unexpected_exits
from support.spine import Client, unique_id

pytestmark = [pytest.mark.chaos, pytest.mark.anyio, pytest.mark.timeout(900)]

SANDBOXES = 100
EVENTS_EACH = 20  # a create and 19 updates: 2,000 events
PUBLISH_RATE_PER_S = 50.0  # about 40 s of load, so a dozen kills land in the middle of it


async def publish_load(c: Client, wants: list[Expectation], rng: random.Random, figures: Figures) -> None:
    """Every sandbox's create, then its updates, interleaved across sandboxes, at ``PUBLISH_RATE_PER_S``."""
    order = [want for _ in range(EVENTS_EACH) for want in rng.sample(wants, len(wants))]
    started = time.monotonic()
    for index, want in enumerate(order):
        await publish_next(c, want, rng.randint(1, 5), figures=figures)
        ahead = (index + 1) / PUBLISH_RATE_PER_S - (time.monotonic() - started)
        if ahead > 0:
            await anyio.sleep(ahead)


async def test_sigkill_a_random_replica_every_2_to_4_s_under_load(
    fresh_nats_server: NatsServer, tmp_path: Path, figures: Figures
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    figures["seed"] = seed
    services = Services(fresh_nats_server.url, tmp_path / "rendered", tmp_path)
    wants = [Expectation(unique_id("kl"), f"kl{n}@acme.com") for n in range(SANDBOXES)]
    killed: set[int] = set()
    nc = await reconnecting_client(fresh_nats_server.url)
    c = Client(nc, nc.jetstream())
    try:
        replicas = [services.start(), services.start()]
        await wait_fetching(c.js, services=2)
        started = time.monotonic()
        async with exits_fail_fast(services.started, killed=killed), anyio.create_task_group() as tg:
            publishing = anyio.Event()

            async def load() -> None:
                await publish_load(c, wants, rng, figures)
                publishing.set()

            tg.start_soon(load)
            while not publishing.is_set():
                await anyio.sleep(rng.uniform(2.0, 4.0))
                victim = rng.randrange(len(replicas))
                killed.add(replicas[victim].pid)
                replicas[victim].signal(signal.SIGKILL)
                await anyio.to_thread.run_sync(replicas[victim].wait_sync, 10)
                replicas[victim] = services.start()
                figures.add("kills")
            figures["published_s"] = time.monotonic() - started
            last_kill = time.monotonic()
            await wait_converged(c, tmp_path / "rendered", wants, timeout=300, logs=services.logs)
            figures["converged_after_last_kill_s"] = time.monotonic() - last_kill
            info = await wait_drained(c.js, timeout=120)
            figures["redelivered"] = int(info.num_redelivered or 0)
        figures["lost"] = 0
    finally:
        figures["exits"] = len(unexpected_exits(services.started, killed=killed))
        services.stop_all()
        with anyio.CancelScope(shield=True):
            await nc.close()
    assert figures["exits"] == 0
