"""The health and metrics endpoint on its own: a loopback port, a readiness record, a registry."""

from __future__ import annotations

import aiohttp
import prometheus_client
import pytest

from sandboxd.app.http import Health, HealthEndpoint
from sandboxd.errors import ConfigurationError
from sandboxd.telemetry.providers import Telemetry
from sandboxd.telemetry.testing import capture, prometheus_sample

pytestmark = pytest.mark.anyio


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


async def test_probes_follow_the_health_record_and_metrics_serve_the_registry() -> None:
    health = Health()
    captured = capture()
    captured.telemetry.instruments.dead_lettered("InvalidEvent")
    endpoint = HealthEndpoint(
        readiness=health,
        registries=[captured.telemetry.registry, prometheus_client.REGISTRY],
        host="127.0.0.1",
        port=0,
        variables="SANDBOXD_HEALTH_HOST/SANDBOXD_HEALTH_PORT",
    )
    async with endpoint:
        assert endpoint.port > 0
        assert (await get(endpoint.port, "/healthz"))[0] == 200
        status, body = await get(endpoint.port, "/readyz")
        assert status == 503
        assert '"nats": "not connected"' in body and '"consumer": "not bound"' in body
        health.connected = health.consumer_bound = True
        assert await get(endpoint.port, "/readyz") == (200, '{"ready": true}')
        health.target_reachable = False
        health.details["target"] = "kubernetes unreachable: connection refused"
        status, body = await get(endpoint.port, "/readyz")
        assert status == 503 and "kubernetes unreachable: connection refused" in body
        health.target_reachable, health.draining = True, True
        status, body = await get(endpoint.port, "/readyz")
        assert status == 503 and '"draining": "shutting down"' in body
        status, text = await get(endpoint.port, "/metrics")
        assert status == 200
        assert prometheus_sample(text, "sandboxd_dead_letters_total", reason="InvalidEvent") == 1
        assert prometheus_sample(text, "process_virtual_memory_bytes") is not None  # the default registry too
        assert (await get(endpoint.port, "/nothing"))[0] == 404
    with pytest.raises(RuntimeError):
        _ = endpoint.port


async def test_a_port_in_use_is_a_configuration_error_naming_the_variables() -> None:
    health, variables = Health(), "SANDBOXD_SCALER_METRICS_HOST/SANDBOXD_SCALER_METRICS_PORT"
    async with HealthEndpoint(readiness=health, registries=[], host="127.0.0.1", port=0, variables=variables) as first:
        second = HealthEndpoint(readiness=health, registries=[], host="127.0.0.1", port=first.port, variables=variables)
        with pytest.raises(ConfigurationError, match="SANDBOXD_SCALER_METRICS_PORT"):
            await second.start()


async def test_metrics_keep_the_service_series_when_the_otel_sdk_is_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    # OTEL_SDK_DISABLED turns OTLP export off; /metrics is the service's own endpoint and keeps every series.
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # would export, were it enabled
    telemetry = Telemetry.from_environment()
    try:
        telemetry.instruments.dead_lettered("InvalidEvent")
        telemetry.instruments.reconciled(0.01, "done")
        telemetry.instruments.watch_queue(depth=lambda: 2, held=lambda: 1)
        endpoint = HealthEndpoint(
            readiness=Health(), registries=[telemetry.registry], host="127.0.0.1", port=0, variables="PORT"
        )
        async with endpoint:
            status, text = await get(endpoint.port, "/metrics")
        assert status == 200
        assert prometheus_sample(text, "sandboxd_dead_letters_total", reason="InvalidEvent") == 1
        assert prometheus_sample(text, "sandboxd_reconcile_duration_seconds_count", result="done") == 1
        assert prometheus_sample(text, "sandboxd_queue_depth") == 2
        assert telemetry.tracer is None  # tracing is off, as the variable says
        # Nothing but the Prometheus reader: no OTLP exporter was built for the endpoint above.
        assert [type(r).__name__ for r in telemetry.meter_provider._metric_readers] == ["PrometheusMetricReader"]
    finally:
        telemetry.shutdown()
