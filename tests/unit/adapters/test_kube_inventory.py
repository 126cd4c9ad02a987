"""The applier's watch cache (``inventory.Inventory``) as plain data: what counts as unchanged, what a feed's
list, events and loss do to it. The same cache against a real kube-apiserver:
``tests/integration/kube/test_kube_cache.py``.
"""

from __future__ import annotations

from typing import Any

from sandboxd.adapters.kubernetes.inventory import APPLIED, Inventory, annotated, digest, live_of
from sandboxd.adapters.kubernetes.resources import BY_KIND, NAMESPACE, STATEFUL_SET

CONFIG_MAP = BY_KIND["ConfigMap"]
BODY = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": {"a": "1"}}


def obj(
    *, name: str = "c", version: str = "1", applied: str = "", managers: tuple[tuple[str, Any], ...] = ()
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "resourceVersion": version,
            "labels": {"openova.io/sandbox": "sb"},
            "annotations": {APPLIED: applied} if applied else {},
            "managedFields": [
                {"manager": manager, "operation": "Apply", "fieldsV1": fields} for manager, fields in managers
            ],
        }
    }


OURS = ("sandboxd", {"f:data": {"f:a": {}}})


def test_digest_is_stable_and_ignores_key_order() -> None:
    assert digest({"b": 1, "a": {"y": 2, "x": 1}}) == digest({"a": {"x": 1, "y": 2}, "b": 1})
    assert digest(BODY) != digest({**BODY, "data": {"a": "2"}})
    assert annotated(BODY, "d")["metadata"]["annotations"] == {APPLIED: "d"}
    assert "annotations" not in BODY["metadata"]  # the manifest itself is untouched


def test_unchanged_needs_the_digest_and_the_fields_this_process_confirmed() -> None:
    inventory = Inventory("sandboxd")
    d = digest(BODY)
    seen = live_of(CONFIG_MAP, obj(applied=d, managers=(OURS,)), field_manager="sandboxd")
    assert not inventory.unchanged(seen, d)  # nothing confirmed yet (a fresh process)
    inventory.confirm(seen)
    assert inventory.unchanged(seen, d)
    assert not inventory.unchanged(seen, digest({**BODY, "data": {"a": "2"}}))  # another manifest
    assert not inventory.unchanged(None, d)  # not in the cache


def test_a_field_taken_over_by_another_manager_is_drift() -> None:
    inventory = Inventory("sandboxd")
    d = digest(BODY)
    inventory.confirm(live_of(CONFIG_MAP, obj(applied=d, managers=(OURS,)), field_manager="sandboxd"))
    taken = obj(version="2", applied=d, managers=(("sandboxd", {}), ("kubectl", {"f:data": {"f:a": {}}})))
    assert not inventory.unchanged(live_of(CONFIG_MAP, taken, field_manager="sandboxd"), d)
    shared = obj(version="3", applied=d, managers=(OURS, ("kubectl", {"f:metadata": {}})))
    assert inventory.unchanged(live_of(CONFIG_MAP, shared, field_manager="sandboxd"), d)


def test_a_relist_replaces_a_kind_and_events_follow() -> None:
    inventory = Inventory("sandboxd")
    assert not inventory.covers(CONFIG_MAP)
    inventory.relisted(CONFIG_MAP, [obj(name="a"), obj(name="b")])
    inventory.relisted(NAMESPACE, [{"metadata": {"name": "ns", "resourceVersion": "1"}}])
    assert inventory.covers(CONFIG_MAP)
    assert sorted(live.name for live in inventory.live("ns", [CONFIG_MAP], sandbox="sb")) == ["a", "b"]
    assert inventory.live("ns", [CONFIG_MAP], sandbox="other") == []
    assert inventory.get(NAMESPACE, "ns") is not None

    inventory.changed(CONFIG_MAP, "DELETED", obj(name="a"))
    inventory.changed(CONFIG_MAP, "ADDED", obj(name="c"))
    inventory.relisted(STATEFUL_SET, [{**obj(name="pty-server"), "status": {"readyReplicas": 2}}])
    assert sorted(live.name for live in inventory.live("ns", [CONFIG_MAP], sandbox="sb")) == ["b", "c"]
    sts = inventory.get(STATEFUL_SET, "pty-server", "ns")
    assert sts is not None and sts.ready == 2

    inventory.relisted(CONFIG_MAP, [obj(name="d")])
    assert [live.name for live in inventory.live("ns", [CONFIG_MAP], sandbox="sb")] == ["d"]
    inventory.lost(CONFIG_MAP)
    assert not inventory.covers(CONFIG_MAP)
