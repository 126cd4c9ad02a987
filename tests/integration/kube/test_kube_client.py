"""Where the Kubernetes applier's cluster comes from, and its wiring through ``app.appliers.build_applier``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandboxd.adapters.kubernetes import KubernetesApplier
from sandboxd.adapters.kubernetes.client import api_client, load_configuration
from sandboxd.adapters.kubernetes.resources import NAMESPACE
from sandboxd.adapters.kubernetes.transport import KubeTransport
from sandboxd.app.appliers import build_applier
from sandboxd.errors import ApplyUnavailable, ConfigurationError
from sandboxd.settings.service import ApplierSettings
from support.kube_fixtures import KubeTarget

from .conftest import applier_settings

pytestmark = [pytest.mark.kube, pytest.mark.anyio]


async def test_build_applier_makes_a_kubernetes_applier_that_reaches_the_server(kube_api: KubeTarget) -> None:
    applier = await build_applier(applier_settings(kube_api, field_manager="sandboxd-test", apply_concurrency=3))
    try:
        assert isinstance(applier, KubernetesApplier)
        assert (applier.field_manager, applier.apply_concurrency) == ("sandboxd-test", 3)
        await applier.check_reachable()
    finally:
        await applier.aclose()


async def test_a_missing_kubeconfig_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigurationError, match=f"KUBECONFIG={missing}"):
        await KubernetesApplier.from_settings(ApplierSettings(kind="kubernetes", kubeconfig=str(missing)))


async def test_an_unknown_context_is_named(kube_api: KubeTarget) -> None:
    settings = applier_settings(kube_api, kube_context="elsewhere")
    with pytest.raises(ConfigurationError, match="SANDBOXD_KUBE_CONTEXT=elsewhere"):
        await KubernetesApplier.from_settings(settings)


async def test_no_kubeconfig_outside_a_cluster_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigurationError, match="needs KUBECONFIG"):
        await KubernetesApplier.from_settings(ApplierSettings(kind="kubernetes", kubeconfig=None))


async def test_an_unreachable_server_is_reported_as_unavailable(kube_api: KubeTarget, tmp_path: Path) -> None:
    """Nothing listens on the port: the probe and an apply both say so, retryably, without the token."""
    text = kube_api.kubeconfig_path.read_text()
    server_line = next(line for line in text.splitlines() if "server:" in line)
    closed = text.replace(server_line, "    server: https://127.0.0.1:9")
    kubeconfig = tmp_path / "closed.yaml"
    kubeconfig.write_text(closed)
    applier = await KubernetesApplier.from_settings(
        ApplierSettings(kind="kubernetes", kubeconfig=str(kubeconfig), kube_request_timeout_s=2.0)
    )
    try:
        with pytest.raises(ApplyUnavailable) as unreachable:
            await applier.check_reachable()
    finally:
        await applier.aclose()
    assert "GET /version: Kubernetes API unreachable" in unreachable.value.message
    token = next(line for line in text.splitlines() if "token:" in line).split("token:")[1].strip()
    assert token not in unreachable.value.message


async def test_every_request_takes_the_token_the_configuration_holds_then(kube_api: KubeTarget) -> None:
    """A rotated token (the kubelet rewrites a service account's; an exec plugin renews its own) is used at once.

    The configuration's refresh hook runs before every request, as kubernetes_asyncio's in-cluster and exec
    loaders expect: a stale token is refused (401, retryable, never quoted), the next request with the renewed
    one passes, on the same connection pool.
    """
    configuration = await load_configuration(applier_settings(kube_api))
    good = configuration.api_key["BearerToken"]
    current = {"token": "Bearer stale-token-value"}

    def refresh(config: Any) -> None:
        config.api_key["BearerToken"] = current["token"]

    configuration.refresh_api_key_hook = refresh
    transport = KubeTransport(api_client(configuration, connections=2))
    try:
        with pytest.raises(ApplyUnavailable) as refused:
            await transport.get(NAMESPACE.item("default"))
        assert "stale-token-value" not in refused.value.message
        current["token"] = good
        found = await transport.get(NAMESPACE.item("default"))
    finally:
        await transport.aclose()
    assert found is not None and found["metadata"]["name"] == "default"
