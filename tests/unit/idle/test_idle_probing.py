"""The HTTP prober against a real local HTTP server: what counts as an answer, and what never counts as activity."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from sandboxd.adapters.jetstream.activity import parse_activity
from sandboxd.adapters.probing import HttpProber, parse_report, probe_url
from sandboxd.settings.idle import DEFAULT_PROBE_URL, IdleSettings
from unit.idle.factories import T0

pytestmark = pytest.mark.anyio


def test_upstream_8_default_probe_url() -> None:
    url = probe_url(
        IdleSettings().probe_url, sandbox_id="sb-1", namespace="sandbox-ceo-at-acme-com", owner_uid="ceo-at-acme-com"
    )
    assert url == "http://pty-server.sandbox-ceo-at-acme-com.svc.cluster.local:7681/idle"
    assert IdleSettings().probe_url == DEFAULT_PROBE_URL


def test_probe_url_templates_are_checked() -> None:
    assert IdleSettings(probe_url="http://idle.local/{sandbox_id}/{owner_uid}").probe_url.endswith("{owner_uid}")
    with pytest.raises(ValueError, match="not a URL template"):
        IdleSettings(probe_url="http://x/{ns}")
    with pytest.raises(ValueError, match="not an http"):
        IdleSettings(probe_url="ftp://x/{namespace}")


def test_parse_report_takes_the_two_fields_and_ignores_the_rest() -> None:
    body = {"lastActivityAt": "2026-11-27T09:00:00Z", "activeSessions": 2, "version": "1.4"}
    report = parse_report(json.dumps(body).encode())
    assert report is not None and report.active_sessions == 2 and report.last_activity_at == T0
    assert parse_report(b"not json") is None
    assert parse_report(b"[]") is None
    assert parse_report(b'{"lastActivityAt": "2026-11-27T09:00:00Z"}') is None
    assert parse_report(b'{"lastActivityAt": "yesterday", "activeSessions": 0}') is None
    assert parse_report(b'{"lastActivityAt": "2026-11-27T09:00:00Z", "activeSessions": -1}') is None


def test_activity_messages_name_their_sandbox_in_the_subject() -> None:
    body = b'{"lastActivityAt": "2026-11-27T09:00:00Z", "activeSessions": 1}'
    parsed = parse_activity("sandbox.activity.sb-1", body)
    assert parsed is not None and parsed[0] == "sb-1" and parsed[1].active_sessions == 1
    assert parse_activity("sandbox.activity.Not_An_Id", body) is None
    assert parse_activity("sandbox.scale.sb-1", body) is None
    assert parse_activity("sandbox.activity.sb-1", b"{}") is None
    other = b'{"lastActivityAt": "2026-11-27T09:00:00Z", "activeSessions": 1, "sandboxId": "sb-2"}'
    assert parse_activity("sandbox.activity.sb-1", other) is None


@pytest.fixture
async def pty_servers() -> AsyncIterator[str]:
    """One local server answering as each namespace's pty-server would: ``/<namespace>/idle``."""
    released = asyncio.Event()

    async def idle(request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        if namespace == "sandbox-ok":
            return web.json_response({"lastActivityAt": "2026-11-27T09:00:00Z", "activeSessions": 1, "extra": 1})
        if namespace == "sandbox-missing":
            return web.Response(status=404, text="not found")
        if namespace == "sandbox-broken":
            return web.Response(status=200, text="<html>")
        if namespace == "sandbox-error":
            return web.Response(status=500)
        if namespace == "sandbox-redirect":
            raise web.HTTPFound("/sandbox-ok/idle")
        await released.wait()  # sandbox-slow: answers only when the test is over
        return web.json_response({"lastActivityAt": "2026-11-27T09:00:00Z", "activeSessions": 0})

    app = web.Application()
    app.router.add_get("/{namespace}/idle", idle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/{{namespace}}/idle"
    finally:
        released.set()
        await runner.cleanup()


async def test_only_a_200_with_a_report_is_an_answer(pty_servers: str) -> None:
    async with HttpProber(url_template=pty_servers, timeout_s=0.5) as prober:

        async def probe(namespace: str) -> object:
            return await prober.probe(sandbox_id="sb", namespace=namespace, owner_uid="u")

        ok = await probe("sandbox-ok")
        assert ok is not None and ok.active_sessions == 1  # type: ignore[attr-defined]
        for failing in ("sandbox-missing", "sandbox-broken", "sandbox-error", "sandbox-redirect", "sandbox-slow"):
            assert await probe(failing) is None, failing


async def test_an_unreachable_server_is_no_answer() -> None:
    prober = HttpProber(url_template="http://127.0.0.1:9/{namespace}/idle", timeout_s=0.5)
    try:
        assert await prober.probe(sandbox_id="sb", namespace="sandbox-x", owner_uid="u") is None
    finally:
        await prober.aclose()
