"""Whether a Docker engine and the compose plugin answer here, for the ``docker`` marker (tests/conftest.py).

The docker tests use whatever engine ``docker`` reaches (``DOCKER_HOST`` or the default socket) and never install
one: ``tools/docker/engine.sh`` does that, and CI runs it first. Without an engine they skip with one line, except
with ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import functools
import subprocess

ENGINE_SCRIPT = "tools/docker/engine.sh"


@functools.cache
def unavailable() -> str | None:
    """None when an engine and ``docker compose`` answer, else why not (one line). Asked once per session."""
    try:
        info = subprocess.run(
            ["docker", "version", "--format", "{{.Server.APIVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no Docker engine answers ({type(exc).__name__}); {ENGINE_SCRIPT} starts one"
    if info.returncode != 0:
        return f"no Docker engine answers; {ENGINE_SCRIPT} starts one"
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20, check=False)
    if compose.returncode != 0:
        return f"the docker compose plugin is not installed; {ENGINE_SCRIPT} builds one"
    return None
