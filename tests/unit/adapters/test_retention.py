"""The retained-delete rule both file appliers share."""

from __future__ import annotations

from sandboxd.adapters.retention import RETAINED_KINDS, retained
from support.sandboxes import KEPT_KINDS, sample_sandbox


def test_keeps_namespace_quota_volumes_and_rbac_in_order() -> None:
    sandbox = sample_sandbox()
    kept = retained(sandbox)
    assert [m.kind for m in kept.manifests] == [m.kind for m in sandbox.manifests if m.kind in KEPT_KINDS]
    assert {m.kind for m in kept.manifests} == set(KEPT_KINDS) == RETAINED_KINDS


def test_drops_workloads_service_route_and_secrets_and_scales_to_zero() -> None:
    kept = retained(sample_sandbox())
    assert not {"StatefulSet", "Service", "HTTPRoute", "Secret", "ConfigMap"} & {m.kind for m in kept.manifests}
    assert kept.replicas == 0
    assert kept.owner_uid == "ceo-at-acme-com"
