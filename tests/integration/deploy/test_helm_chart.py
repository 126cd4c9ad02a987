"""deploy/helm/sandboxd through the pinned helm binary: it renders, its guards refuse what the service would refuse,
``helm lint`` passes, every service setting is a value, and the environment it renders is one the service accepts.

The settings are discovered from ``sandboxd.settings`` (every ``Group`` of every module), so a setting added to
the service without a value in the chart fails here, naming it.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import SecretStr

import sandboxd.settings
from sandboxd.settings import load
from sandboxd.settings.fields import Group, pinned_image

from .charts import CHART, FULL_VALUES, MINIMAL_VALUES, REPO_ROOT, Helm, by_kind, container, env_of, one

REQUIRED = {
    "runtime.ptyServerImage": "SANDBOX_PTY_SERVER_IMAGE",
    "runtime.mcpImage": "SANDBOX_MCP_IMAGE",
    "runtime.newapiURL": "SANDBOX_NEWAPI_URL",
    "runtime.sovereignFQDN": "SANDBOX_SOVEREIGN_FQDN",
}
#: An image reference with the tag ``latest`` (the guards' messages say " :latest", which is no reference).
LATEST = re.compile(r"[A-Za-z0-9._/-]+:latest\b")
#: Chart defaults that differ from the service's defaults on purpose.
DELIBERATE = {
    "NATS_URL": "the chart points at an in-cluster NATS Service, not 127.0.0.1",
    "NATS_CLIENT_NAME": "the scaler names its connection sandboxd-scaler",
    "NATS_INBOX_PREFIX": "each process's inbox is its role's in deploy/nats/accounts.conf (_INBOX_reconciler)",
    "SANDBOX_RING_BUFFER_BYTES": "upstream's chart default: 1 MiB of pty-server scrollback",
    "SANDBOXD_DIRECTORY": "the root filesystem is read-only; the directory applier writes under /tmp",
    "SANDBOXD_KUBE_NAMESPACE_GRANTS": "the chart's RBAC: the reconciler grants itself and the scaler per namespace",
}


def settings_groups() -> list[type[Group]]:
    """Every settings group the service has: each module of ``sandboxd.settings``, imported."""
    for module in pkgutil.iter_modules(sandboxd.settings.__path__):
        importlib.import_module(f"sandboxd.settings.{module.name}")
    found: list[type[Group]] = []
    pending = list(Group.__subclasses__())
    while pending:
        group = pending.pop()
        found.append(group)
        pending += group.__subclasses__()
    return sorted(found, key=lambda g: g.__name__)


def variables(group: type[Group]) -> dict[str, Any]:
    """Environment variable → field info."""
    return {str(field.validation_alias): field for field in group.model_fields.values()}


def is_secret(field: Any) -> bool:
    return "SecretStr" in str(field.annotation) or field.annotation is SecretStr


def environment(deployment: dict[str, Any]) -> dict[str, str]:
    """What the container's environment would be: literal values, and a stand-in for each Secret reference."""
    out = {}
    for name, entry in env_of(deployment).items():
        out[name] = entry["value"] if "value" in entry else f"from-secret-{name.lower()}"
    return out


def read_by(env: dict[str, str]) -> list[type[Group]]:
    """The groups a process with ``env`` reads: some of their variables are set and none it requires is missing."""
    return [
        group
        for group in settings_groups()
        if set(variables(group)) & set(env)
        and all(name in env for name, field in variables(group).items() if field.is_required())
    ]


def use_environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for group in settings_groups():
        for name in variables(group):
            monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


# --- rendering ----------------------------------------------------------------------------------------------


def test_minimal_values_render_both_processes(helm: Helm) -> None:
    objects = helm.template()

    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert kinds == [
        "ClusterRole/sbx-sandboxd-reconciler",
        "ClusterRole/sbx-sandboxd-reconciler-namespaced",
        "ClusterRole/sbx-sandboxd-scaler",
        "ClusterRoleBinding/sbx-sandboxd-reconciler",
        "Deployment/sbx-sandboxd-reconciler",
        "Deployment/sbx-sandboxd-scaler",
        "PodDisruptionBudget/sbx-sandboxd-reconciler",
        "Service/sbx-sandboxd-reconciler-metrics",
        "Service/sbx-sandboxd-scaler-metrics",
        "ServiceAccount/sbx-sandboxd-reconciler",
        "ServiceAccount/sbx-sandboxd-scaler",
        "ValidatingAdmissionPolicy/sbx-sandboxd-sandbox-namespaces",
        "ValidatingAdmissionPolicyBinding/sbx-sandboxd-sandbox-namespaces",
    ]
    reconciler, scaler = one(objects, "Deployment", "reconciler"), one(objects, "Deployment", "scaler")
    assert container(reconciler)["args"] == ["run"]
    assert container(scaler)["args"] == ["scaler"]
    assert reconciler["spec"]["replicas"] == 2
    assert scaler["spec"]["replicas"] == 1
    assert container(reconciler)["image"] == "ghcr.io/openova-io/openova/sandboxd:0.1.0"


