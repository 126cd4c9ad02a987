"""Kubernetes applier benchmark: ``python -m bench.kube``. Prints figures; asserts nothing.

One throwaway kube-apiserver + etcd (the test harness, ``tests/support/kubeapi.py``), then, for N sandboxes
each (distinct owners, so distinct namespaces; every run creates its own):

1. **plain**: a bare kubernetes-asyncio loop, the same server-side apply calls (``PATCH`` with
   ``application/apply-patch+yaml``, one field manager, ``force``, ``fieldValidation=Strict``), the Namespace
   first and then the rest of a sandbox ``apply_concurrency`` at a time, ``concurrency`` sandboxes at once. No
   inventory, no prune, no error translation, no framework;
2. **applier**: ``KubernetesApplier.apply`` over the same kind of rendered sandboxes with the same concurrency,
   its Observer (``observe``) running as the service runs it: the watch cache answers the prune inventory and
   which objects are unchanged;
3. **service**: the whole service (a real nats-server, intake, keyed queue, reconcile, status) with its own
   applier and Observer: N create events published, timed until every status record says the objects are applied.

Each round runs plain, applier and service on fresh sandboxes, in an order that turns by one place every round
(on a shared machine the load moves by more than the goal's margin within minutes: every run takes every place),
and plain and applier re-apply theirs (the steady state: the server writes nothing), so the API server's growing
object count weighs on all alike. Each run has the
watches its subject has and no others: none for plain, the applier's while it runs (``observing``), the service's
own. For each create run the API server's requests per sandbox (by verb and resource) and the CPU per sandbox of
the bench process, kube-apiserver and etcd are printed (``Meter``; the nats-server's is not counted). Medians over
the rounds are reported, with every round's figure and the ratios within each round; ratios are applier (or
service) / plain, goals ≥ 0.8 for a create, ≥ 1.0 for a re-apply. The machine's load average is printed: on a
shared machine the figures move with it.

Then **the API server's load**: ``--resync-n`` sandboxes (1,000) created through the applier, and once the watch
cache has seen them, one steady-state resync (every sandbox applied again, unchanged), timed beside the plain
loop re-applying the same number, with the requests the API server counted (its own ``apiserver_request_total``,
resource requests but watches, the server's own few background requests included) per sandbox; goal ≤ 1.
Last, **the cache's memory at** ``--memory-n`` **sandboxes** (10,000): the metadata the feeds deliver for one
real sandbox, copied into that many namespaces and fed to a fresh ``Inventory`` (every object confirmed, as after
a pass), measured with ``tracemalloc``; creating 130,000 objects for real would take this machine most of an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import nats
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient

from bench.spine import event, publish_all, service_settings, spec
from sandboxd import naming
from sandboxd.adapters.kubernetes import KubernetesApplier
from sandboxd.adapters.kubernetes.inventory import Inventory, digest, live_of
from sandboxd.adapters.kubernetes.resources import CLUSTER_WATCHED, NAMESPACE, STATEFUL_SET, resource_of
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.app.service import Service
from sandboxd.models.spec import SandboxSpec
from sandboxd.models.status import Phase, SandboxStatus
from sandboxd.render import RenderedSandbox, RenderRequest, render
from sandboxd.settings import ApplierSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.kubeapi import KubeAPIServer  # importable once tests/ is on the path

FIELD_MANAGER = "sandboxd"
APPLY_PATCH = "application/apply-patch+yaml"


def rendered_batch(prefix: str, count: int) -> list[RenderedSandbox]:
    runtime = service_settings("nats://unused").runtime
    out = []
    for n in range(count):
        sandbox_id = f"{prefix}-{n:04d}"
        request = RenderRequest(
            sandbox_id=sandbox_id, spec=SandboxSpec.model_validate(spec(f"{sandbox_id}@bench.io", 2))
        )
        out.append(render(request, runtime))
    return out


async def bounded(
    calls: Sequence[Callable[[], Awaitable[Any]]], limit: int, *, done: Callable[[], None] | None = None
) -> None:
    slots = asyncio.Semaphore(limit)

    async def run(call: Callable[[], Awaitable[Any]]) -> None:
        async with slots:
            await call()
        if done is not None:
            done()

    await asyncio.gather(*(run(call) for call in calls))


async def plain_apply(api: ApiClient, sandbox: RenderedSandbox, apply_concurrency: int) -> None:
    """The baseline: the same SSA calls, nothing else."""

    async def one(manifest: Any) -> None:
        await api.call_api(
            resource_of(manifest).item(manifest.name, manifest.namespace),
            "PATCH",
            query_params=[("fieldManager", FIELD_MANAGER), ("fieldValidation", "Strict"), ("force", "true")],
            header_params={"Accept": "application/json", "Content-Type": APPLY_PATCH},
            body=dict(manifest.body),
            auth_settings=["BearerToken"],
            response_types_map={200: "object", 201: "object"},
            _return_http_data_only=True,
            _request_timeout=30,
        )

    namespace, *rest = sandbox.manifests
    await one(namespace)
    await bounded([partial(one, m) for m in rest], apply_concurrency)


async def timed(calls: Sequence[Callable[[], Awaitable[Any]]], limit: int, *, ramp: list[float] | None = None) -> float:
    """Sandboxes per second for ``calls`` run ``limit`` at once; ``ramp`` gets the seconds until the first was done."""
    start = time.perf_counter()
    firsts: list[float] = []
    await bounded(calls, limit, done=lambda: firsts.append(time.perf_counter() - start) if not firsts else None)
    if ramp is not None:
        ramp.append(firsts[0])
    return len(calls) / (time.perf_counter() - start)


async def plain_run(
    kubeconfig: Path,
    batch: list[RenderedSandbox],
    *,
    concurrency: int,
    per_sandbox: int,
    ramp: list[float] | None = None,
) -> float:
    api = await kube_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        return await timed([partial(plain_apply, api, s, per_sandbox) for s in batch], concurrency, ramp=ramp)
    finally:
        await api.close()


async def applier_run(
    applier: KubernetesApplier, batch: list[RenderedSandbox], *, concurrency: int, ramp: list[float] | None = None
) -> float:
    return await timed([partial(applier.apply, s, generation=1) for s in batch], concurrency, ramp=ramp)


async def service_run(kubeconfig: Path, count: int, *, concurrency: int, meter: Meter | None = None) -> float:
    """Create events published at once → every status record applied, sandboxes per second."""
    with tempfile.TemporaryDirectory() as tmp, NatsServer(store_dir=Path(tmp)) as server:
        settings = service_settings(server.url, concurrency=concurrency)
        applier = await KubernetesApplier.from_settings(ApplierSettings(kind="kubernetes", kubeconfig=str(kubeconfig)))
        service = Service(settings, applier=applier, render=render)
        stop = anyio.Event()
        prefix = f"svc{uuid.uuid4().hex[:4]}"
        items = []
        for n in range(count):
            sandbox_id = f"{prefix}-{n:04d}"
            created = event("create", sandbox_id, {"spec": spec(f"{sandbox_id}@bench.io", 2)})
            items.append((naming.event_subject("create", sandbox_id), created.to_json(), created.id))
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run, stop)
            # Ready, and its watch cache filled: the creates are timed, not the start-up list of the whole cluster.
            while not (service.health.ready and covering(applier)):  # noqa: ASYNC110 - plain records
                await anyio.sleep(0.01)
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            with meter.run() if meter else nullcontext():
                start = time.perf_counter()
                await publish_all(js, items)
                await applied_statuses(js, count, ramp=None if meter is None else meter.ramp, start=start)
                elapsed = time.perf_counter() - start
            await nc.close()
            stop.set()
        return count / elapsed


async def applied_statuses(js: Any, count: int, *, ramp: list[float] | None = None, start: float = 0.0) -> None:
    """Until ``count`` status records say applied; ``ramp`` gets the seconds from ``start`` until the first did."""
    kv = await js.key_value(naming.STATUS_BUCKET)
    watcher = await kv.watchall()
    done: set[str] = set()
    try:
        async for entry in watcher:
            if entry is None or entry.value is None:
                continue
            status = SandboxStatus.model_validate_json(entry.value)
            if status.observed_generation >= 1 and status.phase in (Phase.PROVISIONING, Phase.READY):
                if not done and ramp is not None:
                    ramp.append(time.perf_counter() - start)
                done.add(entry.key)
            if len(done) >= count:
                return
    finally:
        await watcher.stop()


def requests_counted(server: KubeAPIServer) -> Counter[str]:
    """The API server's ``apiserver_request_total`` for resource requests, per ``"VERB resource"``, watches left out."""
    status, body = server.request("GET", "/metrics")
    assert status == 200, status
    counted: Counter[str] = Counter()
    for row in body.decode().splitlines():
        if not row.startswith("apiserver_request_total{"):
            continue
        labels, value = row.rsplit(" ", 1)
        fields = dict(part.split("=", 1) for part in labels[len("apiserver_request_total{") : -1].split('",'))
        verb, resource = fields["verb"].strip('"'), fields["resource"].strip('"')
        if resource and verb != "WATCH":
            counted[f"{verb} {resource}"] += int(float(value))
    return counted


