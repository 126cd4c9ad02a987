"""``sandboxd tokens`` (the token writer beside a GitOps reconciler) on a real nats-server and an HTTP bridge.

What must hold: its /healthz, /readyz and /metrics answer from before the first connect (503 naming NATS, which
may come up later) to after the drain; /readyz is 200 once connected with both buckets open; a mint is counted on
/metrics (``sandboxd_tokens_total``) and written to status in NATS; a stop turns /readyz to 503 and, once ``run``
returns, nothing listens. The token Secret is a recording double here: the cluster side has its own tests
(``test_token_writer_kube.py``); this one is about the process and NATS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import anyio
import pytest
from pydantic import SecretStr

from integration.idle.rig import until
from sandboxd import naming
from sandboxd.adapters.jetstream.stores import KvStore
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.natsserver import NatsServer, free_port
from sandboxd.app.tokens import TokensProcess
from sandboxd.models.desired import DesiredState
from sandboxd.models.status import SandboxStatus
from sandboxd.reconcile.tokens import SecretView
from sandboxd.settings import ApplierSettings, NatsSettings, Settings, TopologySettings, WorkerSettings
from sandboxd.settings.tokens import TokenSettings
from sandboxd.telemetry.testing import prometheus_sample
from support.spine import client, runtime_settings, unique_id

from .bridge import ADMIN, Bridge, serving
from .test_token_writer_kube import desired_state

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


@dataclass
class RecordedSecrets:
    """Every sandbox namespace holds the renderer's Secret; writes are recorded (revision only, never the token)."""

    written: dict[str, int] = field(default_factory=dict)

    async def read(self, namespace: str) -> SecretView | None:
        return SecretView(revision=self.written.get(namespace))

    async def write(self, namespace: str, *, token: SecretStr, revision: int, expires_at: datetime) -> None:
        self.written[namespace] = revision

    async def aclose(self) -> None:
        return None


def settings(nats: NatsSettings, bridge_url: str) -> Settings:
    return Settings(
        runtime=runtime_settings(),
        nats=nats,
        topology=TopologySettings(),
        worker=WorkerSettings(),
        applier=ApplierSettings(kind="directory"),
        tokens=TokenSettings(
            admin_secret=SecretStr(ADMIN),
            base_url=bridge_url,
            writer="external",
            check_interval_s=0.2,
            health_host="127.0.0.1",
            health_port=0,
        ),
    )


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


async def test_the_token_writer_serves_its_probes_and_metrics_from_start_to_drain(tmp_path: Path) -> None:
    server = NatsServer(store_dir=tmp_path / "nats", port=free_port())
    sid = unique_id("tok")
    secrets, stop = RecordedSecrets(), anyio.Event()
    async with serving(Bridge()) as bridge, anyio.create_task_group() as tg:
        process = TokensProcess(
            settings(NatsSettings(url=server.url), bridge.url),
            clock=lambda: datetime.now(UTC),
            bridge=None,
            secrets=secrets,
        )
        tg.start_soon(process.run, stop)
        await until(lambda: "nats" in process.health.details, what="the first connect to fail")
        assert process.endpoint is not None
        port = process.endpoint.port
        assert await get(port, "/healthz") == (200, '{"alive": true}')
        status, body = await get(port, "/readyz")
        assert status == 503
        assert "connection refused" in json.loads(body)["notReady"]["nats"]

        with server:  # NATS comes up after the writer: it connects, opens both buckets and is ready
            async with client(server.url) as c:
                await ensure_topology(c.js, TopologySettings())
                desired = KvStore(await c.js.key_value(naming.DESIRED_BUCKET), DesiredState)
                await desired.put(naming.desired_key(sid), desired_state(sid), revision=None)
                await until(lambda: process.health.ready, timeout=30.0, what="the writer to be ready")
                assert await get(port, "/readyz") == (200, '{"ready": true}')

                async def minted() -> bool:
                    text = (await get(port, "/metrics"))[1]
                    return prometheus_sample(text, "sandboxd_tokens_total", outcome="minted") == 1

                await until(minted, what="the mint counted on /metrics")
                assert prometheus_sample((await get(port, "/metrics"))[1], "sandboxd_ready") == 1
                statuses = KvStore(await c.js.key_value(naming.STATUS_BUCKET), SandboxStatus)
                record = await statuses.get(naming.status_key(sid))
                assert record is not None and record.value.token is not None

            stop.set()
            await until(lambda: process.health.draining, what="the writer to stop")
    with pytest.raises(aiohttp.ClientConnectionError):  # after run: the endpoint is gone
        await get(port, "/healthz")
