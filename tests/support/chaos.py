"""Helpers for the reliability suite (``tests/chaos``): figures each scenario prints, publishing that survives a
broker outage, reading every dead letter back, probing ``/readyz`` and counting exits nobody asked for.

Everything here talks to real processes: ``sandboxd run`` subprocesses (``integration.cli.sandboxd_processes``)
and a real nats-server. Nothing sleeps for a fixed time to let something happen: loops poll a condition under a
deadline.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

from integration.cli.sandboxd_processes import Expectation, ServiceProcess
from support.spine import Client, event, spec

#: Where each scenario appends its figures (one JSON object per line); ``make test-chaos`` prints them.
FIGURES_FILE = Path(os.environ.get("SANDBOXD_CHAOS_FIGURES", ".cache/chaos-figures.jsonl"))
#: Errors a publisher sees while the broker restarts, loses its leader or is away: publish again (same id).
PUBLISH_TRANSIENT = (
    nats.errors.TimeoutError,
    TimeoutError,
    nats.errors.NoRespondersError,
    NoStreamResponseError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    ServiceUnavailableError,
)


@dataclass
class Figures:
    """What one scenario measured; printed in the test summary and appended to ``FIGURES_FILE``."""

    scenario: str
    values: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def add(self, key: str, amount: int = 1) -> None:
        self.values[key] = int(self.values.get(key, 0)) + amount

    def line(self) -> str:
        shown = ", ".join(f"{key}={_shown(value)}" for key, value in self.values.items())
        return f"{self.scenario}: {shown} (wall {time.monotonic() - self.started:.1f}s)"

    def record(self) -> None:
        FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
        with FIGURES_FILE.open("a") as sink:
            sink.write(json.dumps({"scenario": self.scenario, "time": time.time(), **self.values}) + "\n")


def _shown(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


# --- publishing ----------------------------------------------------------------------------------------------


async def reconnecting_client(url: str) -> NatsClient:
    """A publisher's connection that rides out restarts and outages (reconnects forever, quickly); ``url`` may
    list several servers, comma-separated, as ``NATS_URL`` does."""
    return await nats.connect(
        servers=url.split(","), max_reconnect_attempts=-1, reconnect_time_wait=0.2, connect_timeout=2
    )


async def publish_until_stored(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = 120.0,
    figures: Figures | None = None,
) -> api.PubAck:
    """Publish, and publish again (the same ``Nats-Msg-Id``) after a transient error, until JetStream stores it."""
    with anyio.fail_after(timeout):
        while True:
            try:
                return await js.publish(subject, payload, headers=dict(headers) if headers else None, timeout=5)
            except PUBLISH_TRANSIENT:
                if figures is not None:
                    figures.add("publish_retries")
                await anyio.sleep(0.2)


async def publish_next(c: Client, want: Expectation, sessions: int, *, figures: Figures | None = None) -> int:
    """Publish ``want``'s next event (its create, then updates) with ``sessions``; its stream sequence."""
    verb = "create" if want.events == 0 else "update"
    body = event(verb, want.sandbox_id, {"spec": spec(want.email, sessions=sessions)}, event_id=want.next_event_id())
    want.sessions = sessions
    subject = f"sandbox.{verb}.{want.sandbox_id}"
    ack = await publish_until_stored(c.js, subject, body.to_json(), {"Nats-Msg-Id": body.id}, figures=figures)
    if figures is not None:
        figures.add("events")
    return int(ack.seq)


# --- reading back --------------------------------------------------------------------------------------------


async def read_stream(js: JetStreamContext, stream: str, subjects: str = ">") -> list[Msg]:
    """Every message the stream holds, oldest first (an ephemeral consumer, no acks)."""
    info = await js.stream_info(stream)
    total = int(info.state.messages or 0)
    out: list[Msg] = []
    if total == 0:
        return out
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL, inactive_threshold=30.0
    )
    sub = await js.pull_subscribe(subjects, stream=stream, config=config)
    try:
        with anyio.fail_after(120):
            while len(out) < total:
                try:
                    out.extend(await sub.fetch(64, timeout=2))
                except TimeoutError:  # nats' or asyncio's: an empty window
                    if out and out[-1].metadata.num_pending == 0:
                        break
    finally:
        await sub.unsubscribe()
    return out


# --- processes and probes ------------------------------------------------------------------------------------


def unexpected_exits(processes: list[ServiceProcess], *, killed: set[int]) -> list[str]:
    """The processes that ended although nobody killed them: pid, exit code and the tail of their log."""
    found = []
    for process in processes:
        code = process.process.poll() if process.process is not None else None
        if code is not None and process.pid not in killed:
            found.append(f"pid {process.pid} exited {code}: ...{process.output()[-2000:]}")
    return found


@asynccontextmanager
async def exits_fail_fast(processes: list[ServiceProcess], *, killed: set[int] | None = None) -> AsyncIterator[None]:
    """Run the block, failing it at once (not at its deadline) when a process exits that nobody killed."""

    async def watch() -> None:
        while not (found := unexpected_exits(processes, killed=killed or set())):
            await anyio.sleep(0.2)
        raise AssertionError(f"a sandboxd process exited: {found}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        yield
        tg.cancel_scope.cancel()


def readyz(port: int) -> int | None:
    """The status code of ``/readyz`` (None when nothing answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


async def wait_readyz(port: int, wanted: int, *, timeout: float) -> float:
    """Poll ``/readyz`` until it answers ``wanted``; how long that took, s."""
    start = time.monotonic()
    with anyio.fail_after(timeout):
        while await anyio.to_thread.run_sync(readyz, port) != wanted:
            await anyio.sleep(0.1)
    return time.monotonic() - start


def occurrences(needles: list[bytes], haystacks: Iterator[tuple[str, bytes]]) -> dict[str, int]:
    """How often any of ``needles`` appears in each named haystack (only those where it does)."""
    found: dict[str, int] = {}
    for name, data in haystacks:
        count = sum(data.count(needle) for needle in needles)
        if count:
            found[name] = found.get(name, 0) + count
    return found
