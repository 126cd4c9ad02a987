"""The NetworkPolicy ``sandbox-isolation``: what a sandbox's pods may reach and who may reach them.

The golden files hold the whole object for each case; these tests say the behaviour an operator relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sandboxd.errors import ConfigurationError
from sandboxd.render import RenderedSandbox
from sandboxd.render.policies import FILENAME
from sandboxd.settings import RuntimeSettings, load

Render = Callable[..., RenderedSandbox]


def policy(rendered: RenderedSandbox) -> dict[str, Any]:
    (found,) = rendered.by_kind("NetworkPolicy")
    assert found.filename == FILENAME
    return dict(found.body)


def namespaces_of(rules: list[dict[str, Any]]) -> list[str]:
    return [
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in rules
        for peer in rule["to" if "to" in rule else "from"]
        if "namespaceSelector" in peer
    ]


def test_every_pod_is_isolated_both_ways_before_any_pod_runs(upstream: Render) -> None:
    rendered = upstream()
    body = policy(rendered)
    assert body["spec"]["podSelector"] == {}
    assert body["spec"]["policyTypes"] == ["Ingress", "Egress"]
    kinds = [m.kind for m in rendered.manifests]
    assert kinds.index("NetworkPolicy") < kinds.index("StatefulSet")


def test_egress_reaches_only_dns_the_llm_gateway_and_the_git_server_by_default(upstream: Render) -> None:
    egress = policy(upstream())["spec"]["egress"]
    assert namespaces_of(egress) == ["kube-system", "newapi", "gitea"]
    dns = egress[0]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert not any("ipBlock" in peer for rule in egress for peer in rule["to"])


def test_configured_namespaces_and_cidrs_are_the_allowed_destinations(upstream: Render) -> None:
    settings = {
        "egress_dns_namespace": "dns",
        "egress_llm_gateway_namespace": "llm",
        "egress_git_namespace": "forge",
        "egress_cidrs": " 10.96.0.1/32,,2001:db8::/32 ",
    }
    egress = policy(upstream(settings=settings))["spec"]["egress"]
    assert namespaces_of(egress) == ["dns", "llm", "forge"]
    assert egress[-1] == {"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}, {"ipBlock": {"cidr": "2001:db8::/32"}}]}


def test_ingress_comes_only_from_the_gateway_to_the_session_port(upstream: Render) -> None:
    ingress = policy(upstream(settings={"gateway_namespace": "gateways"}))["spec"]["ingress"]
    assert ingress == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateways"}}}],
            "ports": [{"protocol": "TCP", "port": 7681}],
        }
    ]


def test_the_http_mcp_companion_and_the_sessions_may_reach_each_other(upstream: Render) -> None:
    spec = policy(upstream(settings={"mcp_transport": "http", "mcp_port": 9090}))["spec"]
    from_pods = {
        rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]: rule["ports"]
        for rule in spec["ingress"]
        if "podSelector" in rule["from"][0]
    }
    assert from_pods == {
        "openova-sandbox-mcp": [{"protocol": "TCP", "port": 7681}],
        "pty-server": [{"protocol": "TCP", "port": 9090}],
    }
    assert {"to": [{"podSelector": {}}]} in spec["egress"]


def test_the_setting_turns_the_policy_off(upstream: Render) -> None:
    rendered = upstream(settings={"network_policy": False})
    assert rendered.by_kind("NetworkPolicy") == ()
    assert FILENAME not in {m.filename for m in rendered.manifests}


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SANDBOX_EGRESS_CIDRS", "10.0.0.1/8", "'10.0.0.1/8' is not a CIDR"),
        ("SANDBOX_EGRESS_CIDRS", "10.0.0.0/8,example.com", "'example.com' is not a CIDR"),
        ("SANDBOX_EGRESS_GIT_NAMESPACE", "Gitea", "'Gitea' is not a namespace name"),
        ("SANDBOX_EGRESS_DNS_NAMESPACE", "", "'' is not a namespace name"),
    ],
)
def test_a_bad_destination_fails_start_up_naming_the_variable(
    settings_factory: Callable[..., RuntimeSettings], variable: str, value: str, expected: str
) -> None:
    # By its variable only: given both the field name and the alias, pydantic may report either as the location.
    name = next(n for n, f in RuntimeSettings.model_fields.items() if f.validation_alias == variable)
    base = {k: v for k, v in settings_factory().model_dump().items() if k != name}
    base[variable] = value
    with pytest.raises(ConfigurationError) as caught:
        load(RuntimeSettings, base)
    assert variable in caught.value.message
    assert expected in caught.value.message