def by_verb(counted: Counter[str]) -> dict[str, int]:
    verbs: Counter[str] = Counter()
    for key, value in counted.items():
        verbs[key.split(" ", 1)[0]] += value
    return dict(verbs)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc``; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Meter:
    """What one run cost: the API server's requests and the CPU of the bench process, kube-apiserver and etcd."""

    server: KubeAPIServer
    requests: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    #: Seconds from the start of each run until its first sandbox was done (the pipeline filling).
    ramp: list[float] = field(default_factory=list)
    runs: int = 0

    def _cpu_now(self) -> dict[str, float]:
        found = {name: _cpu_s(proc.pid) for name, proc in self.server._procs}  # the harness keeps its children private
        return {"bench": time.process_time(), **found}

    @contextmanager
    def run(self) -> Iterator[None]:
        requests, cpu = requests_counted(self.server), self._cpu_now()
        yield
        now = self._cpu_now()  # before reading the metrics, which costs the bench process some CPU
        self.requests.update(requests_counted(self.server) - requests)
        for name, seconds in now.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds - cpu.get(name, 0.0)
        self.runs += 1

    def report(self, label: str, sandboxes: int) -> None:
        """Requests and CPU per sandbox, over the ``sandboxes`` every run of this meter created."""
        per = {key: value / sandboxes for key, value in sorted(self.requests.items()) if value}
        total = sum(self.requests.values()) / sandboxes
        print(f"{label}: {total:.2f} requests per sandbox: " + ", ".join(f"{k} {v:.2f}" for k, v in per.items()))
        if self.ramp:
            print(f"{label}: first sandbox done after (median of runs) {statistics.median(self.ramp):.2f}s")
        print(
            f"{label}: CPU ms per sandbox: "
            + ", ".join(f"{name} {1000 * seconds / sandboxes:.1f}" for name, seconds in sorted(self.cpu.items()))
        )


