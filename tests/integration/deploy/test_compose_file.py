"""docker-compose.yml and the Dockerfile, read: the services and profiles, pinned images (never ``latest``), health
checks, published ports on loopback, stop grace longer than the drain, versions that agree with
tools/kube/versions.env, and environments the service accepts. test_compose_stack.py runs the stack.
"""

from __future__ import annotations

import os
import re
from typing import Any, Final

import pytest
import yaml

import sandboxd
import sandboxd.settings
from sandboxd.settings.fields import pinned_image
from sandboxd.settings.service import WorkerSettings

from .charts import REPO_ROOT

COMPOSE: Final = REPO_ROOT / "docker-compose.yml"
DOCKERFILE: Final = REPO_ROOT / "Dockerfile"
VERSIONS: Final = REPO_ROOT / "tools" / "kube" / "versions.env"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved as compose resolves them
    assert isinstance(document, dict)
    return document


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def default_of(value: str) -> str:
    """``${VARIABLE:-default}`` → ``default`` (what compose uses when the variable is unset); else ``value``."""
    found = re.fullmatch(r"\$\{[A-Z_]+:-([^}]+)\}", value)
    return found.group(1) if found else value


def pinned_versions() -> dict[str, str]:
    return dict(re.findall(r"^([A-Z_]+)=(\S+)", VERSIONS.read_text(), flags=re.MULTILINE))


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    by_profile = {name: tuple(spec.get("profiles", ())) for name, spec in services(compose).items()}

    assert by_profile == {
        "nats": (),
        "init": (),
        "reconciler": (),
        "kube-pki": ("kube",),
        "etcd": ("kube",),
        "kube-apiserver": ("kube",),
        "kube-crds": ("kube",),
        "reconciler-kube": ("kube",),
        "k3s": ("k3s",),
        "k3s-gateway-api": ("k3s",),
        "reconciler-k3s": ("k3s",),
        "scaler": ("k3s",),
    }


def test_every_image_is_pinned_and_nothing_says_latest(compose: dict[str, Any]) -> None:
    assert not re.search(r":latest\b", COMPOSE.read_text())
    for name, spec in services(compose).items():
        image = default_of(spec["image"])
        assert pinned_image(image) == image, name
    built = {name for name, spec in services(compose).items() if "build" in spec}
    assert built == {"init", "reconciler", "reconciler-kube", "reconciler-k3s", "scaler"}
    assert {services(compose)[name]["image"] for name in built} == {f"sandboxd:{sandboxd.__version__}"}


def test_nats_runs_jetstream(compose: dict[str, Any]) -> None:
    nats = services(compose)["nats"]

    assert re.fullmatch(r"\$\{NATS_IMAGE:-nats:\d+\.\d+\.\d+-alpine\}", nats["image"])
    assert "-js" in nats["command"]
    assert "/data" in nats["command"]


def test_k3s_is_privileged_and_matches_the_pinned_kubernetes_minor(compose: dict[str, Any]) -> None:
    k3s = services(compose)["k3s"]
    versions = pinned_versions()
    minor = ".".join(versions["KUBERNETES_VERSION"].split(".")[:2])  # v1.36

    assert k3s["privileged"] is True
    assert re.fullmatch(rf"rancher/k3s:{re.escape(minor)}\.\d+-k3s\d+", k3s["image"])
    assert services(compose)["k3s-gateway-api"]["image"] == k3s["image"]
    gateway_api = " ".join(services(compose)["k3s-gateway-api"]["command"])
    assert f"/download/{versions['GATEWAY_API_VERSION']}/standard-install.yaml" in gateway_api


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    for name, spec in services(compose).items():
        if name == "k3s-gateway-api":
            assert spec["restart"] == "on-failure"  # a one-shot job
            continue
        if name == "init":
            assert spec["restart"] == "no"  # a one-shot job
            assert spec["healthcheck"] == {"disable": True}
            continue
        if name in {"kube-pki", "kube-crds"}:
            assert spec["restart"] == "no"  # one-shot jobs of images without the service's health check
            continue
        assert spec["healthcheck"]["test"][0] == "CMD", name
    for name in ("reconciler", "reconciler-k3s"):
        assert "127.0.0.1:8081/readyz" in " ".join(services(compose)[name]["healthcheck"]["test"])
    scaler = services(compose)["scaler"]
    port = scaler["environment"]["SANDBOXD_SCALER_METRICS_PORT"]
    assert f"127.0.0.1:{port}/readyz" in " ".join(scaler["healthcheck"]["test"])


