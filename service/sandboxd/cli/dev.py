"""``sandboxd dev``: the whole thing on one machine, no cluster and no Docker (the README's ``make run``).

It starts an embedded nats-server on a free loopback port with its data under ``<data>/nats`` (default
``./.dev``), provisions the topology, and runs the service with the GitOps applier committing into the local
bare repository ``<data>/gitops.git`` (the directory applier into ``<data>/rendered`` when git or the GitOps
adapter is missing). Runtime settings a demo needs get pinned demo values unless the environment sets them.
It prints the NATS URL and the ``sandboxctl`` commands to try; ``--demo`` publishes one sample sandbox itself.
Ctrl-C drains the service, stops nats-server and exits 0.

What it deliberately does not do: read NATS_* credentials (the embedded server has none), or serve anything
beyond loopback.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio
from anyio import to_thread

from sandboxd.adapters.natsserver import NatsServer, preferred_port
from sandboxd.app.appliers import build_applier, gitops_available
from sandboxd.app.service import Service
from sandboxd.cli.events import SOURCE
from sandboxd.cli.serving import serve
from sandboxd.client import AlreadyExists, SandboxClient
from sandboxd.errors import BrokerUnavailable, ConfigurationError
from sandboxd.render import render
from sandboxd.settings import (
    ApplierSettings,
    NatsSettings,
    RuntimeSettings,
    Settings,
    TopologySettings,
    WorkerSettings,
    load,
)
from sandboxd.telemetry import logs

log = logging.getLogger("sandboxd.dev")

#: Demo values for what a real installation must set; any of these variables in the environment wins.
DEMO_RUNTIME: Final = {
    "SANDBOX_PTY_SERVER_IMAGE": "ghcr.io/openova-io/openova/sandbox-pty-server:dev-0.1.0",
    "SANDBOX_MCP_IMAGE": "ghcr.io/openova-io/openova/sandbox-mcp-server:dev-0.1.0",
    "SANDBOX_NEWAPI_URL": "https://newapi.sandbox.localhost/v1",
    "SANDBOX_SOVEREIGN_FQDN": "sandbox.localhost",
}
#: /healthz, /readyz and /metrics on loopback and a free port unless the environment says otherwise.
DEV_WORKER: Final = {"SANDBOXD_HEALTH_HOST": "127.0.0.1", "SANDBOXD_HEALTH_PORT": "0"}
DEMO_ID: Final = "demo"
DEMO_SPEC: Final[dict[str, Any]] = {
    "owner": {"email": "demo@example.com", "orgRef": {"slug": "acme"}},
    "quota": {"cpu": "2", "memory": "4Gi", "storage": "20Gi", "concurrentSessions": 2},
    "repos": [{"giteaRepo": "acme/demo"}],
    "agentCatalogue": ["claude-code", "opencode"],
}
READY_TIMEOUT_S: Final = 60.0
#: The port a NATS client tries when told nothing, so README's ``export NATS_URL`` works on a free machine.
NATS_PORT: Final = 4222


def add_parser(commands: Any) -> None:
    sub = commands.add_parser(
        "dev",
        help="embedded nats-server + GitOps into a local repository (no cluster needed)",
        description="Run everything on this machine: nats-server, the reconciler, a local GitOps repository.",
    )
    sub.add_argument("--data", default=".dev", metavar="DIR", help="where nats data and the repository live")
    sub.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"nats-server port on 127.0.0.1 (default: {NATS_PORT} when free, otherwise a free one; 0: a free one)",
    )
    sub.add_argument("--demo", action="store_true", help="publish one sample sandbox once the service is up")
    sub.set_defaults(handler=dev_command)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the dev service writes, and the command that shows it."""

    settings: ApplierSettings
    describe: str
    inspect: str


def unset_only(defaults: dict[str, str]) -> dict[str, str]:
    """``defaults`` (variable → value) without the variables the environment sets: the environment wins."""
    return {variable: value for variable, value in defaults.items() if variable not in os.environ}


def runtime_settings() -> RuntimeSettings:
    """The environment's runtime settings, with demo values for the required ones it leaves unset."""
    return load(RuntimeSettings, unset_only(DEMO_RUNTIME))


def target(data: Path) -> Target:
    repo, rendered = data / "gitops.git", data / "rendered"
    if gitops_available() and shutil.which("git"):
        settings = load(ApplierSettings, {"kind": "gitops", "gitops_repo": str(repo.resolve())})
        return Target(
            settings, f"gitops → {repo} (branch {settings.gitops_branch})", f"git --git-dir {repo} log --stat"
        )
    log.warning("git or the GitOps applier is not available: writing manifests to %s instead", rendered)
    settings = load(ApplierSettings, {"kind": "directory", "directory": str(rendered.resolve())})
    return Target(settings, f"directory → {rendered}", f"find {rendered} -name '*.yaml'")


