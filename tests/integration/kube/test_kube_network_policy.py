"""The NetworkPolicy ``sandbox-isolation`` on a real kube-apiserver: it validates, lands as rendered, and goes
away when ``SANDBOX_NETWORK_POLICY`` is turned off.

The test API server does not enforce policies (no CNI runs); what it proves is that the object is one the
server accepts and stores unchanged, with every option on, and that the applier owns its whole life.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sandboxd.adapters.kubernetes import KubernetesApplier
from sandboxd.adapters.kubernetes.resources import resource_of

from .cluster import MANAGER, Cluster, path_of, sandbox

pytestmark = [pytest.mark.kube, pytest.mark.anyio]

EVERY_OPTION = {"mcp_transport": "http", "egress_cidrs": "10.96.0.1/32,2001:db8::/32", "gateway_namespace": "gw"}


async def test_the_policy_passes_a_server_side_dry_run_with_every_option_on(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    rendered = sandbox(new_id(), **EVERY_OPTION)
    namespace, policy = rendered.manifests[0], rendered.by_kind("NetworkPolicy")[0]
    await applier.transport.apply(path_of(namespace), dict(namespace.body), field_manager=MANAGER)

    answer = await applier.transport.apply(
        resource_of(policy).item(policy.name, policy.namespace), dict(policy.body), field_manager=MANAGER, dry_run=True
    )

    assert answer["spec"] == policy.body["spec"]
    assert await cluster.read(path_of(policy)) is None  # a dry run stores nothing


async def test_the_policy_lands_as_rendered_and_is_pruned_when_turned_off(
    applier: KubernetesApplier, cluster: Cluster, new_id: Callable[[], str]
) -> None:
    sandbox_id = new_id()
    rendered = sandbox(sandbox_id, **EVERY_OPTION)
    (policy,) = rendered.by_kind("NetworkPolicy")

    await applier.apply(rendered, generation=1)

    live = await cluster.get(path_of(policy))
    assert live["spec"] == policy.body["spec"]
    again = await applier.apply(rendered, generation=1)
    assert again.changed is False

    off = sandbox(sandbox_id, **{**EVERY_OPTION, "network_policy": False})
    result = await applier.apply(off, generation=2)

    assert [(ref.kind, ref.name) for ref in result.pruned] == [("NetworkPolicy", "sandbox-isolation")]
    assert await cluster.read(path_of(policy)) is None
