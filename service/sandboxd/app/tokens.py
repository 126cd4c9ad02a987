"""Wiring the token writer: which process runs it, its adapters, and its loop.

Minting is on when ``NEWAPI_ADMIN_SECRET`` is set. ``SANDBOXD_TOKEN_WRITER`` says where it runs:

- ``service`` (default): inside ``sandboxd run``, which must use the Kubernetes applier (the writer needs the
  cluster); after a mint it kicks the sandbox's reconcile, so the pods restart within a pass;
- ``external``: in ``sandboxd tokens``, a process of its own with cluster access that writes only the token
  Secrets, next to a GitOps (or directory) ``sandboxd run``; that reconciler stamps the revisions it finds in
  status on its next pass of the sandbox (a resync at the latest).

Either way the reconciler reads token revisions from status (``Reconciler(token_revisions=...)``) only when a
writer exists, so a deployment without minting pays no extra read.

What it deliberately does not do: mint (``reconcile.tokens``) or talk HTTP (``adapters.newapi``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import anyio
import prometheus_client

from sandboxd import naming
from sandboxd.adapters.jetstream.connection import connect
from sandboxd.adapters.jetstream.stores import KvStore
from sandboxd.adapters.newapi import NewApiBridge
from sandboxd.app.http import Health, HealthEndpoint, broker_check
from sandboxd.app.starting import reach
from sandboxd.errors import ConfigurationError
from sandboxd.models.desired import DesiredState
from sandboxd.models.status import SandboxStatus
from sandboxd.naming import SandboxId
from sandboxd.reconcile.ports import Store
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.reconcile.tokens import TokenBridge, TokenSecrets, TokenWriter
from sandboxd.runtime.loops import LoopGuard, until_done
from sandboxd.settings import Settings
from sandboxd.settings.tokens import TokenSettings
from sandboxd.telemetry.metrics import Instruments
from sandboxd.telemetry.providers import Telemetry

log = logging.getLogger(__name__)


def feeds_revisions(tokens: TokenSettings) -> bool:
    """Whether some token writer records revisions the reconciler must stamp on the pod templates."""
    return tokens.writer == "external" or tokens.minting


def writer_in_service(settings: Settings) -> bool:
    """Whether ``sandboxd run`` itself runs the writer; ``ConfigurationError`` when it cannot (no cluster)."""
    tokens = settings.tokens
    if not tokens.minting or tokens.writer != "service":
        return False
    if settings.applier.kind != "kubernetes":
        raise ConfigurationError(
            f"NEWAPI_ADMIN_SECRET is set but SANDBOXD_APPLIER={settings.applier.kind} has no cluster to write token "
            "Secrets to: run `sandboxd tokens` beside it and set SANDBOXD_TOKEN_WRITER=external (docs/operations.md)"
        )
    return True


def bridge_from(tokens: TokenSettings) -> NewApiBridge:
    if tokens.admin_secret is None:
        raise ConfigurationError("NEWAPI_ADMIN_SECRET is required to mint tokens")
    return NewApiBridge(tokens.base_url, tokens.admin_secret, timeout_s=tokens.timeout_s)


async def secrets_from(settings: Settings) -> TokenSecrets:
    try:
        from sandboxd.adapters.kubernetes.tokens import KubeTokenSecrets  # noqa: PLC0415 - only when minting
    except ImportError as exc:
        raise ConfigurationError(f"the token writer needs the Kubernetes adapter, which cannot load ({exc})") from exc
    runtime = settings.runtime
    return await KubeTokenSecrets.from_settings(
        settings.applier, secret_name=runtime.llm_gateway_token_secret, key=runtime.llm_gateway_token_key
    )


@dataclass
class TokenLoop:
    """The writer and what it holds open; ``run`` sweeps every ``SANDBOXD_TOKEN_CHECK_SECONDS`` until cancelled."""

    writer: TokenWriter
    bridge: TokenBridge
    secrets: TokenSecrets
    interval_s: float

    async def run(self, guard: LoopGuard) -> None:
        """Sweep until cancelled, then release the bridge session and the Kubernetes client."""
        try:
            await guard.forever(self.writer.sweep, every_s=lambda: self.interval_s)
        finally:
            with anyio.CancelScope(shield=True):
                await self.aclose()

    async def aclose(self) -> None:
        await self.bridge.aclose()
        await self.secrets.aclose()


async def token_loop(
    settings: Settings,
    *,
    desired: Store[DesiredState],
    status: StatusWriter,
    clock: Callable[[], datetime],
    kick: Callable[[SandboxId], None] | None,
    bridge: TokenBridge | None = None,
    secrets: TokenSecrets | None = None,
    metrics: Instruments | None = None,
) -> TokenLoop:
    """The writer over real adapters (or the ones given, for tests); ``metrics`` count its outcomes."""
    bridge = bridge or bridge_from(settings.tokens)
    secrets = secrets or await secrets_from(settings)
    writer = TokenWriter(
        desired=desired,
        status=status,
        bridge=bridge,
        secrets=secrets,
        settings=settings.tokens,
        clock=clock,
        kick=kick,
        metrics=metrics,
    )
    log.info(
        "token writer on: bridge %s, channels %s, rotation %.0f s before expiry",
        settings.tokens.base_url,
        ",".join(settings.tokens.channel_list),
        settings.tokens.lead_s,
    )
    return TokenLoop(writer=writer, bridge=bridge, secrets=secrets, interval_s=settings.tokens.check_interval_s)


class TokensProcess:
    """``sandboxd tokens``: the writer alone (``SANDBOXD_TOKEN_WRITER=external``), beside a GitOps reconciler.

    It reads desired state and writes status in NATS, mints with the bridge, and writes only the token Secrets in
    the cluster (docs/security.md: its RBAC is get and patch of those Secrets in sandbox namespaces). It kicks
    nothing: the reconciler stamps a new revision on its next pass of the sandbox (a resync at the latest).

    Probes like the scaler's (``app.http``, on ``SANDBOXD_TOKENS_HEALTH_HOST``/``SANDBOXD_TOKENS_HEALTH_PORT``):
    ``/readyz`` is 200 while NATS is connected, both buckets are open, the writer's sweeps succeed (within
    ``BROKER_GRACE_S``) and no stop was asked for; else 503 naming what is missing. NATS may come up after it
    (``app.starting.reach``). ``/metrics`` serves ``sandboxd_tokens_total`` and the loop-error counter.
    ``bridge`` and ``secrets`` replace the real adapters (tests).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime],
        bridge: TokenBridge | None = None,
        secrets: TokenSecrets | None = None,
    ) -> None:
        if not settings.tokens.minting:
            raise ConfigurationError("sandboxd tokens needs NEWAPI_ADMIN_SECRET (the bridge's admin bearer)")
        self.settings = settings
        self.clock = clock
        self._bridge, self._secrets = bridge, secrets
        self.health = Health(consumer_bound=True)  # no consumer: the buckets stand for it (``checks["buckets"]``)
        self.health.checks["buckets"] = lambda: None if self.loop is not None else "desired and status not open yet"
        self.telemetry = Telemetry.from_environment()
        self.telemetry.instruments.watch_ready(lambda: self.health.ready)
        self.endpoint: HealthEndpoint | None = None
        self.loop: TokenLoop | None = None

    @property
    def connected(self) -> bool:
        """Past the first connect (``cli.serving``: a stop before it has nothing to drain)."""
        return self.health.connected

    async def run(self, stop: anyio.Event) -> None:
        tokens = self.settings.tokens
        endpoint = HealthEndpoint(
            readiness=self.health,
            registries=[self.telemetry.registry, prometheus_client.REGISTRY],
            host=tokens.health_host,
            port=tokens.health_port,
            variables="SANDBOXD_TOKENS_HEALTH_HOST/SANDBOXD_TOKENS_HEALTH_PORT",
        )
        try:
            async with endpoint:
                self.endpoint = endpoint
                await self._run(stop)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.telemetry.shutdown)

    async def _run(self, stop: anyio.Event) -> None:
        metrics = self.telemetry.instruments
        guard = LoopGuard("token writer", record=metrics.loop_failed)
        connecting = partial(connect, self.settings.nats, on_change=self._connection_changed)
        nc = await reach(connecting, check="nats", health=self.health, guard=guard)
        self.health.connected = True
        try:
            js = nc.jetstream()
            desired = await until_done(partial(KvStore.open, js, naming.DESIRED_BUCKET, DesiredState), guard)
            status_store = await until_done(partial(KvStore.open, js, naming.STATUS_BUCKET, SandboxStatus), guard)
            loop = await token_loop(
                self.settings,
                desired=desired,
                status=StatusWriter(status_store),
                clock=self.clock,
                kick=None,
                bridge=self._bridge,
                secrets=self._secrets,
                metrics=metrics,
            )
            self.loop = loop
            self.health.checks["jetstream"] = broker_check(guard)
            async with anyio.create_task_group() as tg:
                tg.start_soon(partial(loop.run, guard), name="token-writer")
                await stop.wait()
                self.health.draining = True
                tg.cancel_scope.cancel()
        finally:
            self.health.draining = True
            with anyio.CancelScope(shield=True):
                try:
                    await nc.drain()
                except Exception:  # noqa: BLE001 - draining a reconnecting connection fails; closing is enough
                    await nc.close()
                self.health.connected = False

    def _connection_changed(self, connected: bool) -> None:
        self.health.connected = connected
