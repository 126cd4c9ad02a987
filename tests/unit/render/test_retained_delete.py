"""The retained-delete rule every applier shares: a deleted sandbox keeps its data, not access."""

from __future__ import annotations

from sandboxd.render.retained import REMOVAL_STEPS, RETAINED_KINDS, removal_step, retained
from sandboxd.render.storage import is_retained
from support.sandboxes import KEPT_KINDS, sample_sandbox


def test_keeps_namespace_quota_and_volumes_in_order() -> None:
    sandbox = sample_sandbox()
    kept = retained(sandbox)
    assert [m.kind for m in kept.manifests] == [m.kind for m in sandbox.manifests if m.kind in KEPT_KINDS]
    assert {m.kind for m in kept.manifests} == set(KEPT_KINDS) == RETAINED_KINDS


def test_drops_what_runs_and_every_grant_and_scales_to_zero() -> None:
    kept = retained(sample_sandbox())
    removed = {"StatefulSet", "Service", "HTTPRoute", "Secret", "ConfigMap", "ServiceAccount", "Role", "RoleBinding"}
    assert not removed & {m.kind for m in kept.manifests}
    assert kept.replicas == 0
    assert kept.owner_uid == "ceo-at-acme-com"


def test_kept_volumes_are_marked_retained() -> None:
    kept = retained(sample_sandbox())
    claims = kept.by_kind("PersistentVolumeClaim")
    assert claims
    assert all(is_retained(m.body) for m in claims)
    assert not any(is_retained(m.body) for m in sample_sandbox().by_kind("PersistentVolumeClaim"))


def test_removal_runs_workloads_first_and_access_last() -> None:
    assert removal_step("StatefulSet") == removal_step("Deployment") == 0
    assert {removal_step(k) for k in ("Service", "HTTPRoute", "Secret", "ConfigMap")} == {1}
    assert removal_step("ServiceAccount") == removal_step("Role") == removal_step("RoleBinding") == REMOVAL_STEPS - 1
    assert {removal_step(k) for k in KEPT_KINDS} == {None}