def covering(applier: KubernetesApplier) -> bool:
    """Whether the applier's watch cache has listed every watched kind (its passes then use it)."""
    return all(applier.inventory.covers(resource) for resource in CLUSTER_WATCHED)


@asynccontextmanager
async def observing(applier: KubernetesApplier) -> AsyncIterator[None]:
    """The applier's Observer running, as the service runs it, once its watch cache covers every watched kind.

    Only the applier's runs have it: the plain loop has no watches, the service runs its own.
    """
    async with anyio.create_task_group() as tg:
        tg.start_soon(applier.observe, lambda _sandbox: None)
        with anyio.fail_after(300):
            while not covering(applier):  # noqa: ASYNC110 - the cache is a plain record the feeds update
                await anyio.sleep(0.05)
        yield
        tg.cancel_scope.cancel()


async def until_cached(applier: KubernetesApplier, batch: Sequence[RenderedSandbox]) -> None:
    """Until the applier's watch cache shows every watched object of ``batch`` as last applied."""

    def pending() -> int:
        return sum(
            1
            for sandbox in batch
            for m in sandbox.manifests
            if m.kind != "Secret"
            and (
                (live := applier.inventory.get(resource_of(m), m.name, m.namespace)) is None
                or live.applied != digest(m.body)
            )
        )

    with anyio.fail_after(300):
        while pending():  # noqa: ASYNC110 - the cache is a plain record the feeds update
            await anyio.sleep(0.1)


