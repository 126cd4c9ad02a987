"""``sandboxd``: the reconciler process.

    sandboxd run      production: settings from the environment, the applier SANDBOXD_APPLIER names,
                      until SIGTERM/SIGINT (drains in-flight work; a second signal exits at once)
    sandboxd init     create or update the streams, buckets and consumers, then exit (pre-provisioning)
    sandboxd scaler   the sibling idle scaler: carries out sandbox.scale.* commands on the StatefulSets
    sandboxd tokens   the LLM-gateway token writer alone (SANDBOXD_TOKEN_WRITER=external, beside GitOps)
    sandboxd dev      everything on one machine: an embedded nats-server, the GitOps applier into a local
                      repository, demo settings (see ``cli.dev``)

Thin on purpose: settings come from ``sandboxd.settings``, the applier from ``sandboxd.app.appliers``, the
service from ``sandboxd.app.service``, the scaler from ``sandboxd.app.scaler``. Logs are JSON lines on stderr
unless ``SANDBOXD_LOG_FORMAT=text`` (``dev`` defaults to text). Exit codes: 0 after a clean stop, 1 for an
error (one line on stderr), 2 for a usage error, 130 when a second signal cut the drain short.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from functools import partial

from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.app.appliers import build_applier
from sandboxd.app.scaler import ScalerConfig, ScalerProcess
from sandboxd.app.service import Service, utc_now
from sandboxd.app.tokens import TokensProcess
from sandboxd.cli import dev
from sandboxd.cli.connection import add_connection_flags, connected, nats_settings
from sandboxd.cli.exits import OK, finish
from sandboxd.cli.serving import configure_logging, serve
from sandboxd.render import render
from sandboxd.settings import TopologySettings, load, load_settings
from sandboxd.telemetry import logs

PROG = "sandboxd"
log = logging.getLogger("sandboxd")


async def run_command(args: argparse.Namespace, redaction: logs.Redaction) -> int:
    settings = load_settings()
    redaction.learn(settings)
    applier = await build_applier(settings.applier)
    log.info("starting: applier %s, NATS %s", settings.applier.kind, settings.nats.url)
    service = Service(settings, applier=applier, render=render)
    return await serve(service.run, connected=lambda: service.health.connected)


async def scaler_command(args: argparse.Namespace, redaction: logs.Redaction) -> int:
    config = ScalerConfig.from_environment()
    redaction.learn(config)
    scaler = ScalerProcess(config)
    return await serve(scaler.run, connected=lambda: scaler.disposition is not None)


async def tokens_command(args: argparse.Namespace, redaction: logs.Redaction) -> int:
    settings = load_settings()
    redaction.learn(settings)
    process = TokensProcess(settings, clock=utc_now)
    log.info("starting the token writer: NATS %s", logs.without_credentials(settings.nats.url))
    return await serve(process.run, connected=lambda: process.connected)


async def init_command(args: argparse.Namespace, redaction: logs.Redaction) -> int:
    topology = load(TopologySettings)
    nats = nats_settings(args, client_name=f"{PROG}-init", redaction=redaction)
    async with connected(nats, timeout=args.connect_timeout) as nc:
        await ensure_topology(nc.jetstream(), topology)
    where = logs.without_credentials(nats.url)
    print(f"JetStream topology ready on {where} (replicas {topology.replicas})", flush=True)
    return OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="The sandbox reconciler.")
    verbose_help = "debug logging (else SANDBOXD_LOG_LEVEL)"
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run", help="run the reconciler (settings from the environment)", description="Run the reconciler."
    )
    run.set_defaults(handler=run_command)
    init = commands.add_parser(
        "init", help="create or update the JetStream topology and exit", description="Provision the topology."
    )
    add_connection_flags(init)
    init.set_defaults(handler=init_command)
    scaler = commands.add_parser(
        "scaler", help="run the idle scaler (settings from the environment)", description="Run the idle scaler."
    )
    scaler.set_defaults(handler=scaler_command)
    tokens = commands.add_parser(
        "tokens",
        help="run the LLM-gateway token writer alone (beside a GitOps reconciler)",
        description=(
            "Mint, write and rotate each sandbox's LLM-gateway token into its Secret, for a reconciler that cannot "
            "(a GitOps or directory `sandboxd run` with SANDBOXD_TOKEN_WRITER=external). Settings from the "
            "environment, as for `sandboxd run`, and NEWAPI_ADMIN_SECRET; /healthz, /readyz and /metrics on "
            "SANDBOXD_TOKENS_HEALTH_PORT."
        ),
    )
    tokens.set_defaults(handler=tokens_command)
    dev.add_parser(commands)
    for command in commands.choices.values():  # -v before or after the command, as sandboxctl takes its options
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    redaction = configure_logging(verbose=args.verbose, default_format="text" if args.command == "dev" else "json")
    return finish(PROG, partial(args.handler, args, redaction), redaction=redaction)


if __name__ == "__main__":
    sys.exit(main())