def test_replicas_and_optional_parts_follow_values(helm: Helm) -> None:
    objects = helm.template(
        set_values={
            "reconciler.replicas": 1,
            "scaler.enabled": False,
            "metrics.service.enabled": False,
            "applier.kind": "gitops",
            "applier.gitops.repo": "https://gitea.example.com/o/r.git",
        }
    )

    assert sorted(o["kind"] for o in objects) == ["Deployment", "ServiceAccount"]
    reconciler = one(objects, "Deployment", "reconciler")
    assert reconciler["spec"]["replicas"] == 1
    # The GitOps applier calls no Kubernetes API: no ClusterRole, no token in the pod.
    assert reconciler["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


@pytest.mark.parametrize("value", sorted(REQUIRED))
def test_a_missing_required_value_fails_with_its_name(helm: Helm, value: str) -> None:
    message = helm.refusal(set_values={value: ""})

    assert f"{value} is required" in message
    assert REQUIRED[value] in message  # names the variable the service reads, too


def test_without_values_every_required_value_is_reported_first(helm: Helm) -> None:
    message = helm.refusal(values=())

    assert "runtime.ptyServerImage is required" in message


@pytest.mark.parametrize(
    ("value", "ref", "expected"),
    [
        ("runtime.ptyServerImage", "ghcr.io/openova-io/openova/sandbox-pty-server:latest", "uses :latest"),
        ("runtime.mcpImage", "ghcr.io/openova-io/openova/sandbox-mcp-server:latest", "uses :latest"),
        ("runtime.mcpImage", "ghcr.io/openova-io/openova/sandbox-mcp-server", "has no tag"),
        ("runtime.ptyServerImage", "registry.local:5000/pty-server", "has no tag"),
        ("runtime.ptyServerImage", "ghcr.io/x/pty-server@sha256:abc", "malformed digest"),
        ("image.tag", "latest", 'image.tag is "latest"'),
        ("image.tag", "", "image.tag is empty"),
    ],
)
def test_unpinned_images_are_refused(helm: Helm, value: str, ref: str, expected: str) -> None:
    message = helm.refusal(set_values={value: ref})

    assert value in message
    assert expected in message


@pytest.mark.parametrize(
    ("set_values", "expected"),
    [
        ({"runtime.newapiURL": "newapi.example.com/v1"}, "runtime.newapiURL"),
        ({"runtime.sovereignFQDN": "localhost"}, "runtime.sovereignFQDN"),
        ({"runtime.llmGatewayTokenSecret": "sandbox-tokens"}, "placeholder"),
        ({"nats.keys.token": "token"}, "nats.existingSecret is empty"),
        ({"nats.existingSecret": "s", "nats.keys.user": "user"}, "must be set together"),
        ({"nats.tls.existingSecret": "t", "nats.tls.cert": "tls.crt"}, "must be set together"),
        ({"applier.kind": "gitops"}, "applier.gitops.repo is required"),
        (
            {"tokens.existingSecret": "a", "applier.kind": "directory"},
            "with applier.kind=directory set tokens.writer=external",
        ),
        ({"serviceMonitor.enabled": True, "metrics.service.enabled": False}, "metrics.service.enabled"),
    ],
)
def test_values_the_service_would_refuse_fail_the_render(helm: Helm, set_values: dict[str, Any], expected: str) -> None:
    assert expected in helm.refusal(set_values=set_values)


@pytest.mark.parametrize(
    ("set_values", "expected"),
    [
        ({"applier.kind": "cluster"}, "/applier/kind"),
        ({"topology.maxDeliver": 1}, "/topology/maxDeliver"),
        ({"runtime.ptyImage": "typo"}, "ptyImage"),
        ({"health.port": 70000}, "/health/port"),
        ({"image.digest": "sha256:nothex"}, "/image/digest"),
    ],
)
def test_the_values_schema_refuses_wrong_types_bounds_and_typos(
    helm: Helm, set_values: dict[str, Any], expected: str
) -> None:
    message = helm.refusal(set_values=set_values)

    assert "values don't meet the specifications of the schema" in message
    assert expected in message


def test_no_latest_anywhere_and_every_image_pinned(helm: Helm) -> None:
    for values in (MINIMAL_VALUES, FULL_VALUES):
        text = helm.render(values=(values,))
        assert ":latest" not in text, values.name
        for deployment in by_kind(yaml.safe_load_all(text), "Deployment"):
            image = container(deployment)["image"]
            assert pinned_image(image) == image
            env = env_of(deployment)
            for name in ("SANDBOX_PTY_SERVER_IMAGE", "SANDBOX_MCP_IMAGE"):
                if name in env:
                    assert pinned_image(env[name]["value"]) == env[name]["value"]
    for path in sorted(CHART.rglob("*")):
        if path.is_file():
            assert not LATEST.search(path.read_text()), path


def test_helm_lint_passes(helm: Helm) -> None:
    # Without values `required` is only reported by lint (it cannot know the release's values).
    for values in ((), (MINIMAL_VALUES,), (FULL_VALUES,)):
        args = ["lint", str(CHART), "--strict"] + [a for v in values for a in ("--values", str(v))]
        proc = helm.run(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "0 chart(s) failed" in proc.stdout


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, maps merged key by key, as helm merges values files."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_values_schema_is_draft7_and_holds_the_values_files() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(defaults, schema)
    for path in (MINIMAL_VALUES, FULL_VALUES):
        jsonschema.validate(merged(defaults, yaml.safe_load(path.read_text())), schema)


def test_chart_image_and_package_versions_agree() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]

    assert chart["appVersion"] == values["image"]["tag"] == project["version"]


# --- the pods ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("component", ["reconciler", "scaler", "tokens"])
def test_pods_run_non_root_read_only_without_capabilities(helm: Helm, component: str) -> None:
    objects = helm.template(values=(FULL_VALUES,), set_values={"tokens.writer": "external"})
    deployment = one(objects, "Deployment", component)
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = main["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]  # noqa: S108 - the pod's own emptyDir
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}} in pod["volumes"]
    assert main["resources"]["requests"] and main["resources"]["limits"]
    # Secret files are mounted read-only from Secrets, never written into the pod spec.
    for volume in pod["volumes"]:
        if volume["name"] != "tmp":
            assert set(volume) == {"name", "secret"}, volume


