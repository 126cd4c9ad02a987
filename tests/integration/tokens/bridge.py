"""A real HTTP NewAPI bridge for the token tests: an aiohttp web server on 127.0.0.1, as upstream's sidecar answers.

``POST /admin/tokens/sandbox`` checks the admin bearer (401 ``{"error":"invalid admin credentials"}`` otherwise),
refuses empty channels (400) and answers ``{"token", "expires_at"}`` with the next token of ``tokens`` and an
expiry ``ttl`` after the test's clock, once ``hold`` (when given) is set, so a test can keep mints in flight;
``DELETE /admin/tokens/sandbox/{id}`` revokes (204), or answers 405 when ``revoke_supported`` is off. Every
request is recorded with its headers and body.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from aiohttp import web

ADMIN = "admin-bearer-int-test"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class Bridge:
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ttl: timedelta = timedelta(days=7)
    tokens: Iterator[str] = field(default_factory=lambda: (f"jwt-int-{n}" for n in itertools.count(1)))
    revoke_supported: bool = True
    hold: anyio.Event | None = None
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def minted(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST"]

    async def _mint(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append(Seen("POST", request.path, dict(request.headers), body))
        if request.headers.get("Authorization") != f"Bearer {ADMIN}":
            return web.json_response({"error": "invalid admin credentials"}, status=401)
        if not body.get("allowed_channels"):
            return web.json_response({"error": "allowed_channels is empty"}, status=400)
        if self.hold is not None:
            await self.hold.wait()
        expires = (self.now() + self.ttl).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response({"token": next(self.tokens), "expires_at": expires})

    async def _revoke(self, request: web.Request) -> web.Response:
        self.seen.append(Seen("DELETE", request.path, dict(request.headers), None))
        if request.headers.get("Authorization") != f"Bearer {ADMIN}":
            return web.json_response({"error": "invalid admin credentials"}, status=401)
        return web.Response(status=204 if self.revoke_supported else 405)


@asynccontextmanager
async def serving(bridge: Bridge) -> AsyncIterator[Bridge]:
    app = web.Application()
    app.router.add_post("/admin/tokens/sandbox", bridge._mint)
    app.router.add_delete("/admin/tokens/sandbox/{sandbox_id}", bridge._revoke)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    bridge.url = f"http://127.0.0.1:{port}"
    try:
        yield bridge
    finally:
        await runner.cleanup()


def body_of(seen: Seen) -> str:
    return json.dumps(seen.body, sort_keys=True)
