"""Telemetry of the real service on a real nats-server: one trace per sandbox, /metrics, probes, JSON logs."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import generate_latest
from pydantic import SecretStr

from sandboxd.adapters.memory import MemoryApplier
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.app.service import Service
from sandboxd.errors import ApplyRejected
from sandboxd.models.status import Phase
from sandboxd.reconcile.ports import ApplyResult
from sandboxd.render import render
from sandboxd.render.model import RenderedSandbox
from sandboxd.settings import NatsSettings, Settings
from sandboxd.telemetry import logs
from sandboxd.telemetry.testing import capture, prometheus_sample
from support.spine import client, running_service, service_settings, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

PASSWORD = "n4ts-Pa55word-for-tests"


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


async def wait_for(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


def by_name(spans: list[ReadableSpan], sandbox_id: str) -> dict[str, ReadableSpan]:
    """The first span of each name that is about ``sandbox_id`` (or below one that is)."""
    about = {s.context.span_id for s in spans if s.context and (s.attributes or {}).get("sandbox.id") == sandbox_id}
    found: dict[str, ReadableSpan] = {}
    for span in spans:
        if span.context and (span.context.span_id in about or (span.parent and span.parent.span_id in about)):
            found.setdefault(span.name, span)
    return found


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


# --- traces ----------------------------------------------------------------------------------------------------


async def test_one_trace_from_publish_through_intake_and_reconcile(fresh_nats_server: NatsServer) -> None:
    captured = capture()
    tracer = captured.telemetry.tracer
    assert tracer is not None
    sid = unique_id()
    settings = service_settings(fresh_nats_server.url)
    async with (
        client(fresh_nats_server.url) as c,
        running_service(settings, MemoryApplier(), telemetry=captured.telemetry),
    ):
        with tracer.start_as_current_span("publish sandbox.create", kind=SpanKind.PRODUCER) as root:
            await c.create(sid, "traced@acme.com")  # publish_event injects the current context
        await c.wait_status(sid, lambda s: s.phase is Phase.READY)
        await wait_for(lambda: "write status" in by_name(captured.spans(), sid))
    spans = by_name(captured.spans(), sid)
    process, reconcile = spans["process sandbox.create.*"], spans["reconcile"]
    root_context = root.get_span_context()
    assert {trace_id(s) for s in spans.values()} == {root_context.trace_id}
    assert parent_of(process) == root_context.span_id
    assert process.kind is SpanKind.CONSUMER
    attributes = dict(process.attributes or {})
    assert attributes["messaging.system"] == "nats"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.destination.name"] == f"sandbox.create.{sid}"
    assert attributes["messaging.destination.template"] == "sandbox.create.*"
    assert attributes["sandboxd.intake.verdict"] == "accepted"
    assert attributes["messaging.message.id"]
    # The reconcile is a child of the publish (the desired state kept its traceparent); stages below it.
    assert parent_of(reconcile) == root_context.span_id
    assert (reconcile.attributes or {})["sandboxd.reconcile.result"] == "done"
    for stage in ("render", "apply", "write status"):
        assert parent_of(spans[stage]) == span_id(reconcile), stage


async def test_without_a_publisher_trace_the_reconcile_joins_the_intake_span(fresh_nats_server: NatsServer) -> None:
    captured = capture()
    sid = unique_id()
    settings = service_settings(fresh_nats_server.url)
    async with (
        client(fresh_nats_server.url) as c,
        running_service(settings, MemoryApplier(), telemetry=captured.telemetry),
    ):
        await c.create(sid, "untraced@acme.com")
        await c.wait_status(sid, lambda s: s.phase is Phase.READY)
        await wait_for(lambda: "reconcile" in by_name(captured.spans(), sid))
    spans = by_name(captured.spans(), sid)
    process, reconcile = spans["process sandbox.create.*"], spans["reconcile"]
    assert process.parent is None
    assert parent_of(reconcile) == span_id(process)


async def test_a_failed_apply_marks_the_spans_and_counts_the_error(fresh_nats_server: NatsServer) -> None:
    captured = capture()
    sid = unique_id()
    applier = MemoryApplier(fail=lambda sandbox: ApplyRejected("quota exceeded in namespace"))
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c, running_service(settings, applier, telemetry=captured.telemetry):
        await c.create(sid, "rejected@acme.com")
        await c.wait_status(sid, lambda s: s.phase is Phase.FAILED)
        await wait_for(lambda: "reconcile" in by_name(captured.spans(), sid))
        text = generate_latest(captured.telemetry.registry).decode()
    spans = by_name(captured.spans(), sid)
    assert spans["apply"].status.status_code is StatusCode.ERROR
    assert spans["reconcile"].status.status_code is StatusCode.ERROR
    assert (spans["reconcile"].attributes or {})["error.type"] == "ApplyRejected"
    assert prometheus_sample(text, "sandboxd_apply_errors_total", reason="ApplyRejected") == 1
    assert prometheus_sample(text, "sandboxd_dead_letters_total", reason="ApplyRejected") == 1
    assert prometheus_sample(text, "sandboxd_reconcile_duration_seconds_count", result="failed") == 1


# --- metrics and probes over HTTP ------------------------------------------------------------------------------


async def test_metrics_after_a_create_and_a_poison_message(fresh_nats_server: NatsServer) -> None:
    sid = unique_id()
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c, running_service(settings, MemoryApplier()) as service:
        assert service.endpoint is not None
        port = service.endpoint.port
        await c.create(sid, "metrics@acme.com")
        await c.publish_raw(f"sandbox.create.{unique_id()}", b"{not json", {"Nats-Msg-Id": "poison-1"})
        await c.wait_status(sid, lambda s: s.phase is Phase.READY)
        await wait_for(lambda: service.consumer is not None and service.consumer.fetched >= 2)
        with anyio.fail_after(10):
            while True:
                status, text = await get(port, "/metrics")
                if prometheus_sample(text, "sandboxd_dead_letters_total", reason="InvalidEvent"):
                    break
                await anyio.sleep(0.05)
    assert status == 200
    assert prometheus_sample(text, "sandboxd_reconcile_duration_seconds_count", result="done") is not None
    assert prometheus_sample(text, "sandboxd_reconcile_duration_seconds_bucket", result="done", le="+Inf")
    assert prometheus_sample(text, "sandboxd_dead_letters_total", reason="InvalidEvent") == 1
    assert prometheus_sample(text, "sandboxd_queue_depth") is not None
    assert prometheus_sample(text, "sandboxd_queue_held") is not None
    assert prometheus_sample(text, "sandboxd_consumer_lag") is not None  # sampled by the monitor at start
    assert prometheus_sample(text, "sandboxd_deliveries_settled_total", action="term") == 1
    assert prometheus_sample(text, "sandboxd_sandboxes", phase="Ready") == 1
    assert prometheus_sample(text, "sandboxd_sandboxes", phase="Rejected") == 1
    assert sid not in text  # never a sandbox id in a metric


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_readyz_is_503_while_nats_is_still_being_reached() -> None:
    # Nothing listens on the NATS port: the connect keeps retrying while the probes already answer.
    url = f"nats://127.0.0.1:{unused_port()}"
    service = Service(service_settings(url), applier=MemoryApplier(), render=render)
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.run, anyio.Event())
        await wait_for(lambda: service.endpoint is not None)
        assert service.endpoint is not None
        assert (await get(service.endpoint.port, "/healthz"))[0] == 200
        status, body = await get(service.endpoint.port, "/readyz")
        assert status == 503
        assert json.loads(body) == {"ready": False, "notReady": {"nats": "not connected", "consumer": "not bound"}}
        tg.cancel_scope.cancel()


@dataclass
class SlowApplier(MemoryApplier):
    started: anyio.Event | None = None

    async def apply(self, sandbox: RenderedSandbox, *, generation: int) -> ApplyResult:
        if self.started is not None:
            self.started.set()
        return await super().apply(sandbox, generation=generation)


async def test_readyz_goes_from_200_to_503_when_the_service_drains(fresh_nats_server: NatsServer) -> None:
    applier = SlowApplier(delay_s=1.5, started=anyio.Event())
    settings = service_settings(fresh_nats_server.url)
    service = Service(settings, applier=applier, render=render)
    stop = anyio.Event()
    async with client(fresh_nats_server.url) as c, anyio.create_task_group() as tg:
        tg.start_soon(service.run, stop)
        await wait_for(lambda: service.health.ready)
        assert service.endpoint is not None
        port = service.endpoint.port
        assert await get(port, "/readyz") == (200, '{"ready": true}')
        await c.create(unique_id(), "drain@acme.com")
        assert applier.started is not None
        await applier.started.wait()  # a reconcile is in flight: the drain waits for it
        stop.set()
        with anyio.fail_after(5):
            while (reply := await get(port, "/readyz"))[0] == 200:
                await anyio.sleep(0.02)
        status, body = reply
        assert status == 503 and json.loads(body)["notReady"]["draining"] == "shutting down"
        assert (await get(port, "/healthz"))[0] == 200  # alive while it drains
    with pytest.raises(aiohttp.ClientConnectionError):  # after run: the endpoint is gone
        await get(port, "/healthz")


# --- logs ------------------------------------------------------------------------------------------------------


@dataclass
class ChattyApplier(MemoryApplier):
    """Logs a careless line with the NATS password in it, inside a reconcile."""

    async def apply(self, sandbox: RenderedSandbox, *, generation: int) -> ApplyResult:
        logging.getLogger("sandboxd.tests.applier").info("applying with credentials %s", PASSWORD)
        return await super().apply(sandbox, generation=generation)


@asynccontextmanager
async def json_logs(redaction: logs.Redaction) -> AsyncIterator[io.StringIO]:
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure(default_format="json", level="INFO", stream=out, redaction=redaction)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_json_logs_carry_the_sandbox_and_never_the_nats_password(fresh_nats_server: NatsServer) -> None:
    sid = unique_id()
    base = service_settings(fresh_nats_server.url)
    # The test server has no auth; it accepts (and ignores) the user and password the client presents.
    nats = NatsSettings(url=fresh_nats_server.url, user="sandboxd", password=SecretStr(PASSWORD))
    settings = Settings(
        runtime=base.runtime, nats=nats, topology=base.topology, worker=base.worker, applier=base.applier
    )
    captured = capture()
    async with json_logs(logs.Redaction.of(settings)) as out, client(fresh_nats_server.url) as c:  # as the CLI does
        async with running_service(settings, ChattyApplier(), telemetry=captured.telemetry):
            logging.getLogger("sandboxd.tests").warning("NATS at nats://sandboxd:%s@127.0.0.1:4222", PASSWORD)
            await c.create(sid, "logs@acme.com")
            await c.wait_status(sid, lambda s: s.phase is Phase.READY)
        text = out.getvalue()
    assert PASSWORD not in text
    lines = [json.loads(line) for line in text.splitlines()]
    applying = [line for line in lines if line["message"] == "applying with credentials ***"]
    assert applying, text
    line = applying[0]
    assert line["sandbox_id"] == sid and line["event_id"]
    assert line["logger"] == "sandboxd.tests.applier" and line["level"] == "INFO"
    assert len(line["trace_id"]) == 32 and len(line["span_id"]) == 16
    assert any(line["message"] == "NATS at nats://sandboxd:***@127.0.0.1:4222" for line in lines)
