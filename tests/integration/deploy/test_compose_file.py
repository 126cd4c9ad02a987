"""docker-compose.yml and the Dockerfile: the services and profiles, pinned images (never ``latest``), health checks,
versions that agree with tools/kube/versions.env, and environments the service accepts; plus (``docker``) a smoke
run through testcontainers, skipped with one line where no Docker engine answers.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any, Final

import pytest
import yaml

import sandboxd
import sandboxd.settings
from sandboxd.settings.fields import pinned_image

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


def pinned_versions() -> dict[str, str]:
    return dict(re.findall(r"^([A-Z_]+)=(\S+)", VERSIONS.read_text(), flags=re.MULTILINE))


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    by_profile = {name: tuple(spec.get("profiles", ())) for name, spec in services(compose).items()}

    assert by_profile == {
        "nats": (),
        "reconciler": (),
        "k3s": ("k3s",),
        "k3s-gateway-api": ("k3s",),
        "reconciler-k3s": ("k3s",),
        "scaler": ("k3s",),
    }


def test_every_image_is_pinned_and_nothing_says_latest(compose: dict[str, Any]) -> None:
    assert not re.search(r":latest\b", COMPOSE.read_text())
    for name, spec in services(compose).items():
        assert pinned_image(spec["image"]) == spec["image"], name
    built = {name for name, spec in services(compose).items() if "build" in spec}
    assert built == {"reconciler", "reconciler-k3s", "scaler"}
    assert {services(compose)[name]["image"] for name in built} == {f"sandboxd:{sandboxd.__version__}"}


def test_nats_runs_jetstream(compose: dict[str, Any]) -> None:
    nats = services(compose)["nats"]

    assert re.fullmatch(r"nats:\d+\.\d+\.\d+-alpine", nats["image"])
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


# --- a smoke run where Docker answers ---------------------------------------------------------------------


def docker_engine() -> str | None:
    """None when a Docker engine and the compose plugin answer, else why not (one line)."""
    try:
        import docker  # noqa: PLC0415 - the testcontainers dependency, only for this check

        docker.from_env(timeout=3).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine here"
        return f"no Docker engine answers ({type(exc).__name__}); the compose smoke test needs one"
    proc = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return "the docker compose plugin is not installed"
    return None


@pytest.fixture(scope="module")
def running_compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    reason = docker_engine()
    if reason is not None:
        pytest.skip(reason)
    from testcontainers.compose import DockerCompose  # noqa: PLC0415 - needs docker, checked above

    # The NATS passwords compose requires (deploy/nats/accounts.conf), fresh for this run, in a file of its own.
    passwords = tmp_path_factory.mktemp("compose") / "nats.env"
    roles = ("RECONCILER", "SCALER", "PUBLISHER", "ACTIVITY", "CONSOLE", "ADMIN")
    passwords.write_text("".join(f"SANDBOXD_NATS_{role}_PASSWORD=p{secrets.token_hex(24)}\n" for role in roles))
    stack = DockerCompose(
        REPO_ROOT,
        compose_file_name="docker-compose.yml",
        build=True,
        wait=True,
        services=["nats", "reconciler"],
        env_file=str(passwords),
    )
    with stack:
        yield stack


@pytest.mark.docker
@pytest.mark.timeout(1200)
def test_compose_stack_comes_up_healthy(running_compose: Any) -> None:
    host = running_compose.get_service_host("reconciler", 8081) or "127.0.0.1"
    port = running_compose.get_service_port("reconciler", 8081)
    with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=5) as response:
        assert response.status == 200
    nats_port = running_compose.get_service_port("nats", 8222)
    health = f"http://{host}:{nats_port}/healthz?js-enabled-only=true"
    with urllib.request.urlopen(health, timeout=5) as response:
        assert response.status == 200