def test_reconcilers_use_an_applier_that_fits_where_they_run(compose: dict[str, Any]) -> None:
    local, k3s = services(compose)["reconciler"], services(compose)["reconciler-k3s"]

    assert local["environment"]["SANDBOXD_APPLIER"] in {"gitops", "directory"}
    assert "KUBECONFIG" not in local["environment"]
    assert k3s["environment"]["SANDBOXD_APPLIER"] == "kubernetes"
    assert k3s["environment"]["KUBECONFIG"] == "/tmp/kubeconfig"  # noqa: S108 - the container's own tmpfs
    assert k3s["depends_on"]["k3s-gateway-api"]["condition"] == "service_completed_successfully"
    for name in ("reconciler", "reconciler-k3s", "scaler"):
        assert services(compose)[name]["read_only"] is True
        assert services(compose)[name]["command"] in (["run"], ["scaler"])


@pytest.mark.parametrize("name", ["reconciler", "reconciler-k3s"])
def test_reconciler_environments_are_accepted_by_the_service(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    for variable in list(os.environ):
        if variable.startswith(("SANDBOX", "NATS_")) or variable == "KUBECONFIG":
            monkeypatch.delenv(variable)
    for variable, value in services(compose)[name]["environment"].items():
        monkeypatch.setenv(variable, str(value))

    settings = sandboxd.settings.load_settings()

    assert settings.nats.url == "nats://nats:4222"


def test_dockerfile_is_pinned_non_root_and_runs_sandboxd() -> None:
    text = DOCKERFILE.read_text()

    # The public base pinned by tag and digest; the tests pass their locally made one as BASE_IMAGE.
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11\.\d+-slim-\w+@sha256:[0-9a-f]{64}$", text, flags=re.MULTILINE)
    assert text.count("FROM ${BASE_IMAGE}") == 2  # multi-stage, one pinned base
    assert "HEALTHCHECK" in text
    for label in ("source", "version", "revision"):
        assert f"org.opencontainers.image.{label}=" in text
    assert not re.search(r":latest\b", text)
    assert re.search(r"apt-get install .*\bgit\b", text)
    assert "USER 65532:65532" in text
    assert 'ENTRYPOINT ["sandboxd"]' in text
    assert 'CMD ["run"]' in text
    ignored = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") :][:5] == ["*", "!pyproject.toml", "!README.md", "!service/", "!.wheelhouse/"]


def test_k3s_health_check_reads_the_kubeconfig_k3s_writes(compose: dict[str, Any]) -> None:
    k3s = services(compose)["k3s"]
    written = next(arg.split("=", 1)[1] for arg in k3s["command"] if arg.startswith("--write-kubeconfig="))

    assert k3s["healthcheck"]["test"][:3] == ["CMD", "kubectl", "--kubeconfig"]
    assert k3s["healthcheck"]["test"][3] == written


def test_published_ports_listen_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, spec in services(compose).items():
        for port in spec.get("ports", ()):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_services_that_drain_get_longer_than_the_drain_to_stop(compose: dict[str, Any]) -> None:
    drain = WorkerSettings.model_fields["shutdown_grace_s"].default
    for name in ("reconciler", "reconciler-kube", "reconciler-k3s", "scaler"):
        grace = services(compose)[name]["stop_grace_period"]
        assert grace.endswith("s"), name
        assert float(grace[:-1]) > drain, name


def test_processes_start_after_init_provisioned_the_topology(compose: dict[str, Any]) -> None:
    assert services(compose)["init"]["command"] == ["init"]
    assert services(compose)["init"]["environment"]["NATS_USER"] == "sandboxd-admin"
    for name in ("reconciler", "reconciler-kube", "reconciler-k3s", "scaler"):
        assert services(compose)[name]["depends_on"]["init"] == {"condition": "service_completed_successfully"}


def test_kube_profile_runs_the_pinned_control_plane_from_local_images(compose: dict[str, Any]) -> None:
    versions = pinned_versions()
    etcd, apiserver = services(compose)["etcd"], services(compose)["kube-apiserver"]

    assert etcd["image"] == f"sandboxd-etcd:{versions['ETCD_VERSION']}"
    assert apiserver["image"] == f"sandboxd-kube-apiserver:{versions['KUBERNETES_VERSION']}"
    assert services(compose)["kube-crds"]["image"] == apiserver["image"]
    for name in ("etcd", "kube-apiserver", "kube-crds"):
        assert services(compose)[name]["pull_policy"] == "never", name  # tools/docker/images.sh kube makes them
    reconciler = services(compose)["reconciler-kube"]
    assert reconciler["environment"]["SANDBOXD_APPLIER"] == "kubernetes"
    assert reconciler["environment"]["KUBECONFIG"] == "/pki/kubeconfig"
    assert reconciler["depends_on"]["kube-crds"] == {"condition": "service_completed_successfully"}