def test_token_writer_runs_as_its_own_deployment_beside_gitops(helm: Helm, monkeypatch: pytest.MonkeyPatch) -> None:
    gitops = {"applier.kind": "gitops", "applier.gitops.repo": "https://git.example.com/r"}
    objects = helm.template(
        values=(FULL_VALUES,),
        set_values={"tokens.writer": "external", "applier.kubeconfig.existingSecret": "", **gitops},
    )
    deployment = one(objects, "Deployment", "tokens")
    pod = deployment["spec"]["template"]["spec"]
    env = env_of(deployment)

    assert container(deployment)["args"] == ["tokens"]
    assert deployment["spec"]["replicas"] == 1  # two writers would both mint for a due sandbox
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["serviceAccountName"] == "sbx-sandboxd-tokens"
    assert pod["automountServiceAccountToken"] is True
    assert env["NEWAPI_ADMIN_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "newapi-bp-newapi-token-signing-key",
        "key": "ADMIN_SECRET",
    }
    # Only the minting process holds the admin bearer.
    assert "NEWAPI_ADMIN_SECRET" not in env_of(one(objects, "Deployment", "reconciler"))
    assert env_of(one(objects, "Deployment", "reconciler"))["SANDBOXD_TOKEN_WRITER"]["value"] == "external"
    use_environment(monkeypatch, environment(deployment))
    settings = sandboxd.settings.load_settings()
    assert settings.tokens.minting
    assert settings.tokens.writer == "external"
    assert settings.nats.name == "sandboxd-tokens"


@pytest.mark.parametrize(
    "set_values",
    [{}, {"tokens.existingSecret": "a"}, {"tokens.writer": "external"}],
    ids=["no-minting", "writer-in-reconciler", "external-without-secret"],
)
def test_no_token_writer_deployment_unless_minting_external(helm: Helm, set_values: dict[str, str]) -> None:
    objects = helm.template(set_values=set_values)

    assert [o for o in objects if o["metadata"]["labels"].get("app.kubernetes.io/component") == "tokens"] == []


