"""docker-compose.yml run by the tests through testcontainers' ``DockerCompose``: a project of the test's own (name,
loopback ports, fresh NATS passwords), so a stack a developer runs is never touched, and after ``down -v`` nothing
of it may be left. ``publisher`` connects from the host as a platform service would.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import nats

from sandboxd.adapters.natsserver import free_port
from support.spine import Client

from .charts import REPO_ROOT

ROLES: Final = ("RECONCILER", "SCALER", "TOKENS", "PUBLISHER", "ACTIVITY", "CONSOLE", "ADMIN")


@dataclass(frozen=True)
class Stack:
    compose: Any  # testcontainers.compose.DockerCompose
    project: str
    env: dict[str, str]

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.env['NATS_PORT']}"

    def container_id(self, service: str) -> str:
        return str(self.compose.get_container(service, include_all=True).ID)

    def read(self, service: str, path: str) -> str:
        """A file inside a running service's container."""
        return str(self.compose.exec_in_container(["cat", path], service_name=service)[0])


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


@contextmanager
def running_stack(
    folder: Path, *, services: Sequence[str], images: dict[str, str], profiles: Sequence[str] = ()
) -> Iterator[Stack]:
    """``up --wait`` of ``services`` (every one healthy, one-shots completed), then ``down -v`` and the check that
    nothing is left. ``images`` sets the image variables (NATS_IMAGE); the env file goes into ``folder``."""
    from testcontainers.compose import DockerCompose  # noqa: PLC0415 - only where an engine answers

    project = f"sandboxd-test-{secrets.token_hex(4)}"
    env = {
        "COMPOSE_PROJECT_NAME": project,
        "NATS_PORT": str(free_port()),
        "NATS_MONITOR_PORT": str(free_port()),
        "SANDBOXD_HEALTH_HOST_PORT": str(free_port()),
        "KUBE_API_PORT": str(free_port()),
        # A letter first: nats-server 2.9 would parse a leading digit as a number (deploy/nats/accounts.conf).
        **{f"SANDBOXD_NATS_{role}_PASSWORD": f"p{secrets.token_hex(24)}" for role in ROLES},
        **images,
    }
    env_file = folder / "stack.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    env_file.chmod(0o600)
    compose = DockerCompose(
        REPO_ROOT,
        compose_file_name="docker-compose.yml",
        env_file=str(env_file),
        wait=True,
        services=list(services),
        profiles=list(profiles) or None,
    )
    # The project name must reach every compose command (up, ps, exec, down), not only the interpolation.
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
    """The first generation applied: objects written (GitOps commit or server-side apply)."""
    return bool(status.observed_generation == 1 and status.applied_objects)