async def cache_memory(kubeconfig: Path, sample: RenderedSandbox, count: int) -> tuple[float, int]:
    """MB the inventory holds for ``count`` copies of ``sample``'s live metadata, and the objects held."""
    api = await kube_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        found: dict[str, list[dict[str, Any]]] = {}
        for resource in CLUSTER_WATCHED:
            full = resource is STATEFUL_SET  # the readiness feed takes whole StatefulSets
            where = None if resource is NAMESPACE else sample.namespace
            items = await api.call_api(
                resource.collection(where),
                "GET",
                query_params=[("labelSelector", f"openova.io/sandbox={sample.sandbox_id}")],
                header_params={
                    "Accept": "application/json"
                    if full
                    else "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
                },
                auth_settings=["BearerToken"],
                response_types_map={200: "object"},
                _return_http_data_only=True,
            )
            found[resource.kind] = list(items.get("items") or [])
    finally:
        await api.close()
    copies = {
        kind: [_renamed(item, sample.namespace, n) for n in range(count) for item in items]
        for kind, items in found.items()
    }
    tracemalloc.start()
    inventory = Inventory(FIELD_MANAGER)
    for resource in CLUSTER_WATCHED:
        inventory.relisted(resource, copies[resource.kind])
        for item in copies[resource.kind]:
            inventory.confirm(live_of(resource, item, field_manager=FIELD_MANAGER))
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return held / 1e6, sum(len(items) for items in copies.values())


def _renamed(item: dict[str, Any], namespace: str, n: int) -> dict[str, Any]:
    """``item`` moved to the ``n``-th copy of ``namespace`` (new strings, as a real list would bring)."""
    metadata = dict(item["metadata"])
    new = f"{namespace}-{n:05d}"
    if metadata.get("namespace"):
        metadata["namespace"] = new
    else:
        metadata["name"] = new
    metadata["resourceVersion"] = str(1_000_000 + n)
    return {**item, "metadata": metadata}


def line(label: str, value: str, goal: str = "") -> None:
    print(f"{label:<62} {value:>12}  {goal}")


