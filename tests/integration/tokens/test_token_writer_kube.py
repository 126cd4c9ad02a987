"""The token writer end to end: a real HTTP bridge, the real kube-apiserver, the real renderer and reconciler.

A sandbox is applied by the Kubernetes applier; the writer mints into the Secret the pods read, records the
revision in status and kicks a pass, which stamps the revision on the pod template. The clock is the test's:
rotation is reached by moving it, never by sleeping.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import generate_latest
from pydantic import SecretStr

from sandboxd.adapters.kubernetes import KubernetesApplier
from sandboxd.adapters.kubernetes.tokens import KubeTokenSecrets
from sandboxd.adapters.memory import MemoryStore
from sandboxd.adapters.newapi import NewApiBridge
from sandboxd.models.desired import DesiredState, OwnerClaim
from sandboxd.models.spec import SandboxSpec
from sandboxd.models.status import ConditionStatus, ConditionType, SandboxStatus
from sandboxd.reconcile.reconciler import Reconciler, Result
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.reconcile.tokens import TokenWriter
from sandboxd.render import RenderedSandbox, RenderRequest, render
from sandboxd.render.kustomize import files
from sandboxd.settings.service import ApplierSettings
from sandboxd.settings.tokens import TokenSettings
from sandboxd.telemetry.testing import Captured, capture, prometheus_sample
from support import kuberaw
from support.kube_fixtures import KubeTarget
from support.spine import runtime_settings, spec

from .bridge import ADMIN, Bridge, serving

pytestmark = [pytest.mark.kube, pytest.mark.anyio]

START = datetime(2026, 5, 18, 12, 0, tzinfo=UTC)
STS = "/apis/apps/v1/namespaces/{ns}/statefulsets/pty-server"
SECRET = "/api/v1/namespaces/{ns}/secrets/sandbox-llm-gateway-token"
REVISION = "openova.io/llm-gateway-token-revision"


def applier_settings(kube_api: KubeTarget, **overrides: Any) -> ApplierSettings:
    return ApplierSettings(kind="kubernetes", kubeconfig=str(kube_api.kubeconfig_path), **overrides)


@dataclass
class Cluster:
    """Reads over the test's own connection, independent of the adapters under test."""

    api: Any

    async def get(self, path: str) -> dict[str, Any]:
        return dict(await kuberaw.call(self.api, "GET", path))


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    sandbox_id: str
    namespace: str
    clock: Clock
    bridge: Bridge
    desired: MemoryStore[DesiredState]
    status_store: MemoryStore[SandboxStatus]
    reconciler: Reconciler
    writer: TokenWriter
    kicked: list[str]
    captured: Captured

    def tokens_total(self, outcome: str) -> float | None:
        text = generate_latest(self.captured.telemetry.registry).decode()
        return prometheus_sample(text, "sandboxd_tokens_total", outcome=outcome)

    async def reconcile_kicked(self) -> None:
        while self.kicked:
            outcome = await self.reconciler.reconcile(self.kicked.pop(0))
            assert outcome.result is Result.DONE, outcome.error

    async def status(self) -> SandboxStatus:
        stored = await self.status_store.get(self.sandbox_id)
        assert stored is not None
        return stored.value


def desired_state(sandbox_id: str, *, generation: int = 1, **extra: Any) -> DesiredState:
    return DesiredState(
        sandbox_id=sandbox_id,
        generation=generation,
        sequence=generation,
        event_id=f"e{generation}",
        spec=SandboxSpec.model_validate(spec(f"{sandbox_id}@acme.test", sessions=1, **extra)),
        owner_uid=f"{sandbox_id}-at-acme-test",
        accepted_at=START,
    )


