"""Helpers for tests that run the real service in-process against a real nats-server.

``running_service`` starts ``app.service.Service`` in a task group and stops it the way SIGTERM would;
``Client`` publishes events and reads the status projection with plain nats-py, as any other client would.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from sandboxd import naming
from sandboxd.adapters.jetstream.publishing import publish_event
from sandboxd.adapters.jetstream.stores import open_bucket
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.app.service import Service
from sandboxd.models.events import EVENT_CLASSES
from sandboxd.models.status import SandboxStatus
from sandboxd.reconcile.ports import Applier
from sandboxd.render import render
from sandboxd.settings import (
    ApplierSettings,
    NatsSettings,
    RuntimeSettings,
    Settings,
    TopologySettings,
    WorkerSettings,
)

_ids = itertools.count(1)


def runtime_settings(**overrides: Any) -> RuntimeSettings:
    values: dict[str, Any] = {
        "pty_server_image": "ghcr.io/openova-io/openova/sandbox-pty-server:test-sha",
        "mcp_image": "ghcr.io/openova-io/openova/sandbox-mcp-server:test-sha",
        "newapi_url": "https://newapi.omantel.omani.works/v1",
        "sovereign_fqdn": "omantel.omani.works",
    }
    values.update(overrides)
    return RuntimeSettings(**values)


def service_settings(
    url: str, *, worker: dict[str, Any] | None = None, topology: dict[str, Any] | None = None
) -> Settings:
    return Settings(
        runtime=runtime_settings(),
        nats=NatsSettings(url=url),
        topology=TopologySettings(**{"ack_wait_s": 5.0, "max_deliver": 6, **(topology or {})}),
        worker=WorkerSettings(
            **{
                "concurrency": 8,
                "retry_base_s": 0.2,
                "retry_cap_s": 2.0,
                "shutdown_grace_s": 5.0,
                "health_host": "127.0.0.1",
                "health_port": 0,  # a free port: tests never collide on /healthz
                **(worker or {}),
            }
        ),
        applier=ApplierSettings(kind="directory"),
    )


def unique_id(prefix: str = "sb") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def spec(email: str, *, sessions: int = 2, repos: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "owner": {"email": email, "orgRef": {"slug": "acme"}},
        "quota": {"cpu": "2", "memory": "4Gi", "storage": "20Gi", "concurrentSessions": sessions},
        "repos": [{"giteaRepo": r} for r in (repos or [])],
        **extra,
    }


def event(verb: str, sandbox_id: str, data: dict[str, Any] | None = None, *, event_id: str | None = None) -> Any:
    cls = EVENT_CLASSES[verb]
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or f"evt-{next(_ids)}-{uuid.uuid4().hex[:6]}",
        "source": "tests",
        "subject": sandbox_id,
    }
    if data is not None:
        body["data"] = data
    return cls.model_validate(body)


@dataclass
class Client:
    """A plain nats-py client: publishes events, reads status like a console would."""

    nc: NatsClient
    js: JetStreamContext

    async def publish(self, verb: str, sandbox_id: str, data: dict[str, Any] | None = None, **kw: Any) -> int:
        seq, _ = await publish_event(self.js, event(verb, sandbox_id, data, **kw))
        return seq

    async def create(self, sandbox_id: str, email: str, **spec_kw: Any) -> int:
        return await self.publish("create", sandbox_id, {"spec": spec(email, **spec_kw)})

    async def publish_raw(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> int:
        ack = await self.js.publish(subject, payload, headers=headers)
        return int(ack.seq)

    async def status(self, sandbox_id: str) -> SandboxStatus | None:
        """The status record as the bucket's leader holds it (at R3 a direct get may come from a lagging follower:
        ``open_bucket`` reads a replicated bucket from its leader, as the service does)."""
        kv = await open_bucket(self.js, naming.STATUS_BUCKET)
        try:
            entry = await kv.get(naming.status_key(sandbox_id))
        except KeyNotFoundError:
            return None
        if not entry.value:  # the marker the server leaves where an expired record was
            return None
        return SandboxStatus.model_validate(json.loads(entry.value))

    async def wait_status(
        self, sandbox_id: str, until: Callable[[SandboxStatus], bool], *, timeout: float = 15.0
    ) -> SandboxStatus:
        last: SandboxStatus | None = None
        with anyio.move_on_after(timeout):
            while True:
                last = await self.status(sandbox_id)
                if last is not None and until(last):
                    return last
                await anyio.sleep(0.05)
        raise AssertionError(f"status of {sandbox_id} never matched; last: {last}")

    async def dead_letters(self) -> list[nats.aio.msg.Msg]:
        sub = await self.js.pull_subscribe(naming.DLQ_SUBJECTS, stream=naming.DLQ_STREAM)
        out: list[nats.aio.msg.Msg] = []
        try:
            while True:
                out.extend(await sub.fetch(100, timeout=0.5))
        except TimeoutError:  # nats' TimeoutError, or asyncio's from inside fetch's _fetch_n: both mean empty
            pass
        await sub.unsubscribe()
        return out


@asynccontextmanager
async def client(url: str, **connect: Any) -> AsyncIterator[Client]:
    """A connection to ``url`` (``connect``: nats-py's own options, credentials for one)."""
    nc = await nats.connect(url, **connect)
    try:
        yield Client(nc, nc.jetstream())
    finally:
        await nc.close()


@asynccontextmanager
async def running_service(settings: Settings, applier: Applier, **kw: Any) -> AsyncIterator[Service]:
    service = Service(settings, applier=applier, render=render, **kw)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.run, stop)
        with anyio.fail_after(15):
            while not service.health.ready:
                await anyio.sleep(0.02)
        try:
            yield service
        finally:
            stop.set()


@asynccontextmanager
async def status_bucket(url: str) -> AsyncIterator[KeyValue]:
    """The status bucket of a provisioned topology, on a connection of its own (for writing records by hand)."""
    async with client(url) as c:
        await ensure_topology(c.js, TopologySettings())
        yield await c.js.key_value(naming.STATUS_BUCKET)