async def main(args: argparse.Namespace) -> None:
    n, concurrency, per_sandbox = args.n, args.concurrency, args.apply_concurrency
    # The harness's /24 Service range holds ~250 Services (one per sandbox); a later flag wins, so widen it.
    with KubeAPIServer.start(extra_apiserver_args=["--service-cluster-ip-range=10.0.0.0/16"]) as server:
        kubeconfig = server.kubeconfig_path
        print(
            f"kube benchmark: N={n} sandboxes per run (13 objects each), {concurrency} sandboxes at once, "
            f"{per_sandbox} objects at once, {args.rounds} rounds; kube-apiserver ready in "
            f"{server.startup_seconds:.1f}s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        settings = ApplierSettings(kind="kubernetes", kubeconfig=str(kubeconfig), apply_concurrency=per_sandbox)
        applier = await KubernetesApplier.from_settings(settings)
        rates: dict[str, list[float]] = {key: [] for key in ("plain", "applier", "service", "plain-again", "again")}
        meters = {key: Meter(server) for key in ("plain", "applier", "service")}
        try:
            for round_ in range(args.rounds):
                plain_set, applier_set = rendered_batch(f"plain{round_}", n), rendered_batch(f"appl{round_}", n)

                async def plain_create(batch: list[RenderedSandbox] = plain_set) -> None:
                    with meters["plain"].run():
                        rates["plain"].append(
                            await plain_run(
                                kubeconfig,
                                batch,
                                concurrency=concurrency,
                                per_sandbox=per_sandbox,
                                ramp=meters["plain"].ramp,
                            )
                        )

                async def applier_create(batch: list[RenderedSandbox] = applier_set) -> None:
                    async with observing(applier):
                        with meters["applier"].run():
                            rates["applier"].append(
                                await applier_run(applier, batch, concurrency=concurrency, ramp=meters["applier"].ramp)
                            )
                        await until_cached(applier, batch)
                        rates["again"].append(await applier_run(applier, batch, concurrency=concurrency))

                async def service_create() -> None:
                    rates["service"].append(
                        await service_run(kubeconfig, n, concurrency=concurrency, meter=meters["service"])
                    )

                runs = [plain_create, applier_create, service_create]
                for run in runs[round_ % 3 :] + runs[: round_ % 3]:  # each takes each place in turn
                    await run()
                rates["plain-again"].append(
                    await plain_run(kubeconfig, plain_set, concurrency=concurrency, per_sandbox=per_sandbox)
                )
            report(rates)
            for key, meter in meters.items():
                meter.report(f"create, {key}", n * args.rounds)
            if args.resync_n:
                await resync(server, applier, args.resync_n, concurrency=concurrency, per_sandbox=per_sandbox)
            if args.memory_n:
                megabytes, objects = await cache_memory(kubeconfig, rendered_batch("appl0", 1)[0], args.memory_n)
                line(
                    f"watch cache at {args.memory_n:,} sandboxes ({objects:,} objects), MB (tracemalloc)",
                    f"{megabytes:,.1f}",
                )
        finally:
            await applier.aclose()


def report(rates: dict[str, list[float]]) -> None:
    """Medians over the rounds, their ratios, and the ratios within each round (the same minute's load)."""
    median = {key: statistics.median(values) for key, values in rates.items()}
    line("create, plain kubernetes-asyncio SSA loop, sandboxes/s", f"{median['plain']:,.1f}")
    line("create, KubernetesApplier.apply, sandboxes/s", f"{median['applier']:,.1f}")
    line("create through the service (publish → status applied), sandboxes/s", f"{median['service']:,.1f}")
    line("ratio applier / plain (create)", f"{median['applier'] / median['plain']:.2f}", "goal ≥ 0.8")
    line("ratio service / plain (create)", f"{median['service'] / median['plain']:.2f}", "goal ≥ 0.8")
    line("re-apply unchanged, plain, sandboxes/s", f"{median['plain-again']:,.1f}")
    line("re-apply unchanged, KubernetesApplier.apply, sandboxes/s", f"{median['again']:,.1f}")
    line("ratio applier / plain (re-apply)", f"{median['again'] / median['plain-again']:.2f}", "goal ≥ 1.0")
    print("per round, sandboxes/s: " + "; ".join(f"{k} {', '.join(f'{v:.1f}' for v in vs)}" for k, vs in rates.items()))
    for key in ("applier", "service"):
        within = [mine / plain for mine, plain in zip(rates[key], rates["plain"], strict=True)]
        print(
            f"per round, ratio {key} / plain (create): {', '.join(f'{r:.2f}' for r in within)}; "
            f"median {statistics.median(within):.2f}"
        )


async def resync(
    server: KubeAPIServer, applier: KubernetesApplier, count: int, *, concurrency: int, per_sandbox: int
) -> None:
    """``count`` sandboxes created, then one steady-state resync of them: rate and requests per sandbox."""
    batch = rendered_batch("resync", count)
    async with observing(applier):
        await applier_run(applier, batch, concurrency=concurrency)
        await until_cached(applier, batch)
        before = requests_counted(server)
        rate = await applier_run(applier, batch, concurrency=concurrency)
        counted = requests_counted(server) - before
    plain_before = requests_counted(server)
    plain_rate = await plain_run(server.kubeconfig_path, batch, concurrency=concurrency, per_sandbox=per_sandbox)
    plain_counted = requests_counted(server) - plain_before
    total, plain_total = sum(counted.values()), sum(plain_counted.values())
    line(f"steady-state resync of {count:,} unchanged sandboxes, applier, sandboxes/s", f"{rate:,.1f}")
    line(f"the same {count:,} re-applied by the plain SSA loop, sandboxes/s", f"{plain_rate:,.1f}")
    line("ratio applier / plain (resync)", f"{rate / plain_rate:.2f}", "goal ≥ 1.0")
    line("API server requests per sandbox, applier resync", f"{total / count:.2f}", "goal ≤ 1")
    line("API server requests per sandbox, plain re-apply", f"{plain_total / count:.2f}")
    print(f"requests by verb, applier resync: {by_verb(counted)}; plain: {by_verb(plain_counted)}")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="sandboxes per run")
    parser.add_argument("--concurrency", type=int, default=32, help="sandboxes applied at once")
    parser.add_argument("--apply-concurrency", type=int, default=8, help="objects of one sandbox applied at once")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every run; medians are reported")
    parser.add_argument("--resync-n", type=int, default=1000, help="sandboxes of the steady-state resync (0: skip)")
    parser.add_argument("--memory-n", type=int, default=10000, help="sandboxes of the cache memory figure (0: skip)")
    asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    cli()
