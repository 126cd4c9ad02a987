"""The NATS connection flags every command shares, turned into ``NatsSettings``, and a bounded connect.

A flag wins over its environment variable (``NATS_URL``, ``NATS_USER``, ...), which ``NatsSettings`` reads
for whatever the flags leave out; a ``nats`` CLI context (``--context NAME``, ``NATS_CONTEXT``, or the one
``nats context select`` chose) fills in what both leave out. Secrets given as files (``--nkey-seed-file``,
``--creds``, a context's ``nkey``) are read here or by nats-py, never echoed; every secret of the settings
(those written into ``NATS_URL`` too) is taught to the command's ``Redaction``, which its logs and the CLI's
error boundary apply to every line.

A command connects once with ``connected``, under a deadline, so an unreachable server is one line of error
after ``--connect-timeout`` seconds instead of a hang (nats-py keeps retrying the first connect for as long as
the service's reconnect policy allows, i.e. forever); only ``watch`` reconnects after a later outage. It logs
(at INFO: ``-v``) where it connects and, once connected, to which server and how (``connection_details``:
the server's version, the kind of credentials and the user name, never a secret).
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from sandboxd.cli.events import SOURCE
from sandboxd.cli.exits import CommandError
from sandboxd.client import SandboxClient
from sandboxd.client.sandboxes import DEFAULT_CONNECT_TIMEOUT_S
from sandboxd.settings import NatsSettings, load
from sandboxd.settings.broker import nats_context
from sandboxd.telemetry import logs

log = logging.getLogger(__name__)


def add_connection_flags(parser: argparse.ArgumentParser, *, global_flags: bool = False) -> None:
    """The connection flags on ``parser``.

    For flags allowed before and after the subcommand (``sandboxctl -s URL status`` and ``sandboxctl status
    -s URL``), add them to the main parser with defaults and to each subcommand with ``global_flags=True``: a
    subcommand then sets only what it was given (``SUPPRESS``), and never resets what came before it.
    """
    unset: Any = argparse.SUPPRESS if global_flags else None
    group = parser.add_argument_group(
        "connection (flags win over the environment variables named, both over the NATS context)"
    )
    group.add_argument(
        "--context",
        metavar="NAME",
        default=unset,
        help="a nats CLI context (~/.config/nats/context/NAME.json; NATS_CONTEXT; default: the selected one)",
    )
    group.add_argument("--server", "-s", metavar="URL", default=unset, help="NATS URL(s), comma-separated (NATS_URL)")
    group.add_argument("--user", default=unset, help="user for user/password auth (NATS_USER)")
    group.add_argument("--password", default=unset, help="password for user/password auth (NATS_PASSWORD)")
    group.add_argument("--token", default=unset, help="token auth (NATS_TOKEN)")
    group.add_argument("--nkey-seed-file", metavar="FILE", default=unset, help="file holding an NKey seed (SU...)")
    group.add_argument("--creds", metavar="FILE", default=unset, help="a .creds file: JWT + NKey (NATS_CREDS)")
    group.add_argument("--tls-ca", metavar="FILE", default=unset, help="CA bundle to verify the server (NATS_TLS_CA)")
    group.add_argument(
        "--tls-cert", metavar="FILE", default=unset, help="client certificate for mutual TLS (NATS_TLS_CERT)"
    )
    group.add_argument("--tls-key", metavar="FILE", default=unset, help="client key for mutual TLS (NATS_TLS_KEY)")
    group.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        type=seconds,
        default=argparse.SUPPRESS if global_flags else DEFAULT_CONNECT_TIMEOUT_S,
        help=f"give up connecting after this long (default {DEFAULT_CONNECT_TIMEOUT_S:g})",
    )


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above zero (anything else is a usage error, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above zero")
    return value


def nats_settings(args: argparse.Namespace, *, client_name: str, redaction: logs.Redaction) -> NatsSettings:
    """``NatsSettings`` from the flags, the environment filling in what they leave out; ``redaction`` learns
    their secrets."""
    flags: dict[str, Any] = {
        "url": args.server,
        "user": args.user,
        "password": args.password,
        "token": args.token,
        "creds_file": args.creds,
        "tls_ca": args.tls_ca,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
    }
    if args.nkey_seed_file:
        flags["nkey_seed"] = read_secret_file(args.nkey_seed_file, what="NKey seed")
    overrides = {name: value for name, value in flags.items() if value is not None}
    context = nats_context(args.context)  # only what neither a flag nor the environment sets
    settings = load(NatsSettings, {**context, "name": client_name, **overrides})
    redaction.learn(settings)  # so no error line or log of this command can quote them
    return settings


def read_secret_file(path: str, *, what: str) -> str:
    try:
        text = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise CommandError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from exc
    if not text:
        raise CommandError(f"the {what} file {path} is empty")
    return text


@asynccontextmanager
async def connected_client(
    settings: NatsSettings,
    *,
    timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    reconnect: bool = False,
    on_connection: Callable[[bool], None] | None = None,
) -> AsyncIterator[SandboxClient]:
    """One client for one command, the first connect bounded by ``timeout``, closed at the end.

    ``reconnect``: keep reconnecting after a later outage (``watch``); otherwise the connection closes on it.
    ``on_connection(up)`` hears of each drop and each reconnect.
    """
    log.info("connecting to %s (within %gs)", logs.without_credentials(settings.url), timeout)
    async with SandboxClient.connect(
        settings, timeout=timeout, reconnect=reconnect, on_connection=on_connection, source=SOURCE
    ) as client:
        log.info("%s", connection_details(settings, client.nc))
        yield client


def connection_details(settings: NatsSettings, nc: Client) -> str:
    """One line on the connection: the server, its version, the credentials by kind, the inbox; no secret."""
    server = nc.connected_url
    version = nc.connected_server_version
    if settings.creds_file:
        auth = f"the creds file {settings.creds_file}"
    elif settings.nkey_seed is not None:
        auth = "an NKey seed"
    elif settings.token is not None:
        auth = "a token"
    elif settings.user:
        auth = f"user {settings.user} and a password"
    elif server is not None and server.username and server.password:
        auth = f"user {server.username} and a password, from the URL"
    elif server is not None and server.username:
        auth = "a token, from the URL"
    else:
        auth = "no credentials"
    tls = f", TLS (CA {settings.tls_ca})" if settings.tls_ca else ", TLS" if settings.tls_cert else ""
    where = logs.without_credentials(server.geturl() if server is not None else settings.url)
    return (
        f"connected to {where} (nats-server {version.major}.{version.minor}.{version.patch}) as {settings.name}, "
        f"with {auth}{tls}, inbox prefix {settings.inbox_prefix}"
    )


@asynccontextmanager
async def connected(settings: NatsSettings, *, timeout: float = DEFAULT_CONNECT_TIMEOUT_S) -> AsyncIterator[Client]:
    """The bare NATS connection of ``connected_client`` (``sandboxd init``)."""
    async with connected_client(settings, timeout=timeout) as client:
        yield client.nc
