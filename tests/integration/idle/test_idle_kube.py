"""The sibling scaler against a real kube-apiserver: real StatefulSets, a real nats-server, injected time.

The service runs with the Kubernetes applier (server-side apply, field manager ``sandboxd``); the scaler
(``ScalerProcess``, its own connection and field manager ``sandboxd-scaler``) patches the ``scale``
subresource. What must hold: the scaler's count is the count the next reconcile renders, so replicas never
flap; two replicas deciding at once cause one command and one scale; a suspended sandbox stays at zero.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from kubernetes_asyncio.client import AppsV1Api
from prometheus_client import generate_latest

from sandboxd import naming
from sandboxd.adapters.jetstream.publishing import publish_scale
from sandboxd.adapters.jetstream.stores import KvStore
from sandboxd.adapters.kubernetes import KubernetesApplier, WatchTiming
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.app.idle import IdleLifecycle, command_outbox, idle_lifecycle
from sandboxd.app.scaler import ScalerProcess
from sandboxd.app.service import Service
from sandboxd.models.desired import DesiredState
from sandboxd.models.status import Phase, SandboxStatus
from sandboxd.reconcile import scaling
from sandboxd.reconcile.idle import Action
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.settings import ApplierSettings, Settings
from sandboxd.telemetry.testing import prometheus_sample
from support import kuberaw
from support.bystanders import bystander_statefulset
from support.kube_fixtures import KubeTarget
from support.spine import Client, client, running_service, service_settings, unique_id

from .rig import (
    IDLE_ENV,
    FrozenClock,
    idle_of,
    minutes,
    report,
    running_scaler,
    scale_commands,
    scaler_config,
    seen,
    until,
)

pytestmark = [pytest.mark.nats, pytest.mark.kube, pytest.mark.anyio]


@pytest.fixture(autouse=True)
def idle_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in IDLE_ENV.items():
        monkeypatch.setenv(name, value)
    yield


@pytest.fixture
async def applier(kube_api: KubeTarget) -> AsyncIterator[KubernetesApplier]:
    settings = ApplierSettings(kind="kubernetes", kubeconfig=str(kube_api.kubeconfig_path), kube_request_timeout_s=10.0)
    built = await KubernetesApplier.from_settings(settings, watch_timing=WatchTiming(5.0))
    try:
        yield built
    finally:
        await built.aclose()


@asynccontextmanager
async def sweeper_only_replica(c: Client, settings: Settings, clock: FrozenClock) -> AsyncIterator[IdleLifecycle]:
    """Another service replica's idle lifecycle whose reconciles never come round (its kick goes nowhere), so
    whatever happens to the StatefulSet right after its decisions is the scaler's doing."""
    desired = KvStore(await c.js.key_value(naming.DESIRED_BUCKET), DesiredState)
    status = StatusWriter(KvStore(await c.js.key_value(naming.STATUS_BUCKET), SandboxStatus))
    replica = idle_lifecycle(
        c.js, settings, desired=desired, status=status, commands=command_outbox(c.js), kick=lambda _: None, clock=clock
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(replica.run)
        await until(lambda: replica.sweeper.stats.sweeps >= 1, what="the other replica's first sweep")
        try:
            yield replica
        finally:
            tg.cancel_scope.cancel()


async def statefulset(kube_api: KubeTarget, namespace: str, name: str = "pty-server") -> Any:
    async with kube_api.api_client() as api:
        return await AppsV1Api(api).read_namespaced_stateful_set(name, namespace)


async def replicas_become(kube_api: KubeTarget, namespace: str, count: int) -> Any:
    found: list[Any] = []

    async def check() -> bool:
        found[:] = [await statefulset(kube_api, namespace)]
        return bool(found[0].spec.replicas == count)

    await until(check, what=f"{namespace}/pty-server at {count} replicas")
    return found[0]


def counted(scaler: ScalerProcess, name: str, **labels: str) -> float:
    """A sample of the scaler's own metrics (OTel, exported on a Prometheus registry of the process's own)."""
    text = generate_latest(scaler.telemetry.registry).decode()
    return prometheus_sample(text, name, **labels) or 0.0


async def reconciled_again(c: Client, service: Service, sandbox_id: str) -> SandboxStatus:
    """Kick one more reconcile, as a resync does, and wait until a pass started after the kick has finished.

    Waits for the queue to be idle first: a pass already running (say, one more pass because the desired
    state moved under it) must not be mistaken for the kicked one.
    """
    queue = service.queue
    assert queue is not None
    await until(queue.idle, what="the queue to be idle")
    passes = queue.stats.passes
    queue.submit(sandbox_id)
    await until(lambda: queue.stats.passes > passes and queue.idle(), what="a reconcile pass")
    status = await c.status(sandbox_id)
    assert status is not None
    return status


async def test_the_scaler_scales_and_the_reconcile_agrees(
    fresh_nats_server: NatsServer, kube_api: KubeTarget, applier: KubernetesApplier
) -> None:
    clock, sid = FrozenClock(), unique_id()
    namespace = naming.namespace_for(naming.owner_uid(f"{sid}@acme.test").value)
    settings = service_settings(fresh_nats_server.url)
    config = scaler_config(fresh_nats_server.url, str(kube_api.kubeconfig_path))
    async with (
        client(fresh_nats_server.url) as c,
        running_service(settings, applier, clock=clock) as service,
        running_scaler(config) as scaler,
    ):
        await idle_of(service)
        await c.create(sid, f"{sid}@acme.test", sessions=2)
        await c.wait_status(sid, lambda s: s.phase is Phase.PROVISIONING and s.observed_generation == 1)
        assert (await statefulset(kube_api, namespace)).spec.replicas == 2
        async with sweeper_only_replica(c, settings, clock) as other:
            await seen(other, sid)
            await report(c.js, other, sid, minutes(1))
            idled = counted(scaler, "sandbox_controller_idle_timeout_events_total", namespace=namespace)

            await other.sweeper.sweep_once(minutes(31))
            before = await replicas_become(kube_api, namespace, 0)  # the scaler did it: nobody kicked a reconcile
            idle_events = "sandbox_controller_idle_timeout_events_total"
            await until(lambda: counted(scaler, idle_events, namespace=namespace) > idled)
            assert counted(scaler, idle_events, namespace=namespace) == idled + 1

            status = await reconciled_again(c, service, sid)  # a resync: renders the same count
            assert status.phase is Phase.IDLE and status.observed_generation == 2
            for _ in range(3):
                await reconciled_again(c, service, sid)
                await other.sweeper.sweep_once(minutes(60))
            after = await statefulset(kube_api, namespace)
            assert after.spec.replicas == 0
            assert after.metadata.generation == before.metadata.generation  # no flapping: the spec never moved
            assert len(await scale_commands(c.js, sid)) == 0  # every command was acked; none was added

            woke = counted(scaler, "sandbox_controller_idle_wake_events_total", namespace=namespace, reason="Active")
            await report(c.js, other, sid, minutes(70))
            await other.sweeper.sweep_once(minutes(71))
            await replicas_become(kube_api, namespace, 2)
            wake_events = "sandbox_controller_idle_wake_events_total"
            await until(lambda: counted(scaler, wake_events, namespace=namespace, reason="Active") > woke)
            status = await reconciled_again(c, service, sid)
            assert status.phase is Phase.PROVISIONING and status.idle_since is None  # no kubelet: never ready
            assert (await statefulset(kube_api, namespace)).spec.replicas == 2
        assert scaler.disposition is not None and scaler.disposition.counts["term"] == 0


async def test_two_replicas_deciding_at_once_cause_one_command_and_one_scale(
    fresh_nats_server: NatsServer, kube_api: KubeTarget, applier: KubernetesApplier
) -> None:
    clock, sid = FrozenClock(), unique_id()
    namespace = naming.namespace_for(naming.owner_uid(f"{sid}@acme.test").value)
    settings = service_settings(fresh_nats_server.url)
    async with client(fresh_nats_server.url) as c, running_service(settings, applier, clock=clock) as service:
        await idle_of(service)
        await c.create(sid, f"{sid}@acme.test", sessions=3)
        await c.wait_status(sid, lambda s: s.observed_generation == 1)
        async with sweeper_only_replica(c, settings, clock) as one, sweeper_only_replica(c, settings, clock) as two:
            await seen(one, sid)
            await seen(two, sid)
            async with anyio.create_task_group() as tg:
                tg.start_soon(one.sweeper.sweep_once, minutes(45))
                tg.start_soon(two.sweeper.sweep_once, minutes(45))
            assert one.sweeper.stats.lost_races + two.sweeper.stats.lost_races == 1
            assert one.sweeper.stats.idled + two.sweeper.stats.idled == 1
            [command] = await scale_commands(c.js, sid)
            assert command.command_id == f"{sid}:2:idle"
            _, duplicate = await publish_scale(c.js, command)  # a replica that publishes it again
            assert duplicate and len(await scale_commands(c.js, sid)) == 1
            config = scaler_config(fresh_nats_server.url, str(kube_api.kubeconfig_path))
            async with running_scaler(config) as scaler:
                await replicas_become(kube_api, namespace, 0)
                await until(lambda: scaler.disposition is not None and scaler.disposition.counts["ack"] >= 1)
                assert await scale_commands(c.js, sid) == []
                assert counted(scaler, "sandbox_controller_idle_timeout_events_total", namespace=namespace) == 1
            assert scaler.disposition is not None and scaler.disposition.counts["ack"] == 1
        status = await reconciled_again(c, service, sid)
        assert status.phase is Phase.IDLE and status.observed_generation == 2
        assert (await statefulset(kube_api, namespace)).spec.replicas == 0


async def test_a_suspended_sandbox_stays_at_zero_until_resumed(
    fresh_nats_server: NatsServer, kube_api: KubeTarget, applier: KubernetesApplier
) -> None:
    clock, sid = FrozenClock(), unique_id()
    namespace = naming.namespace_for(naming.owner_uid(f"{sid}@acme.test").value)
    settings = service_settings(fresh_nats_server.url)
    config = scaler_config(fresh_nats_server.url, str(kube_api.kubeconfig_path))
    async with (
        client(fresh_nats_server.url) as c,
        running_service(settings, applier, clock=clock) as service,
        running_scaler(config) as scaler,
    ):
        idle = await idle_of(service)
        await c.create(sid, f"{sid}@acme.test", sessions=2)
        await c.wait_status(sid, lambda s: s.observed_generation == 1)
        await seen(idle, sid)
        await idle.sweeper.sweep_once(minutes(1))
        clock.now = minutes(2)
        await c.publish("suspend", sid)
        await c.wait_status(sid, lambda s: s.phase is Phase.SUSPENDED)
        await replicas_become(kube_api, namespace, 0)
        await seen(idle, sid, generation=2)
        await idle.sweeper.sweep_once(minutes(3))  # the suspend command: already 0, nothing to do
        await until(lambda: scaler.disposition is not None and scaler.disposition.counts["ack"] >= 1)
        await report(c.js, idle, sid, minutes(10), sessions=2)
        for at in (11, 60, 600):
            await idle.sweeper.sweep_once(minutes(at))
        assert [x.command_id for x in await scale_commands(c.js, sid)] == []
        assert (await statefulset(kube_api, namespace)).spec.replicas == 0
        clock.now = minutes(601)
        await c.publish("resume", sid)
        await replicas_become(kube_api, namespace, 2)
        await seen(idle, sid, generation=3)
        await idle.sweeper.sweep_once(minutes(602))
        await until(lambda: scaler.disposition is not None and scaler.disposition.counts["ack"] >= 2)
        assert (await statefulset(kube_api, namespace)).spec.replicas == 2


async def test_a_command_naming_another_workload_changes_nothing(
    fresh_nats_server: NatsServer, kube_api: KubeTarget, applier: KubernetesApplier
) -> None:
    """Forged commands for a real sandbox, naming kube-system, another workload of its namespace and another
    sandbox's pty-server: every StatefulSet keeps its replicas; each command is dead-lettered and counted."""
    clock, sid, other_sid = FrozenClock(), unique_id(), unique_id()
    namespace = naming.namespace_for(naming.owner_uid(f"{sid}@acme.test").value)
    other_namespace = naming.namespace_for(naming.owner_uid(f"{other_sid}@acme.test").value)
    settings = service_settings(fresh_nats_server.url)
    config = scaler_config(fresh_nats_server.url, str(kube_api.kubeconfig_path))
    bystanders = [("kube-system", "pty-server"), (namespace, "etcd"), (other_namespace, "pty-server")]
    async with (
        client(fresh_nats_server.url) as c,
        running_service(settings, applier, clock=clock) as service,
        running_scaler(config) as scaler,
    ):
        await idle_of(service)
        await c.create(sid, f"{sid}@acme.test", sessions=2)
        await c.create(other_sid, f"{other_sid}@acme.test", sessions=2)
        for each in (sid, other_sid):
            await c.wait_status(each, lambda s: s.observed_generation == 1)
        async with kube_api.api_client() as api:
            for where, name in bystanders[:2]:
                await kuberaw.call(
                    api,
                    "PATCH",
                    f"/apis/apps/v1/namespaces/{where}/statefulsets/{name}",
                    bystander_statefulset(where, name),
                    content_type="application/apply-patch+yaml",
                    fieldManager="test",
                )
        refused = counted(scaler, "sandboxd_scale_commands_total", reason="Idle", outcome="refused")
        state = (await seen(await idle_of(service), sid)).model_copy(update={"idle_since": minutes(1)})
        honest = scaling.scale_command(state, Action.IDLE, now=clock.now)
        for where, name in bystanders:
            forged = honest.model_copy(
                update={"namespace": where, "stateful_set": name, "command_id": f"forged:{where}:{name}"}
            )
            await publish_scale(c.js, forged)
        await until(lambda: scaler.disposition is not None and scaler.disposition.counts["term"] >= 3)
        assert counted(scaler, "sandboxd_scale_commands_total", reason="Idle", outcome="refused") == refused + 3
        reasons = [m.headers.get("Sandboxd-Dead-Reason") for m in await c.dead_letters() if m.headers]
        assert reasons.count(scaling.TARGET_REFUSED) == 3
        for where, name in bystanders:
            assert (await statefulset(kube_api, where, name)).spec.replicas == 2, (where, name)
        assert (await statefulset(kube_api, namespace)).spec.replicas == 2
