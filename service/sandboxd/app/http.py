"""A process's HTTP endpoint: ``/healthz`` (alive), ``/readyz`` (ready to work, or what is not), ``/metrics``.

Every process serves one: the reconciler (``app.service``, on SANDBOXD_HEALTH_PORT), the scaler (``app.scaler``,
on SANDBOXD_SCALER_METRICS_PORT) and the token writer (``app.tokens``, on SANDBOXD_TOKENS_HEALTH_PORT). ``Health``
is the readiness record each of them keeps.

- ``/healthz``: 200 whenever the event loop answers; a liveness probe restarts a process that hangs.
- ``/readyz``: 200 ``{"ready": true}`` when the readiness source reports nothing missing (NATS connected, the
  consumer bound, JetStream answering, the apply target reachable when it can tell, not draining); otherwise
  503 with ``{"ready": false, "notReady": {"<check>": "<why>"}}``. JetStream counts as not answering once the
  process's fetch loop has failed for ``BROKER_GRACE_S`` without a success (a leader election usually ends
  sooner, and should not flap the probe).
- ``/metrics``: the Prometheus text exposition of the given registries, one after the other: the service's
  own (``sandboxd.telemetry``) and ``prometheus_client``'s default one (process figures, and any collector a
  module registered there). Their metric names must not overlap.

Each process opens it before connecting and closes it after draining, so a probe gets an answer (503) while
NATS is still being reached and while in-flight work finishes. Port 0 binds a free port; ``port`` says which.
What it deliberately does not do: touch NATS or the target on a probe (readiness is what the service last
observed), or serve anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sandboxd.errors import ConfigurationError

#: How long a closing endpoint waits for open connections (a scraper's keep-alive) before dropping them, s.
SHUTDOWN_S: Final = 1.0
#: How long JetStream may fail to answer a process's fetch loop before /readyz says so, s.
BROKER_GRACE_S: Final = 10.0

#: A readiness check: why the process is not ready, or None.
Check = Callable[[], str | None]


class Readiness(Protocol):
    def problems(self) -> dict[str, str]:
        """What keeps the process from being ready, by check name; empty when ready."""
        ...


@dataclass
class Health:
    """What /readyz reports: set by the process as it comes up and goes down."""

    connected: bool = False
    consumer_bound: bool = False
    draining: bool = False
    #: None when the target cannot tell (GitOps, directory); else whether it answered (or connected) last time.
    target_reachable: bool | None = None
    #: Why a check fails, in words, while it does (``"nats"``, ``"target"``: the last failed connect's message).
    details: dict[str, str] = field(default_factory=dict)
    #: Further checks by name, asked on every probe (cheap, no I/O), e.g. ``broker_check``.
    checks: dict[str, Check] = field(default_factory=dict)

    def problems(self) -> dict[str, str]:
        """What keeps the process from being ready, by check (the body of a 503 from /readyz)."""
        found: dict[str, str] = {}
        if not self.connected:
            found["nats"] = self.details.get("nats", "not connected")
        if not self.consumer_bound:
            found["consumer"] = "not bound"
        if self.draining:
            found["draining"] = "shutting down"
        if self.target_reachable is False:
            found["target"] = self.details.get("target", "unreachable")
        for name, check in self.checks.items():
            why = check()
            if why is not None:
                found[name] = why
        return found

    @property
    def ready(self) -> bool:
        return not self.problems()


class Failing(Protocol):
    """A loop that reports how long it has been failing (``runtime.loops.LoopGuard``)."""

    def failing_for(self) -> float: ...


def broker_check(loop: Failing, *, grace_s: float = BROKER_GRACE_S) -> Check:
    """Not ready while ``loop`` (the fetch loop) has failed for longer than ``grace_s`` without a success."""

    def check() -> str | None:
        failing = loop.failing_for()
        return f"JetStream has not answered for {failing:.0f}s" if failing > grace_s else None

    return check


class HealthEndpoint:
    """``variables`` names the settings of ``host`` and ``port`` for the error when the port cannot be bound."""

    def __init__(
        self,
        *,
        readiness: Readiness,
        registries: Sequence[CollectorRegistry],
        host: str,
        port: int,
        variables: str,
    ) -> None:
        self._readiness = readiness
        self._registries = tuple(registries)
        self._host = host
        self._port = port
        self._variables = variables
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._app = app

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the health endpoint is not started")
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigurationError(
                f"cannot serve /healthz /readyz /metrics on {self._host}:{self._port} "
                f"({self._variables}): {exc.strerror or exc}"
            ) from exc
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> HealthEndpoint:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.stop()

    # --- handlers ------------------------------------------------------------------------------------------

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def _readyz(self, _request: web.Request) -> web.Response:
        problems = self._readiness.problems()
        if problems:
            return web.json_response({"ready": False, "notReady": problems}, status=503)
        return web.json_response({"ready": True})

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = b"".join(generate_latest(registry) for registry in self._registries)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
