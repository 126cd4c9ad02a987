"""SandboxSpec: upstream's validation plus what upstream left unchecked, in words a publisher can act on."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from sandboxd.models import Agent, SandboxSpec, describe


def refusal(body: dict[str, Any]) -> str:
    """What ``describe`` says about a spec body that must not validate."""
    with pytest.raises(ValidationError) as refused:
        SandboxSpec.model_validate(body)
    return describe(refused.value)


def with_value(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``body`` with the dotted ``path`` set to ``value`` (list indexes as numbers)."""
    out = copy.deepcopy(body)
    *parents, leaf = path.split(".")
    node: Any = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value
    return out


def test_a_valid_spec_and_its_defaults(spec: dict[str, Any]) -> None:
    minimal = {"owner": spec["owner"], "quota": spec["quota"]}
    parsed = SandboxSpec.model_validate(minimal)
    assert parsed.repos == []
    assert parsed.agent_catalogue == []
    assert parsed.capabilities == []
    assert parsed.idle_scaling is None
    assert parsed.idle_scaling_enabled
    assert not parsed.wants_claude_code
    assert SandboxSpec.model_validate(spec).wants_claude_code


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("quota.concurrentSessions", 0, "quota.concurrentSessions: Input should be greater than or equal to 1"),
        ("quota.concurrentSessions", 11, "quota.concurrentSessions: Input should be less than or equal to 10"),
        ("quota.cpu", "1.5cores", "quota.cpu: '1.5cores' is not valid: a CPU amount such as 500m or 2"),
        ("quota.cpu", " 2", "quota.cpu: ' 2' is not valid"),
        ("quota.memory", "8GB", "quota.memory: '8GB' is not valid: a size such as 512Mi or 8Gi"),
        ("quota.storage", "-5Gi", "quota.storage: '-5Gi' is not valid"),
        ("owner.email", "ceo-at-acme", "owner.email: 'ceo-at-acme' is not valid: an email address such as"),
        ("owner.orgRef.slug", "ab", "owner.orgRef.slug: 'ab' is not valid: 3-32 characters"),
        ("owner.orgRef.slug", "9acme", "owner.orgRef.slug: '9acme' is not valid"),
        ("repos.0.giteaRepo", "eventforge", "repos.0.giteaRepo: 'eventforge' is not valid: <org>/<repo>"),
        ("previewDomain", "Preview.Acme.io", "previewDomain: 'Preview.Acme.io' is not valid: a lowercase DNS"),
        ("planId", "Sandbox Pro", "planId: 'Sandbox Pro' is not valid: a plan id such as sandbox-pro"),
        ("capabilities", ["gitea repo list"], "capabilities.0: 'gitea repo list' is not valid: a capability"),
        ("idleScaling", {"timeoutMinutes": 0}, "idleScaling.timeoutMinutes: Input should be greater than"),
        ("quota.concurrentSessions", "many", "quota.concurrentSessions: Input should be a valid integer"),
    ],
)
def test_a_refusal_names_the_field_and_what_is_wrong(
    spec: dict[str, Any], path: str, value: Any, expected: str
) -> None:
    assert expected in refusal(with_value(spec, path, value))


@pytest.mark.parametrize("missing", ["owner", "quota"])
def test_owner_and_quota_are_required(spec: dict[str, Any], missing: str) -> None:
    del spec[missing]
    assert refusal(spec) == f"{missing}: is required"


def test_every_problem_is_reported_at_once(spec: dict[str, Any]) -> None:
    body = with_value(with_value(spec, "quota.cpu", "x"), "quota.concurrentSessions", 99)
    lines = refusal(body).split("; ")
    assert [line.split(":")[0] for line in lines] == ["quota.cpu", "quota.concurrentSessions"]


