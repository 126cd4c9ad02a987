"""The chart's Grafana dashboard and PrometheusRule: they render, parse, and query only series that exist.

The names come from both processes' /metrics on a real nats-server (``support.scraping``), never from a list
kept by hand; the objects from the pinned helm binary with the monitoring values switched on.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from support.scraping import OURS, Scrapes, scraped

from .charts import CHART, Helm, by_kind

pytestmark = [pytest.mark.nats, pytest.mark.anyio]
HISTOGRAM_PART = re.compile(r"(?<=^sandboxd_reconcile_duration_seconds)_(bucket|count|sum)$")
ALERTS = {"SandboxdReconcileErrors", "SandboxdDeadLettersGrowing", "SandboxdConsumerLag", "SandboxdNotReady"}
ON: dict[str, Any] = {"monitoring.dashboards.enabled": True, "monitoring.prometheusRule.enabled": True}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def scrapes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scrapes]:
    async with scraped(tmp_path_factory) as done:
        yield done


def queried(expr: str) -> set[str]:
    """Our series an expression reads; the histogram's by its base name."""
    return {HISTOGRAM_PART.sub("", name) for name in OURS.findall(expr)}


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def rendered(helm: Helm) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    objects = helm.template(set_values=ON)
    (configmap,) = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboards")]
    (rule,) = by_kind(objects, "PrometheusRule")
    return json.loads(configmap["data"]["sandboxd.json"]), rule["spec"]["groups"][0]["rules"]


def test_off_by_default(helm: Helm) -> None:
    objects = helm.template()
    assert not by_kind(objects, "PrometheusRule")
    assert not [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboards")]


def test_the_dashboard_and_the_alerts_render(helm: Helm) -> None:
    dashboard, rules = rendered(helm)
    assert dashboard == json.loads((CHART / "dashboards" / "sandboxd.json").read_text())  # shipped as is
    assert dashboard["uid"] == "sandboxd" and dashboard_exprs(dashboard)
    assert {rule["alert"] for rule in rules} >= ALERTS
    lag = next(rule for rule in rules if rule["alert"] == "SandboxdConsumerLag")
    assert lag["expr"] == "max(sandboxd_consumer_lag) > 1000" and lag["for"] == "10m"
    not_ready = next(rule for rule in rules if rule["alert"] == "SandboxdNotReady")
    assert "{{ $labels.pod }}" in not_ready["annotations"]["description"]  # left for Prometheus to fill in


async def test_every_query_reads_a_series_the_processes_export(helm: Helm, scrapes: Scrapes) -> None:
    dashboard, rules = rendered(helm)
    exported = scrapes.exported()
    for expr in [*dashboard_exprs(dashboard), *(rule["expr"] for rule in rules)]:
        assert queried(expr), f"queries none of our series: {expr}"
        assert queried(expr) <= exported, f"{expr} reads {queried(expr) - exported}, which nothing exports"
    every = set().union(*(queried(expr) for expr in dashboard_exprs(dashboard)))
    assert every == exported, "a series the dashboard does not show"