@pytest.fixture
async def rig(
    kube_api: KubeTarget, kube_unique_name: Callable[..., str], request: pytest.FixtureRequest
) -> AsyncIterator[Rig]:
    admin = getattr(request, "param", ADMIN)
    sandbox_id = kube_unique_name("tk", max_len=30)
    clock = Clock()
    async with serving(Bridge(now=clock)) as bridge:
        settings = TokenSettings(
            admin_secret=SecretStr(admin), base_url=bridge.url, channels="qwen", retry_base_s=10, retry_cap_s=80
        )
        applier = await KubernetesApplier.from_settings(applier_settings(kube_api, kube_request_timeout_s=10.0))
        runtime = runtime_settings()
        secrets = await KubeTokenSecrets.from_settings(
            applier_settings(kube_api), secret_name=runtime.llm_gateway_token_secret, key=runtime.llm_gateway_token_key
        )
        newapi = NewApiBridge(bridge.url, SecretStr(admin), timeout_s=10)
        desired: MemoryStore[DesiredState] = MemoryStore()
        status_store: MemoryStore[SandboxStatus] = MemoryStore()
        status = StatusWriter(status_store)
        kicked: list[str] = []
        captured = capture()
        reconciler = Reconciler(
            desired=desired,
            owners=MemoryStore[OwnerClaim](),
            status=status,
            applier=applier,
            settings=runtime,
            render=render,
            clock=clock,
            token_revisions=True,
        )
        writer = TokenWriter(
            desired=desired,
            status=status,
            bridge=newapi,
            secrets=secrets,
            settings=settings,
            clock=clock,
            kick=kicked.append,
            metrics=captured.telemetry.instruments,
        )
        await desired.put(sandbox_id, desired_state(sandbox_id), revision=None)
        try:
            yield Rig(
                sandbox_id,
                f"sandbox-{sandbox_id}-at-acme-test",
                clock,
                bridge,
                desired,
                status_store,
                reconciler,
                writer,
                kicked,
                captured,
            )
        finally:
            await newapi.aclose()
            await secrets.aclose()
            await applier.aclose()


def rendered_with_revision(desired: DesiredState) -> RenderedSandbox:
    """What the reconciler renders (and a GitOps applier would commit) once the token has revision 2."""
    request = RenderRequest(sandbox_id=desired.sandbox_id, spec=desired.spec, token_revision="2")
    return render(request, runtime_settings())


async def pod_revision(cluster: Cluster, namespace: str) -> str | None:
    sts = await cluster.get(STS.format(ns=namespace))
    return (sts["spec"]["template"]["metadata"].get("annotations") or {}).get(REVISION)


async def secret_token(cluster: Cluster, namespace: str) -> str:
    secret = await cluster.get(SECRET.format(ns=namespace))
    return base64.b64decode(secret["data"]["LLM_GATEWAY_TOKEN"]).decode()


async def test_no_token_is_minted_before_the_renderers_secret_exists(rig: Rig) -> None:
    await rig.writer.sweep()
    assert rig.bridge.seen == []
    assert rig.writer.due_at(rig.sandbox_id) == START + timedelta(seconds=30)


