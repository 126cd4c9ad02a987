"""A process's start-up steps that wait for a dependency: retried with backoff while /readyz names what is missing.

``sandboxd run``, ``sandboxd scaler`` and ``sandboxd tokens`` may start before NATS or the Kubernetes API server
answers (a pod scheduled first, a node reboot, docker compose starting everything at once). Their first connect
is therefore ``reach``: the step (one attempt, translated to the error tree by its adapter) is retried by
``runtime.loops.until_done`` while it fails with a ``RetryableError`` (a growing, capped pause; logged once per
kind of failure), and in the meantime the process's ``Health.details[check]`` carries the failure's message, so
``/readyz`` answers 503 with, for example, ``{"nats": "cannot connect to NATS at …: connection refused; …"}``.

What ends the wait: success, a permanent error (a bad setting, raised with its message), or cancellation (a
signal: ``cli.serving`` cancels a process still waiting for its first connect).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sandboxd.app.http import Health
from sandboxd.errors import SandboxdError
from sandboxd.runtime.loops import LoopGuard, until_done

T = TypeVar("T")


async def reach(step: Callable[[], Awaitable[T]], *, check: str, health: Health, guard: LoopGuard) -> T:
    """``step()`` until it succeeds, its latest failure shown as ``check`` on /readyz meanwhile."""

    async def attempt() -> T:
        try:
            return await step()
        except SandboxdError as exc:
            health.details[check] = exc.message
            raise

    result = await until_done(attempt, guard)
    health.details.pop(check, None)
    return result