def test_describe_prefixes_the_place_the_spec_came_from(spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as refused:
        SandboxSpec.model_validate(with_value(spec, "quota.cpu", "x"))
    assert describe(refused.value, prefix="data.spec").startswith("data.spec.quota.cpu: 'x' is not valid")


@given(st.integers(min_value=-1000, max_value=1000))
def test_concurrent_sessions_are_one_to_ten(sessions: int) -> None:
    body = {
        "owner": {"email": "ceo@acme.com", "orgRef": {"slug": "acme"}},
        "quota": {"cpu": "2", "memory": "4Gi", "storage": "50Gi", "concurrentSessions": sessions},
    }
    try:
        parsed = SandboxSpec.model_validate(body)
    except ValidationError as refused:
        assert not 1 <= sessions <= 10
        assert describe(refused).startswith("quota.concurrentSessions: ")
    else:
        assert 1 <= sessions <= 10
        assert parsed.quota.concurrent_sessions == sessions


@pytest.mark.parametrize("agent", [a.value for a in Agent])
def test_every_bundled_agent_is_accepted(spec: dict[str, Any], agent: str) -> None:
    assert SandboxSpec.model_validate(with_value(spec, "agentCatalogue", [agent])).agent_catalogue == [agent]


def test_the_agent_list_is_upstream_s_plus_sovereign_shell() -> None:
    upstream = {"aider", "claude-code", "cursor-agent", "little-coder", "opencode", "qwen-code"}
    assert {a.value for a in Agent} == upstream | {"sovereign-shell"}


def test_an_unknown_agent_is_refused_listing_the_known_ones(spec: dict[str, Any]) -> None:
    message = refusal(with_value(spec, "agentCatalogue", ["claude-code", "copilot"]))
    assert message.startswith("agentCatalogue.1: Input should be ")
    assert "'sovereign-shell'" in message


@pytest.mark.parametrize("where", ["", "owner", "owner.orgRef", "quota", "idleScaling"])
def test_unknown_fields_are_refused_everywhere(spec: dict[str, Any], where: str) -> None:
    spec["idleScaling"] = {"enabled": True}
    node = spec
    for key in filter(None, where.split(".")):
        node = node[key]
    node["gpu"] = "1"
    assert refusal(spec) == f"{where + '.' if where else ''}gpu: is not a known field"


def test_two_repos_on_one_slug_are_refused_naming_both(spec: dict[str, Any]) -> None:
    spec["repos"] = [{"giteaRepo": "acme/internal-tools"}, {"giteaRepo": "acme/internal_tools"}]
    message = refusal(spec)
    assert message.startswith("repos: ")
    assert "'acme/internal-tools'" in message
    assert "'acme/internal_tools'" in message
    assert "'acme-internal-tools'" in message


def test_idle_scaling_opt_out(spec: dict[str, Any]) -> None:
    spec["idleScaling"] = {"enabled": False}
    assert not SandboxSpec.model_validate(spec).idle_scaling_enabled
    spec["idleScaling"] = {"timeoutMinutes": 45}
    parsed = SandboxSpec.model_validate(spec)
    assert parsed.idle_scaling_enabled
    assert parsed.idle_scaling is not None
    assert parsed.idle_scaling.timeout_minutes == 45


def test_a_spec_is_frozen(spec: dict[str, Any]) -> None:
    parsed = SandboxSpec.model_validate(spec)
    with pytest.raises(ValidationError, match="frozen"):
        parsed.plan_id = "sandbox-ent"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        parsed.quota.concurrent_sessions = 10  # type: ignore[misc]


def test_the_wire_form_is_camel_case_without_nones(spec: dict[str, Any]) -> None:
    parsed = SandboxSpec.model_validate(spec)
    wire = parsed.to_json().decode()
    assert '"concurrentSessions":3' in wire
    assert '"orgRef":' in wire
    assert "previewDomain" not in wire
    assert SandboxSpec.model_validate_json(wire) == parsed


@pytest.mark.parametrize(
    ("path", "value"), [("quota.cpu", "2\n"), ("owner.email", "ceo@acme.com\n"), ("owner.orgRef.slug", "acme\n")]
)
def test_a_trailing_newline_is_refused(spec: dict[str, Any], path: str, value: str) -> None:
    assert path in refusal(with_value(spec, path, value))