async def test_mint_lands_in_the_secret_and_rotation_restarts_the_pods(
    rig: Rig, kube_api: KubeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await rig.reconciler.reconcile(rig.sandbox_id)
    async with kube_api.api_client() as api:
        cluster = Cluster(api)
        assert await pod_revision(cluster, rig.namespace) is None

        await rig.writer.sweep()
        await rig.reconcile_kicked()

        (mint,) = rig.bridge.minted()
        assert mint.body is not None
        assert (mint.body["org_id"], mint.body["user_id"], mint.body["sandbox_id"]) == (
            "acme",
            f"{rig.sandbox_id}@acme.test",
            rig.sandbox_id,
        )
        assert mint.body["allowed_channels"] == ["qwen"]
        assert "gitea.repo.list" in mint.body["capabilities"]  # no plan: the Free list
        assert await secret_token(cluster, rig.namespace) == "jwt-int-1"
        assert await pod_revision(cluster, rig.namespace) == "1"
        status = await rig.status()
        assert status.token is not None
        assert status.token.expires_at == START + timedelta(days=7)
        assert status.token.rotate_at == START + timedelta(days=6)
        issued = status.condition(ConditionType.TOKEN_ISSUED)
        assert issued is not None
        assert (issued.status, issued.reason) == (ConditionStatus.TRUE, "TokenMinted")

        # a healthy token: sweeps and passes before the rotation time mint nothing and restart nothing
        rig.clock.now = START + timedelta(days=5)
        await rig.writer.sweep()
        await rig.reconciler.reconcile(rig.sandbox_id)
        assert len(rig.bridge.minted()) == 1
        assert await pod_revision(cluster, rig.namespace) == "1"

        # the lead reached: a new token, a new revision on the pod template (the pods restart)
        rig.clock.now = START + timedelta(days=6, minutes=1)
        await rig.writer.sweep()
        await rig.reconcile_kicked()
        assert len(rig.bridge.minted()) == 2
        assert await secret_token(cluster, rig.namespace) == "jwt-int-2"
        assert await pod_revision(cluster, rig.namespace) == "2"

        # the reconciler's own apply neither empties the Secret nor drops the revision
        await rig.reconciler.reconcile(rig.sandbox_id)
        assert await secret_token(cluster, rig.namespace) == "jwt-int-2"
        secret = await cluster.get(SECRET.format(ns=rig.namespace))
        assert secret["metadata"]["labels"]["openova.io/sandbox"] == rig.sandbox_id

    # the canaries: in the Secret only, never in status, desired state, rendered files or logs
    for token in ("jwt-int-1", "jwt-int-2"):
        assert token not in (await rig.status()).model_dump_json()
        stored = await rig.desired.get(rig.sandbox_id)
        assert stored is not None
        assert token not in stored.value.model_dump_json()
        assert token not in caplog.text
        for name, content in files(rendered_with_revision(stored.value)).items():
            assert token.encode() not in content, name
    assert ADMIN not in caplog.text


async def test_a_plan_change_mints_again_at_once(rig: Rig) -> None:
    await rig.reconciler.reconcile(rig.sandbox_id)
    await rig.writer.sweep()
    await rig.reconcile_kicked()
    await rig.desired.put(
        rig.sandbox_id,
        desired_state(rig.sandbox_id, generation=2, planId="sandbox-pro"),
        revision=(await rig.desired.get(rig.sandbox_id)).revision,  # type: ignore[union-attr]
    )
    rig.clock.now = START + timedelta(hours=1)
    await rig.writer.visit(rig.sandbox_id)
    minted = rig.bridge.minted()
    assert len(minted) == 2
    assert minted[1].body is not None
    assert "flux.status" in minted[1].body["capabilities"]
    assert "flux.reconcile" not in minted[1].body["capabilities"]


@pytest.mark.parametrize("rig", ["wrong-admin-bytes"], indirect=True)
async def test_a_refused_mint_is_token_mint_failed_in_status_with_growing_backoff(rig: Rig) -> None:
    await rig.reconciler.reconcile(rig.sandbox_id)
    await rig.writer.sweep()
    status = await rig.status()
    issued = status.condition(ConditionType.TOKEN_ISSUED)
    assert issued is not None
    assert (issued.status, issued.reason) == (ConditionStatus.FALSE, "TokenMintFailed")
    assert "status 401" in issued.message
    assert "wrong-admin-bytes" not in status.model_dump_json()
    assert status.token is None
    assert rig.kicked == []

    delays = []
    for _ in range(4):
        due = rig.writer.due_at(rig.sandbox_id)
        assert due is not None
        delays.append((due - rig.clock.now).total_seconds())
        rig.clock.now = due
        await rig.writer.sweep()
    assert delays == [10, 20, 40, 80]
    assert len(rig.bridge.minted()) == 5
    assert rig.tokens_total("failed") == 5
    assert rig.tokens_total("minted") == 0


async def test_a_deleted_sandboxs_token_is_revoked_and_forgotten(rig: Rig) -> None:
    await rig.reconciler.reconcile(rig.sandbox_id)
    await rig.writer.sweep()
    await rig.desired.delete(rig.sandbox_id)
    await rig.writer.sweep()
    assert [(s.method, s.path) for s in rig.bridge.seen if s.method == "DELETE"] == [
        ("DELETE", f"/admin/tokens/sandbox/{rig.sandbox_id}")
    ]
    status = await rig.status()
    assert status.token is None
    assert status.condition(ConditionType.TOKEN_ISSUED) is None
    assert (rig.tokens_total("minted"), rig.tokens_total("revoked")) == (1, 1)
