"""The metrics both processes export, scraped from their /metrics on a real nats-server (``support.scraping``).

What must hold: right after start-up every documented series is there (at zero: a dashboard or an alert reads 0,
not "no data"), the reconciler's and the scaler's alike, through the same OTel stack; and docs/operations.md
names exactly what they export.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.scraping import Scrapes, families, scraped

pytestmark = [pytest.mark.nats, pytest.mark.anyio]
ROOT = Path(__file__).resolve().parents[3]
#: Series that come with their first sample: a histogram has no zero to show.
FIRST_SAMPLE = {"sandboxd_reconcile_duration_seconds"}


def documented() -> set[str]:
    """The metric names in the table of docs/operations.md, "Observability"."""
    text = (ROOT / "docs" / "operations.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `sandbox")]
    names = r"`((?:sandboxd|sandbox_controller)_[a-z_]+)"
    return {name for row in rows for name in re.findall(names, row.split("|")[1])}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def scrapes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scrapes]:
    async with scraped(tmp_path_factory) as done:
        yield done


async def test_every_series_is_there_at_zero_from_start_up(scrapes: Scrapes) -> None:
    at_start = families(scrapes.reconciler_at_start) | families(scrapes.scaler_at_start)
    assert documented() - FIRST_SAMPLE <= at_start, "documented but absent right after start-up"
    assert "sandboxd_scale_commands_total" in families(scrapes.scaler_at_start)  # the scaler's, via OTel too
    assert "sandboxd_queue_depth" not in families(scrapes.scaler_at_start)  # each process its own


async def test_docs_name_exactly_what_is_exported(scrapes: Scrapes) -> None:
    assert scrapes.exported() == documented()
