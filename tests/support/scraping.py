"""Both processes started on a real nats-server and their /metrics scraped: at start-up, and after one reconcile.

``scraped(tmp_path_factory)`` runs the scaler (with a fake scale target: only its metrics matter here) and the
reconciler (directory applier), scrapes each right after start-up, publishes one create, and scrapes the
reconciler again once it is reconciled. ``families`` names our series in an exposition as docs/operations.md
names them (counters with ``_total``, a histogram by its base name).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import aiohttp
import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from integration.idle.rig import scaler_config, until
from sandboxd.adapters.directory import DirectoryApplier
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.app.scaler import ScalerProcess
from sandboxd.models.status import Phase
from sandboxd.settings import TopologySettings
from support.spine import client, running_service, service_settings, unique_id
from unit.idle.factories import FakeStatefulSets

#: Our metric names (and nothing from the process collector or OTel's target_info).
OURS: Final = re.compile(r"(?:sandboxd|sandbox_controller)_[a-z_]+")


def families(text: str) -> set[str]:
    """Our metric names in a Prometheus exposition, as documented (counters with ``_total``)."""
    names = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if family.type == "histogram":
                name = family.name
            if OURS.fullmatch(name):
                names.add(name)
    return names


async def scrape(port: int) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        return await response.text()


@dataclass
class Scrapes:
    reconciler_at_start: str
    scaler_at_start: str
    reconciler_after_a_reconcile: str

    def exported(self) -> set[str]:
        return families(self.reconciler_after_a_reconcile) | families(self.scaler_at_start)


@asynccontextmanager
async def scraped(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scrapes]:
    with NatsServer(store_dir=tmp_path_factory.mktemp("nats-metrics")) as server:
        settings = service_settings(server.url)
        async with client(server.url) as c:
            await ensure_topology(c.js, TopologySettings(ack_wait_s=5.0, max_deliver=6))
            scaler = ScalerProcess(scaler_config(server.url, kubeconfig="unused"), target=FakeStatefulSets())
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(scaler.run, stop)
                await until(lambda: scaler.endpoint is not None and scaler.health.ready, what="the scaler")
                assert scaler.endpoint is not None
                scaler_text = await scrape(scaler.endpoint.port)
                applier = DirectoryApplier(tmp_path_factory.mktemp("out"))
                async with running_service(settings, applier) as service:
                    assert service.endpoint is not None
                    at_start = await scrape(service.endpoint.port)
                    sid = unique_id()
                    await c.create(sid, "metrics@acme.com")
                    await c.wait_status(sid, lambda s: s.phase is Phase.PROVISIONING)
                    later = await scrape(service.endpoint.port)
                stop.set()
    yield Scrapes(at_start, scaler_text, later)