def test_reconciler_probes_and_metrics_use_the_health_port(helm: Helm) -> None:
    objects = helm.template(set_values={"health.port": 9091})
    deployment = one(objects, "Deployment", "reconciler")
    main = container(deployment)

    assert env_of(deployment)["SANDBOXD_HEALTH_PORT"]["value"] == "9091"
    assert main["ports"] == [{"name": "health", "containerPort": 9091, "protocol": "TCP"}]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert one(objects, "Service", "reconciler")["spec"]["ports"][0]["targetPort"] == "health"


def test_scaler_probes_and_metrics_use_its_metrics_port(helm: Helm) -> None:
    """`sandboxd scaler` serves /healthz, /readyz and /metrics on SANDBOXD_SCALER_METRICS_PORT."""
    objects = helm.template(set_values={"scaler.metricsPort": 9100})
    deployment = one(objects, "Deployment", "scaler")
    main = container(deployment)

    assert env_of(deployment)["SANDBOXD_SCALER_METRICS_PORT"]["value"] == "9100"
    assert "SANDBOXD_HEALTH_PORT" not in env_of(deployment)
    assert main["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    reconciler = container(one(objects, "Deployment", "reconciler"))
    for probe in ("livenessProbe", "readinessProbe"):  # the same timings as the reconciler's
        assert {**main[probe], "httpGet": None} == {**reconciler[probe], "httpGet": None}
    assert one(objects, "Service", "scaler")["spec"]["ports"][0]["targetPort"] == "metrics"


#: The slowest /readyz answer measured under load on 2 cores, s: a probe that waits less counts it as failed.
SLOWEST_READYZ_S = 3


def test_every_probe_waits_longer_than_the_slowest_answer_and_its_timings_are_values(helm: Helm) -> None:
    """Kubernetes' default probe timeout (1 s) failed probes under load; liveness restarts only after 2 minutes."""
    external = {"tokens.writer": "external"}
    defaults = helm.template(values=(FULL_VALUES,), set_values=external)
    tuned = helm.template(
        values=(FULL_VALUES,),
        set_values={**external, "probes.readiness.timeoutSeconds": 7, "probes.liveness.failureThreshold": 9},
    )

    for component in ("reconciler", "scaler", "tokens"):
        main = container(one(defaults, "Deployment", component))
        for probe in ("livenessProbe", "readinessProbe"):
            assert main[probe]["timeoutSeconds"] > SLOWEST_READYZ_S, (component, probe)
        live = main["livenessProbe"]
        assert live["periodSeconds"] * live["failureThreshold"] >= 120, component
        changed = container(one(tuned, "Deployment", component))
        assert changed["readinessProbe"]["timeoutSeconds"] == 7
        assert changed["livenessProbe"]["failureThreshold"] == 9
    assert "timeoutSeconds" in helm.refusal(set_values={"probes.readiness.timeoutSeconds": 0})


def test_service_monitor_scrapes_both_metrics_services(helm: Helm) -> None:
    objects = helm.template(values=(FULL_VALUES,))
    (monitor,) = by_kind(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]

    selected = [s for s in by_kind(objects, "Service") if selector.items() <= s["metadata"]["labels"].items()]
    assert len(selected) == 2
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


# --- settings ------------------------------------------------------------------------------------------------


def test_every_service_setting_is_a_chart_value(helm: Helm) -> None:
    objects = helm.template(values=(FULL_VALUES,))
    reconciler = env_of(one(objects, "Deployment", "reconciler"))
    scaler = env_of(one(objects, "Deployment", "scaler"))
    external = helm.template(values=(FULL_VALUES,), set_values={"tokens.writer": "external"})
    tokens = env_of(one(external, "Deployment", "tokens"))

    everything = {name: group for group in settings_groups() for name in variables(group)}
    missing = sorted(
        f"{name} ({group.__name__})"
        for name, group in everything.items()
        if name not in reconciler and name not in scaler and name not in tokens
    )
    assert not missing, f"settings with no value in deploy/helm/sandboxd: {missing}"
    # What `sandboxd scaler` reads (app.scaler.ScalerConfig): NATS, topology, its own group, backoff, the cluster.
    for group_name in ("NatsSettings", "TopologySettings", "ScalerSettings"):
        group = next(g for g in settings_groups() if g.__name__ == group_name)
        assert set(variables(group)) <= set(scaler), f"the scaler lacks {set(variables(group)) - set(scaler)}"
    read = {"SANDBOXD_RETRY_BASE_SECONDS", "SANDBOXD_RETRY_CAP_SECONDS", "KUBECONFIG", "SANDBOXD_KUBE_CONTEXT"}
    assert read <= set(scaler)


def test_secrets_come_from_secret_references_only(helm: Helm) -> None:
    objects = helm.template(values=(FULL_VALUES,))
    secret_names = {name for group in settings_groups() for name, f in variables(group).items() if is_secret(f)}
    secret_names |= {"NATS_USER", "SANDBOXD_GITOPS_USERNAME"}

    for deployment in by_kind(objects, "Deployment"):
        for name, entry in env_of(deployment).items():
            if name in secret_names:
                assert set(entry) == {"name", "valueFrom"}, entry
                assert set(entry["valueFrom"]) == {"secretKeyRef"}, entry
            else:
                assert "valueFrom" not in entry or "secretKeyRef" not in entry["valueFrom"], entry
    assert by_kind(objects, "Secret") == []


@pytest.mark.parametrize("values", [MINIMAL_VALUES, FULL_VALUES], ids=lambda p: Path(p).stem)
def test_the_rendered_environment_is_one_the_service_accepts(
    helm: Helm, monkeypatch: pytest.MonkeyPatch, values: Path
) -> None:
    objects = helm.template(values=(values,))
    for component in ("reconciler", "scaler"):
        env = environment(one(objects, "Deployment", component))
        use_environment(monkeypatch, env)
        for group in read_by(env):
            load(group)  # a ConfigurationError names the variable the chart got wrong
        if component == "reconciler":
            sandboxd.settings.load_settings()


def test_full_values_reach_the_settings(helm: Helm, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = helm.template(values=(FULL_VALUES,))
    use_environment(monkeypatch, environment(one(objects, "Deployment", "reconciler")))
    settings = sandboxd.settings.load_settings()

    assert settings.topology.replicas == 3
    assert settings.topology.ack_wait_s == 45.5
    assert settings.runtime.mcp_transport == "http"
    assert settings.runtime.gateway_section == "https"
    assert settings.runtime.hot_standby == "true"
    assert settings.nats.url == "tls://nats-0.nats:4222,tls://nats-1.nats:4222"
    assert settings.nats.creds_file == "/etc/sandboxd/nats/nats.creds"
    assert settings.nats.tls_key == "/etc/sandboxd/nats-tls/tls.key"
    assert settings.applier.kubeconfig == "/etc/sandboxd/kubeconfig/kubeconfig"
    assert settings.applier.kube_context == "workload-cluster"


def test_chart_defaults_are_the_service_defaults(helm: Helm, monkeypatch: pytest.MonkeyPatch) -> None:
    objects = helm.template()
    differences = []
    for component in ("reconciler", "scaler"):
        env = environment(one(objects, "Deployment", component))
        use_environment(monkeypatch, env)
        for group in read_by(env):
            loaded = load(group)
            for name, field in group.model_fields.items():
                variable = str(field.validation_alias)
                chart_sets = variable in env and not field.is_required() and variable not in DELIBERATE
                if chart_sets and getattr(loaded, name) != field.default:
                    differences.append(f"{variable}: chart {env[variable]!r}, service {field.default!r}")
    assert not differences, "chart defaults drifted from the service's (or add them to DELIBERATE):\n" + "\n".join(
        differences
    )


def test_values_yaml_names_every_variable_it_sets(helm: Helm) -> None:
    """Each value's comment names its variable, so values.yaml reads as the settings reference."""
    text = (CHART / "values.yaml").read_text()
    objects = helm.template(values=(FULL_VALUES,))
    literal = {
        name
        for deployment in by_kind(objects, "Deployment")
        for name, entry in env_of(deployment).items()
        if name not in {"HOME", "KUBECONFIG", "OTEL_EXPORTER_OTLP_ENDPOINT"}
        and not name.startswith("NATS_TLS")
        and name != "NATS_CREDS"
    }
    unnamed = sorted(name for name in literal if not re.search(rf"\b{name}\b", text))
    assert not unnamed, f"values.yaml does not name {unnamed}"
