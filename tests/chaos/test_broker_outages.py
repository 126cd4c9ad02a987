"""(c) The broker goes away: nats-server killed and restarted in the middle of the load, then stopped for 30 s.

It proves: nothing is lost (every sandbox ends on its last event, the consumer ends with nothing pending or
unacknowledged), ``sandboxd run`` never exits (it reconnects forever), and ``/readyz`` answers 503 for the
whole outage and 200 again once the broker is back.
"""

from __future__ import annotations

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
from sandboxd.adapters.natsserver import NatsServer, free_port
from support.chaos import (
    Figures,
    exits_fail_fast,
    publish_next,
    readyz,
    reconnecting_client,
    unexpected_exits,
    wait_readyz,
)
from support.spine import Client, unique_id

pytestmark = [pytest.mark.chaos, pytest.mark.anyio, pytest.mark.timeout(900)]

SANDBOXES = 50
OUTAGE_S = 30.0


async def publish_round(c: Client, wants: list[Expectation], sessions: int, figures: Figures) -> None:
    for want in wants:
        await publish_next(c, want, sessions, figures=figures)


async def test_nats_restart_mid_load_and_a_30_s_outage(
    fresh_nats_server: NatsServer, tmp_path: Path, figures: Figures
) -> None:
    server = fresh_nats_server
    health_port = free_port()
    services = Services(server.url, tmp_path / "rendered", tmp_path)
    wants = [Expectation(unique_id("ng"), f"ng{n}@acme.com") for n in range(SANDBOXES)]
    nc = await reconnecting_client(server.url)
    c = Client(nc, nc.jetstream())
    try:
        first = services.start(SANDBOXD_HEALTH_PORT=str(health_port), SANDBOXD_HEALTH_HOST="127.0.0.1")
        services.start()
        await wait_fetching(c.js, services=2)
        await wait_readyz(health_port, 200, timeout=30)
        async with exits_fail_fast(services.started):
            # A restart in the middle of the load: the server is killed between two rounds of events.
            for sessions in (1, 2, 3):
                await publish_round(c, wants, sessions, figures)
            server.kill()
            restarted = time.monotonic()
            server.start()
            for sessions in (4, 5):
                await publish_round(c, wants, sessions, figures)
            await wait_converged(c, tmp_path / "rendered", wants, timeout=300, logs=services.logs)
            figures["converged_after_restart_s"] = time.monotonic() - restarted

            # Down for 30 s with work in flight: /readyz must say so the whole time, and nothing may exit.
            for sessions in (1, 2):
                await publish_round(c, wants, sessions, figures)
            server.stop()
            down = time.monotonic()
            figures["readyz_503_after_s"] = await wait_readyz(health_port, 503, timeout=10)
            samples = []
            while time.monotonic() - down < OUTAGE_S:
                samples.append(await anyio.to_thread.run_sync(readyz, health_port))
                await anyio.sleep(1.0)
            figures["readyz_samples_during_outage"] = len(samples)
            figures["readyz_not_503_during_outage"] = sum(code != 503 for code in samples)
            assert all(code == 503 for code in samples), samples
            assert first.process is not None and first.process.poll() is None

            server.start()
            back = time.monotonic()
            figures["readyz_200_after_s"] = await wait_readyz(health_port, 200, timeout=60)
            await publish_round(c, wants, 3, figures)
            await wait_converged(c, tmp_path / "rendered", wants, timeout=300, logs=services.logs)
            figures["converged_after_outage_s"] = time.monotonic() - back
            await wait_drained(c.js, timeout=120)
        figures["lost"] = 0
    finally:
        figures["exits"] = len(unexpected_exits(services.started, killed=set()))
        services.stop_all()
        with anyio.CancelScope(shield=True):
            await nc.close()
    assert figures["exits"] == 0
