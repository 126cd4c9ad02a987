"""Kubernetes applier benchmark: ``python -m bench.kube``. Prints figures; asserts nothing.

One throwaway kube-apiserver + etcd (the test harness, ``tests/support/kubeapi.py``), then, for N sandboxes
each (distinct owners, so distinct namespaces; every run creates its own):

1. **plain**: a bare kubernetes-asyncio loop, the same server-side apply calls (``PATCH`` with
   ``application/apply-patch+yaml``, one field manager, ``force``, ``fieldValidation=Strict``), the Namespace
   first and then the rest of a sandbox ``apply_concurrency`` at a time, ``concurrency`` sandboxes at once. No
   inventory, no prune, no error translation, no framework;
2. **applier**: ``KubernetesApplier.apply`` over the same kind of rendered sandboxes with the same concurrency
   (it also reads the Namespace and lists the sandbox's objects for ``changed`` and prune);
3. **service**: the whole service (a real nats-server, intake, keyed queue, reconcile, status) with that applier
   and its Observer: N create events published, timed until every status record says the objects are applied.

Each round runs plain, applier and service on fresh sandboxes, then plain and applier re-apply theirs (the steady
state: the server writes nothing), so the API server's growing object count weighs on all alike. Medians over the
rounds are reported, with every round's figure; ratios are applier (or service) / plain, goal ≥ 0.8. The machine's
load average is printed: on a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
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
from sandboxd.adapters.kubernetes.resources import resource_of
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


async def bounded(calls: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> None:
    slots = asyncio.Semaphore(limit)

    async def run(call: Callable[[], Awaitable[Any]]) -> None:
        async with slots:
            await call()

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


async def timed(calls: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> float:
    """Sandboxes per second for ``calls`` run ``limit`` at once."""
    start = time.perf_counter()
    await bounded(calls, limit)
    return len(calls) / (time.perf_counter() - start)


async def plain_run(kubeconfig: Path, batch: list[RenderedSandbox], *, concurrency: int, per_sandbox: int) -> float:
    api = await kube_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        return await timed([partial(plain_apply, api, s, per_sandbox) for s in batch], concurrency)
    finally:
        await api.close()


async def applier_run(applier: KubernetesApplier, batch: list[RenderedSandbox], *, concurrency: int) -> float:
    return await timed([partial(applier.apply, s, generation=1) for s in batch], concurrency)


async def service_run(kubeconfig: Path, count: int, *, concurrency: int) -> float:
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
            while not service.health.ready:  # noqa: ASYNC110 - Health is a plain record the service updates
                await anyio.sleep(0.01)
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            start = time.perf_counter()
            await publish_all(js, items)
            await applied_statuses(js, count)
            elapsed = time.perf_counter() - start
            await nc.close()
            stop.set()
        return count / elapsed


async def applied_statuses(js: Any, count: int) -> None:
    kv = await js.key_value(naming.STATUS_BUCKET)
    watcher = await kv.watchall()
    done: set[str] = set()
    try:
        async for entry in watcher:
            if entry is None or entry.value is None:
                continue
            status = SandboxStatus.model_validate_json(entry.value)
            if status.observed_generation >= 1 and status.phase in (Phase.PROVISIONING, Phase.READY):
                done.add(entry.key)
            if len(done) >= count:
                return
    finally:
        await watcher.stop()


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
        try:
            for round_ in range(args.rounds):
                plain_set, applier_set = rendered_batch(f"plain{round_}", n), rendered_batch(f"appl{round_}", n)
                rates["plain"].append(
                    await plain_run(kubeconfig, plain_set, concurrency=concurrency, per_sandbox=per_sandbox)
                )
                rates["applier"].append(await applier_run(applier, applier_set, concurrency=concurrency))
                rates["service"].append(await service_run(kubeconfig, n, concurrency=concurrency))
                rates["plain-again"].append(
                    await plain_run(kubeconfig, plain_set, concurrency=concurrency, per_sandbox=per_sandbox)
                )
                rates["again"].append(await applier_run(applier, applier_set, concurrency=concurrency))
        finally:
            await applier.aclose()
        median = {key: statistics.median(values) for key, values in rates.items()}
        line("create, plain kubernetes-asyncio SSA loop, sandboxes/s", f"{median['plain']:,.1f}")
        line("create, KubernetesApplier.apply, sandboxes/s", f"{median['applier']:,.1f}")
        line("create through the service (publish → status applied), sandboxes/s", f"{median['service']:,.1f}")
        line("ratio applier / plain (create)", f"{median['applier'] / median['plain']:.2f}", "goal ≥ 0.8")
        line("ratio service / plain (create)", f"{median['service'] / median['plain']:.2f}", "goal ≥ 0.8")
        line("re-apply unchanged, plain, sandboxes/s", f"{median['plain-again']:,.1f}")
        line("re-apply unchanged, KubernetesApplier.apply, sandboxes/s", f"{median['again']:,.1f}")
        line("ratio applier / plain (re-apply)", f"{median['again'] / median['plain-again']:.2f}", "goal ≥ 0.8")
        print(
            "per round, sandboxes/s: "
            + "; ".join(f"{k} {', '.join(f'{v:.1f}' for v in vs)}" for k, vs in rates.items())
        )


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="sandboxes per run")
    parser.add_argument("--concurrency", type=int, default=32, help="sandboxes applied at once")
    parser.add_argument("--apply-concurrency", type=int, default=8, help="objects of one sandbox applied at once")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every run; medians are reported")
    asyncio.run(main(parser.parse_args(argv)))


if __name__ == "__main__":
    cli()
