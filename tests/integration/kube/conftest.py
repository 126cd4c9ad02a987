"""Fixtures for the Kubernetes applier against the real kube-apiserver of ``support.kube_fixtures``.

Every test renders its own sandbox with a fresh id and owner email (so a fresh namespace), because all of them
share one API server for the session. ``Cluster`` reads objects back over its own connection, independent of the
applier under test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sandboxd.adapters.kubernetes import KubernetesApplier, WatchTiming
from sandboxd.settings.service import ApplierSettings
from support.kube_fixtures import KubeTarget

from .cluster import Cluster


@pytest.fixture
def new_id(kube_unique_name: Callable[..., str]) -> Callable[[], str]:
    """A fresh sandbox id (a DNS label short enough for the owner-uid namespace)."""
    return lambda: kube_unique_name("sb", max_len=30)


@pytest.fixture
async def cluster(kube_api: KubeTarget) -> AsyncIterator[Cluster]:
    async with kube_api.api_client() as api:
        yield Cluster(api)


def applier_settings(kube_api: KubeTarget, **overrides: Any) -> ApplierSettings:
    return ApplierSettings(kind="kubernetes", kubeconfig=str(kube_api.kubeconfig_path), **overrides)


@pytest.fixture
async def applier(kube_api: KubeTarget) -> AsyncIterator[KubernetesApplier]:
    built = await KubernetesApplier.from_settings(
        applier_settings(kube_api, kube_request_timeout_s=10.0), watch_timing=WatchTiming(timeout_s=5.0)
    )
    try:
        yield built
    finally:
        await built.aclose()
