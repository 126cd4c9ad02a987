"""SANDBOXD_KUBE_NAMESPACE_GRANTS: what the Kubernetes applier binds in each sandbox namespace, read strictly."""

from __future__ import annotations

import pytest

from sandboxd.adapters.kubernetes.grants import NamespaceGrant, parse_grants
from sandboxd.errors import ConfigurationError


def test_grants_name_a_cluster_role_and_a_service_account() -> None:
    text = "sbx-sandboxd-reconciler-namespaced=platform/sbx-sandboxd-reconciler, sbx-sandboxd-scaler=platform/scaler"

    assert parse_grants(text) == (
        NamespaceGrant("sbx-sandboxd-reconciler-namespaced", "platform", "sbx-sandboxd-reconciler"),
        NamespaceGrant("sbx-sandboxd-scaler", "platform", "scaler"),
    )
    assert parse_grants("") == () and parse_grants(None) == ()


def test_the_binding_is_named_after_the_role_and_is_not_one_of_the_sandboxs_objects() -> None:
    grant = NamespaceGrant("sbx-sandboxd-scaler", "platform", "scaler")
    binding = grant.binding("sandbox-ceo-at-acme-com")

    assert binding["metadata"]["name"] == "sbx-sandboxd-scaler"
    assert binding["metadata"]["labels"] == {"openova.io/managed-by": "catalyst"}  # no sandbox label: never pruned
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": grant.cluster_role,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "scaler", "namespace": "platform"}]
    assert (
        grant.path("sandbox-x")
        == "/apis/rbac.authorization.k8s.io/v1/namespaces/sandbox-x/rolebindings/sbx-sandboxd-scaler"
    )


@pytest.mark.parametrize(
    "text",
    ["role", "role=platform", "role=/account", "Role=platform/account", "role=platform/a b", "r=p/a,r=p/b"],
)
def test_malformed_grants_stop_the_start_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigurationError, match="SANDBOXD_KUBE_NAMESPACE_GRANTS"):
        parse_grants(text)