def dev_settings(url: str, applier: ApplierSettings) -> Settings:
    nats = NatsSettings(
        url=url,
        name="sandboxd-dev",
        user=None,
        password=None,
        token=None,
        nkey_seed=None,
        creds_file=None,
        tls_ca=None,
        tls_cert=None,
        tls_key=None,
    )
    return Settings(
        runtime=runtime_settings(),
        nats=nats,
        topology=load(TopologySettings),
        worker=load(WorkerSettings, unset_only(DEV_WORKER)),
        applier=applier,
    )


def sandboxctl_command() -> str:
    """``sandboxctl`` when it is on PATH, else the path of the one installed beside this interpreter."""
    if shutil.which("sandboxctl"):
        return "sandboxctl"
    beside = Path(sys.executable).parent / "sandboxctl"
    return str(beside) if beside.exists() else "sandboxctl"


def banner(url: str, data: Path, where: Target, health: str, *, demo: bool = False) -> str:
    """What to try; with ``demo`` (``--demo`` creates ``demo`` itself) the create suggested is another one's."""
    ctl = sandboxctl_command()
    new = "alice" if demo else DEMO_ID
    return "\n".join(
        [
            "",
            "sandboxd dev is running.",
            f"  NATS     {url}  (data in {data / 'nats'})",
            f"  Applier  {where.describe}",
            f"  Health   {health}/readyz  (and /healthz, /metrics)",
            "",
            "Try it from another terminal:",
            f"  export NATS_URL={url}",
            f"  {ctl} create {new} --email {new}@example.com --org acme --sessions 2 --repo acme/demo",
            f"  {ctl} status",
            f"  {ctl} watch {DEMO_ID}",
            f"  {ctl} update {DEMO_ID} --email demo@example.com --org acme --sessions 3 --repo acme/demo",
            f"  {ctl} delete {DEMO_ID}",
            f"  {where.inspect}",
            "",
            "Ctrl-C stops everything.",
            "",
        ]
    )


async def wait_ready(service: Service) -> bool:
    with anyio.move_on_after(READY_TIMEOUT_S):
        while not service.health.ready:  # noqa: ASYNC110 - Health is a plain record the service updates
            await anyio.sleep(0.05)
        return True
    return False


async def publish_demo(service: Service) -> None:
    """Publish the sample sandbox on the service's own connection (one client fewer on a laptop), unless it
    exists already (a restart of ``make run``): the user's updates to it stay."""
    assert service.nc is not None, "called once the service is ready"
    try:
        done = await SandboxClient(service.nc, source=SOURCE).create(DEMO_ID, DEMO_SPEC)
    except AlreadyExists as exc:
        print(f"demo: {exc.message}; left as it is. Try: sandboxctl status {DEMO_ID}", flush=True)
        return
    print(
        f"demo: published sandbox.create.{DEMO_ID} (stream sequence {done.sequence}); try: sandboxctl status {DEMO_ID}",
        flush=True,
    )


async def run_dev(args: argparse.Namespace, server: NatsServer, redaction: logs.Redaction) -> int:
    data = Path(args.data)
    where = target(data)
    settings = dev_settings(server.url, where.settings)
    redaction.learn(settings)
    applier = await build_applier(where.settings, cache_dir=data / "clones")
    service = Service(settings, applier=applier, render=render)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def announce() -> None:
            if not await wait_ready(service):
                raise BrokerUnavailable(f"the service did not become ready within {READY_TIMEOUT_S:g}s")
            health = service.settings.worker.health_host
            port = service.endpoint.port if service.endpoint is not None else service.settings.worker.health_port
            print(banner(server.url, data, where, f"http://{health}:{port}", demo=args.demo), flush=True)
            if args.demo:
                await publish_demo(service)

        tg.start_soon(announce, name="announce")
        result = await serve(service.run, connected=lambda: service.health.connected, stop=stop)
        tg.cancel_scope.cancel()
    return result


async def dev_command(args: argparse.Namespace, redaction: logs.Redaction) -> int:
    data = Path(args.data)
    port = preferred_port(NATS_PORT) if args.port is None else args.port
    server = NatsServer(store_dir=data / "nats", port=port, log_file=data / "nats-server.log")
    try:
        # On this (the main) thread: the server dies with the thread that started it, and a worker thread ends.
        server.start()  # nothing else runs yet: blocking the loop for a few hundred milliseconds is harmless
    except ConfigurationError:
        raise
    except OSError as exc:
        raise ConfigurationError(f"cannot start nats-server under {data}: {exc}") from exc
    try:
        return await run_dev(args, server, redaction)
    finally:
        with anyio.CancelScope(shield=True):
            await to_thread.run_sync(partial(server.stop, 10.0))
