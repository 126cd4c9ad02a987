"""The metrics both processes export, scraped from their /metrics on a real nats-server.

What must hold: right after start-up every documented series is there (at zero: a dashboard or an alert reads 0,
not "no data"), the reconciler's and the scaler's alike, through the same OTel stack; docs/operations.md names
exactly what they export; and the Grafana dashboard and the PrometheusRule the chart ships query only series
that really exist (tests/integration/deploy/test_monitoring.py renders them; this is where the names come from).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

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

pytestmark = [pytest.mark.nats, pytest.mark.anyio]
ROOT = Path(__file__).resolve().parents[3]
OURS = re.compile(r"^(sandboxd|sandbox_controller)_")
#: Series that come with their first sample: a histogram has no zero to show.
FIRST_SAMPLE = {"sandboxd_reconcile_duration_seconds"}


def documented() -> set[str]:
    """The metric names in the table of docs/operations.md, "Observability"."""
    text = (ROOT / "docs" / "operations.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `sandbox")]
    names = r"`((?:sandboxd|sandbox_controller)_[a-z_]+)"
    return {name for row in rows for name in re.findall(names, row.split("|")[1])}


def families(text: str) -> set[str]:
    """Our metric names in a Prometheus exposition, as documented (counters with ``_total``)."""
    names = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            for suffix in ("_bucket", "_count", "_sum", "_created"):
                if family.type == "histogram" and name.endswith(suffix):
                    name = name.removesuffix(suffix)
            if OURS.match(name):
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


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def scrapes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scrapes]:
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


async def test_every_series_is_there_at_zero_from_start_up(scrapes: Scrapes) -> None:
    at_start = families(scrapes.reconciler_at_start) | families(scrapes.scaler_at_start)
    assert documented() - FIRST_SAMPLE <= at_start, "documented but absent right after start-up"
    assert "sandboxd_scale_commands_total" in families(scrapes.scaler_at_start)  # the scaler's, via OTel too
    assert "sandboxd_queue_depth" not in families(scrapes.scaler_at_start)  # each process its own


async def test_docs_name_exactly_what_is_exported(scrapes: Scrapes) -> None:
    assert scrapes.exported() == documented()
