"""Scale benchmark, part of `make bench` (python -m bench.scale). Prints figures; asserts nothing.

The service runs in processes of its own here, so what is measured is the service alone (the bench process
publishes and watches the status bucket; ``bench.spine`` runs everything in one process):

1. **Scale**: a fresh service process given N new sandboxes (N = 10,000, then 50,000, each on a fresh server):
   its CPU per sandbox from the first publish to the last status written, the share of it the garbage collector
   took, and its resident set size once it is settled and one idle sweep has looked at every sandbox (the
   sweep parses what the desired-state watch still held as bytes: that is the steady state, which a run that
   ends before the first sweep would not show). Printed with the ratios 50k / 10k.
2. **Replicas**: new sandboxes/s, publish → status written, with one service process and with two processes on
   the same durable consumer, same N, same run, each on a fresh server.

A replica is ``python -m bench.scale --replica URL``: the code path of ``sandboxd run`` (``cli.serving.serve``,
which tunes the collector, and ``app.service.Service``) with bench.spine's settings and its no-op applier
instead of the one ``SANDBOXD_APPLIER`` names (no cluster, no files: the service's own cost). It reads commands
on stdin, one per line, and answers each with one JSON line: ``mark`` (its CPU and GC time now), ``report``
(waits until its queue is idle, runs one idle sweep, then its RSS, CPU, GC time and what it tracks); end of
input stops it (a drain, as SIGTERM would).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import anyio
import nats
from nats.js import JetStreamContext

from bench.spine import (
    NoopApplier,
    StatusCounter,
    line,
    payloads,
    publish_all,
    rss_mb,
    server,
    service_settings,
    spec,
)
from sandboxd.adapters.jetstream.activity import DesiredFeed
from sandboxd.app.service import Service
from sandboxd.cli.serving import serve
from sandboxd.models.desired import DesiredState
from sandboxd.models.spec import OrgRef, Owner, SandboxSpec
from sandboxd.reconcile.ports import Versioned
from sandboxd.render import render

#: Sandboxes in the two scale runs; the ratio of their figures is the goal (≤ 1.10 for CPU per sandbox).
SCALE_SIZES = (10_000, 50_000)

#: How long a replica may take to drain once told to stop (its figures are taken by then), s.
STOP_GRACE_S = 60.0


# --- the replica process ------------------------------------------------------------------------------------


class GcClock:
    """Time the collector spends, from ``gc.callbacks`` (start and stop of every collection)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started


