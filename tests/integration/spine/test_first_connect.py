"""``adapters.jetstream.connection.connect`` on a real nats-server: one attempt, then a connection that lasts.

What must hold: the first connect is a single attempt that says why it failed (the process owning it retries,
``app.starting``), yet once connected a service's connection reconnects by itself after a server restart (the
reconnect policy is switched on after the first connect) and tells readiness both ways.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from sandboxd.adapters.jetstream.connection import connect
from sandboxd.adapters.natsserver import NatsServer, free_port
from sandboxd.errors import BrokerUnavailable
from sandboxd.settings import NatsSettings

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


async def test_the_first_connect_is_one_attempt_and_the_connection_then_survives_a_restart(tmp_path: Path) -> None:
    server = NatsServer(store_dir=tmp_path / "nats", port=free_port())
    settings = NatsSettings(url=server.url)
    with anyio.fail_after(10), pytest.raises(BrokerUnavailable, match="connection refused"):
        await connect(settings)  # nothing listens yet: an answer, not a hang

    changes: list[bool] = []
    with server:
        nc = await connect(settings, on_change=changes.append)
        try:
            server.restart()
            with anyio.fail_after(30):
                while not (nc.is_connected and changes == [False, True]):
                    await anyio.sleep(0.05)
            await nc.flush(timeout=5)
        finally:
            await nc.close()
