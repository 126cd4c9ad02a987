"""The service image users run, built from ./Dockerfile by a real Docker engine (``docker``): it runs as the
non-root user, `sandboxd --help` works in it on a read-only root filesystem, its health check asks the readiness
endpoint, and its OCI labels name the source, the version and the revision it was built from.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any, Final

import pytest

import sandboxd

from .charts import REPO_ROOT

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1500)]

NON_ROOT: Final = "65532"


def docker(*args: str) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr}"
    return proc.stdout


def inspect(image: str) -> dict[str, Any]:
    (found,) = json.loads(docker("image", "inspect", image))
    return dict(found)


def test_tagged_with_the_package_version(sandboxd_image: str) -> None:
    assert sandboxd_image == f"sandboxd:{sandboxd.__version__}"


def test_runs_as_non_root_on_a_read_only_root(sandboxd_image: str) -> None:
    assert inspect(sandboxd_image)["Config"]["User"] == f"{NON_ROOT}:{NON_ROOT}"
    ids = docker("run", "--rm", "--read-only", "--network", "none", "--entrypoint", "id", sandboxd_image)
    assert ids.split()[:2] == [f"uid={NON_ROOT}(sandboxd)", f"gid={NON_ROOT}(sandboxd)"]

    usage = docker("run", "--rm", "--read-only", "--network", "none", sandboxd_image, "--help")
    for command in ("run", "init", "scaler"):
        assert command in usage
    # git for the GitOps applier, and the data folder the non-root user may write.
    probe = "git --version && touch /var/lib/sandboxd/probe && test ! -w /opt/sandboxd"
    docker("run", "--rm", "--network", "none", "--entrypoint", "sh", sandboxd_image, "-c", probe)


def test_health_check_asks_readiness_of_sandboxd_run(sandboxd_image: str) -> None:
    config = inspect(sandboxd_image)["Config"]

    assert config["Entrypoint"] == ["sandboxd"]
    assert config["Cmd"] == ["run"]
    check = " ".join(config["Healthcheck"]["Test"])
    assert "/readyz" in check
    assert "SANDBOXD_HEALTH_PORT" in check


def test_oci_labels_name_source_version_and_revision(sandboxd_image: str) -> None:
    labels = inspect(sandboxd_image)["Config"]["Labels"]
    revision = labels["org.opencontainers.image.revision"]
    # The commit checked out when the image was built: HEAD then, so HEAD or one of its ancestors now.
    is_ancestor = ["git", "-C", str(REPO_ROOT), "merge-base", "--is-ancestor", revision, "HEAD"]

    assert labels["org.opencontainers.image.version"] == sandboxd.__version__
    assert len(revision) == 40
    assert subprocess.run(is_ancestor, capture_output=True, check=False).returncode == 0, revision
    assert labels["org.opencontainers.image.source"].startswith("https://github.com/")


def test_nkey_and_creds_logins_have_what_they_need(sandboxd_image: str) -> None:
    # nats-py signs the server's challenge with nkeys for NKey seeds and .creds files; the wheelhouse builds it.
    probe = "import nkeys; print(nkeys.from_seed(nkeys.encode_seed(bytes(32), nkeys.PREFIX_BYTE_USER)).public_key)"
    said = docker(
        "run", "--rm", "--network", "none", "--entrypoint", "/opt/sandboxd/bin/python", sandboxd_image, "-c", probe
    )
    assert said.startswith("b'U")