async def replica(url: str) -> int:
    svc = Service(service_settings(url), applier=NoopApplier(), render=render)
    gc_clock = GcClock()
    stop = anyio.Event()

    def answer(**figures: Any) -> None:
        print(json.dumps({"cpu_s": time.process_time(), "gc_s": gc_clock.seconds, **figures}), flush=True)

    async def commands() -> None:
        while not svc.health.ready:  # noqa: ASYNC110 - Health is a plain record the service updates
            await anyio.sleep(0.01)
        answer(ready=True)
        stdin = anyio.wrap_file(sys.stdin)
        async for command in stdin:
            if command.strip() == "report":
                answer(**await settled(svc))
            else:
                answer()
        stop.set()

    async def run(stop: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(commands)
            await svc.run(stop)
            tg.cancel_scope.cancel()

    return await serve(run, connected=lambda: svc.health.connected, stop=stop)


async def settled(svc: Service) -> dict[str, Any]:
    """Once the queue is idle and one sweep has looked at every sandbox: what the process holds."""
    assert svc.queue is not None
    while not svc.queue.idle():  # noqa: ASYNC110 - the queue is a plain record
        await anyio.sleep(0.05)
    await svc.idle.sweeper.sweep_once()
    return {
        "rss_mb": rss_mb(),
        "tracked": len(svc.idle.desired),
        "passes": svc.queue.stats.passes,
        "collections": [g["collections"] for g in gc.get_stats()],
    }


# --- the bench process ----------------------------------------------------------------------------------------


@dataclass
class Replica:
    process: subprocess.Popen[str]

    @classmethod
    def start(cls, url: str) -> Replica:
        command = [sys.executable, "-m", "bench.scale", "--replica", url]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return cls(process)

    async def ask(self, command: str | None = None) -> dict[str, Any]:
        """Send ``command`` (None: just read) and wait for the one JSON line that answers it."""
        assert self.process.stdin is not None and self.process.stdout is not None
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        text = await anyio.to_thread.run_sync(self.process.stdout.readline)
        if not text:
            raise RuntimeError(f"the replica exited ({self.process.wait()}) before answering {command}")
        answer: dict[str, Any] = json.loads(text)
        return answer

    def stop(self) -> None:
        """End of input: the replica drains and exits (killed if its drain outlasts the grace twice over)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=2 * STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@asynccontextmanager
async def replicas(url: str, count: int) -> AsyncIterator[list[Replica]]:
    started = [Replica.start(url) for _ in range(count)]
    try:
        for one in started:
            await one.ask()  # ready
        yield started
    finally:
        for one in started:
            one.stop()


async def publish_until_status(url: str, count: int, prefix: str) -> float:
    """Publish ``count`` creates and wait until every status record is written; seconds from the first publish."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    counter = StatusCounter(js)
    items = payloads(count, prefix=prefix)
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(counter.run, count)
        await publish_all(js, items)
    await nc.close()
    return max(counter.seen.values()) - start


class NoRecords:
    """What the view asks the service's store for: it holds nothing here, so every record is parsed."""

    def held(self, key: str, revision: int) -> Versioned[DesiredState] | None:
        return None

    def decode(self, key: str, data: bytes, revision: int, *, remember: bool = True) -> Versioned[DesiredState]:
        return Versioned(DesiredState.model_validate_json(data), revision)


def desired_records(count: int) -> list[bytes]:
    """``count`` desired-state records as the bucket holds them (the spine's spec, one owner each)."""
    runtime_spec = SandboxSpec.model_validate(spec("user@bench.io", 1))
    now = datetime.now(UTC)
    return [
        DesiredState(
            sandbox_id=f"v-{n:05d}",
            spec=runtime_spec.model_copy(
                update={"owner": Owner(email=f"user{n}@bench.io", org_ref=OrgRef(slug="bench"))}
            ),
            owner_uid=f"user{n}-at-bench-io",
            generation=1,
            incarnation=n + 1,
            sequence=n + 1,
            event_id=uuid.uuid4().hex,
            accepted_at=now,
        ).to_json()
        for n in range(count)
    ]


def view_memory(count: int) -> tuple[float, float]:
    """MB held by the desired-state view for ``count`` sandboxes after a sweep's snapshot, and by the same records
    parsed and held as they come (what the view held before ``models.sharing``), both by ``tracemalloc``."""
    records = desired_records(count)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        parsed = [DesiredState.model_validate_json(data) for data in records]
        unshared = tracemalloc.get_traced_memory()[0] - base
        del parsed
        base = tracemalloc.get_traced_memory()[0]
        view = DesiredFeed(cast(JetStreamContext, None), records=NoRecords())
        for n, data in enumerate(records):
            view._apply(f"v-{n:05d}", data, n + 1, None)  # what the watch does with each entry
        view.snapshot()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return held / 1e6, unshared / 1e6


@dataclass(frozen=True)
class ScaleFigure:
    count: int
    rss_mb: float
    cpu_ms: float  # per sandbox
    gc_ms: float  # per sandbox, part of cpu_ms
    tracked: int
    collections: list[int]


async def scale_run(count: int) -> ScaleFigure:
    async with server() as srv, replicas(srv.url, 1) as (one,):
        before = await one.ask("mark")
        await publish_until_status(srv.url, count, "s")
        after = await one.ask("mark")
        report = await one.ask("report")
    return ScaleFigure(
        count=count,
        rss_mb=report["rss_mb"],
        cpu_ms=(after["cpu_s"] - before["cpu_s"]) / count * 1000,
        gc_ms=(after["gc_s"] - before["gc_s"]) / count * 1000,
        tracked=report["tracked"],
        collections=report["collections"],
    )


async def replicas_throughput(count: int, processes: int) -> tuple[float, list[int]]:
    """New sandboxes/s with ``processes`` service processes on one durable consumer; passes per process."""
    async with server() as srv, replicas(srv.url, processes) as started:
        elapsed = await publish_until_status(srv.url, count, "t")
        reports = [await one.ask("report") for one in started]
    return count / elapsed, [r["passes"] for r in reports]


async def main(args: argparse.Namespace) -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # a long run shows each figure as it comes
    print(f"scale benchmark: service processes of their own, sizes {args.sizes}, replicas N={args.n}")
    for size in args.sizes:
        held, unshared = view_memory(size)
        line(f"desired-state view, {size:,} sandboxes, MB (tracemalloc)", f"{held:.1f}")
        line("  the same records parsed and held as they come, MB", f"{unshared:.1f}")
    figures = []
    for size in args.sizes:
        f = await scale_run(size)
        line(f"service process, {f.count:,} sandboxes: RSS after a sweep, MB", f"{f.rss_mb:.0f}")
        line("  CPU per new sandbox, ms (of it GC; collections)", f"{f.cpu_ms:.3f} ({f.gc_ms:.3f}; {f.collections})")
        figures.append(f)
    if len(figures) == 2:
        small, large = figures
        line(
            f"ratio CPU per sandbox {large.count:,} / {small.count:,}",
            f"{large.cpu_ms / small.cpu_ms:.2f}",
            "goal ≤ 1.10",
        )
        line(f"RSS at {large.count:,}, MB", f"{large.rss_mb:.0f}", "goal ≤ 250")
    if args.n <= 0:
        return
    one, passes_one = await replicas_throughput(args.n, 1)
    line(f"one service process, new sandboxes/s (passes {passes_one})", f"{one:,.0f}")
    two, passes_two = await replicas_throughput(args.n, 2)
    line(f"two processes, one durable consumer (passes {passes_two})", f"{two:,.0f}")
    line("ratio two / one", f"{two / one:.2f}")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replica", metavar="URL", help="run one service process on URL (the bench starts these)")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SCALE_SIZES), help="sandboxes per scale run")
    parser.add_argument("--n", type=int, default=5000, help="sandboxes for the replica runs (0: none)")
    args = parser.parse_args(argv)
    if args.replica:
        sys.exit(asyncio.run(replica(args.replica)))
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
