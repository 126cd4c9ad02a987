"""Connecting to NATS with whatever credentials the settings carry (user/password, token, NKey, creds, TLS).

``connect`` makes one attempt (each server of the URL list tried in turn) and raises ``BrokerUnavailable`` saying
why in plain words (``errors.connect_failure``): whoever owns the process decides whether to try again (the
service, the scaler and the token writer retry with backoff while /readyz names the reason; a command prints it).
Once connected, a service's connection reconnects forever with a 20 s ping (a client that gives up after two
minutes of outage, nats-py's default, would silently stop the service). Secrets are read from ``SecretStr`` only
here and never logged.

Before any connect, every file the settings name (creds, TLS CA, certificate, key) must open and the TLS ones
load: nats-py reads a creds file only if the server asks for a signature, so a missing one would otherwise pass
unnoticed against a server without auth and read as "authorization failed" against one with another kind. An
unreadable file is a ``ConfigurationError`` naming the file and its variable (``errors.local_failure``), which
``sandboxd run`` exits on instead of retrying.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any, Final

import anyio
import nats.errors
from nats.aio.client import Client

from sandboxd.adapters.jetstream.errors import connect_failure, local_failure
from sandboxd.settings import NatsSettings

log = logging.getLogger(__name__)


#: The settings that name a file read while connecting, and the variable each is read from.
FILES: Final = {
    "creds_file": "NATS_CREDS",
    "tls_ca": "NATS_TLS_CA",
    "tls_cert": "NATS_TLS_CERT",
    "tls_key": "NATS_TLS_KEY",
}


def server_urls(settings: NatsSettings) -> list[str]:
    return [url.strip() for url in settings.url.split(",") if url.strip()]


def check_files(settings: NatsSettings, *, servers: str) -> None:
    """``ConfigurationError`` (a local failure) for the first file of ``FILES`` that is set and cannot be read."""
    for field, variable in FILES.items():
        path: str | None = getattr(settings, field)
        if not path:
            continue
        try:
            with open(path, "rb"):  # as nats-py and ssl will open it: no ~ expanded
                pass
        except OSError as exc:
            raise local_failure(exc, servers=servers, setting=variable) from exc


def tls_context(settings: NatsSettings, *, servers: str) -> ssl.SSLContext | None:
    """The TLS context of the settings, if any; a file that does not load is a local failure naming its variable."""
    if not (settings.tls_ca or settings.tls_cert or settings.url.startswith("tls://")):
        return None
    try:
        context = ssl.create_default_context(cafile=settings.tls_ca)
    except ssl.SSLError as exc:
        raise local_failure(exc, servers=servers, setting=f"NATS_TLS_CA {settings.tls_ca}") from exc
    if settings.tls_cert and settings.tls_key:
        try:
            context.load_cert_chain(settings.tls_cert, settings.tls_key)
        except ssl.SSLError as exc:
            pair = f"NATS_TLS_CERT {settings.tls_cert} with NATS_TLS_KEY {settings.tls_key}"
            raise local_failure(exc, servers=servers, setting=pair) from exc
    return context


def reconnect_policy(*, reconnect: bool) -> dict[str, Any]:
    """A service reconnects forever; a one-shot command (sandboxctl) gives up at once."""
    return {
        "max_reconnect_attempts": -1 if reconnect else 1,  # nats-py reads 0 as "forever"
        "reconnect_time_wait": 2 if reconnect else 0.1,
    }


def connect_options(settings: NatsSettings, *, reconnect: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect``, so tests can check what each setting turns into.

    Reads nothing but the files the settings name: ``ConfigurationError`` when one cannot be read or loaded.
    """
    servers = server_urls(settings)
    where = ", ".join(servers)
    check_files(settings, servers=where)
    options: dict[str, Any] = {
        "servers": servers,
        "name": settings.name,
        "inbox_prefix": settings.inbox_prefix,
        **reconnect_policy(reconnect=reconnect),
        "ping_interval": 20,
        "max_outstanding_pings": 3,
        "connect_timeout": 5,
    }
    if settings.user is not None and settings.password is not None:
        options["user"] = settings.user
        options["password"] = settings.password.get_secret_value()
    if settings.token is not None:
        options["token"] = settings.token.get_secret_value()
    if settings.nkey_seed is not None:
        options["nkeys_seed_str"] = settings.nkey_seed.get_secret_value()
    if settings.creds_file:
        options["user_credentials"] = settings.creds_file
    context = tls_context(settings, servers=where)
    if context is not None:
        options["tls"] = context
    return options


#: nats-py's close of a connection whose TLS handshake failed can wait forever on its half-open transport.
CLOSE_TIMEOUT_S: Final = 2.0


async def connect(
    settings: NatsSettings, *, allow_reconnect: bool = True, on_change: Callable[[bool], None] | None = None
) -> Client:
    """Connect once, or raise ``BrokerUnavailable`` naming the server and why (never the credentials).

    ``on_change(connected)`` is told at once when the connection drops and when it is back (readiness).
    """

    established = False  # once the first connect succeeded: only then is a drop an outage worth telling
    attempts: list[Exception] = []  # while connecting: the failure to report is the last one the servers gave

    async def on_error(exc: Exception) -> None:
        if not nc.is_connected and not nc.is_reconnecting:
            attempts.append(exc)
            return
        log.warning("nats error: %s", exc.__class__.__name__, extra={"error": str(exc)})

    async def on_disconnect() -> None:
        if not established:
            return  # the close of a first connect that failed: not the outage of a connection that never was
        log.info("nats disconnected")
        if on_change is not None:
            on_change(False)

    async def on_reconnect() -> None:
        log.info("nats reconnected")
        if on_change is not None:
            on_change(True)

    # One pass over the servers (nats-py would retry the first connect forever when reconnecting is allowed);
    # the reconnect policy is switched on once connected.
    options = connect_options(settings, reconnect=False)
    nc = Client()
    try:
        await nc.connect(
            **options,
            allow_reconnect=False,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
    except Exception as exc:
        with contextlib.suppress(Exception), anyio.move_on_after(CLOSE_TIMEOUT_S):
            await nc.close()  # an attempt refused after the socket opened leaves it open
        cause = attempts[-1] if isinstance(exc, nats.errors.NoServersError) and attempts else exc
        raise connect_failure(cause, servers=", ".join(options["servers"])) from exc
    established = True
    if allow_reconnect:
        nc.options.update(allow_reconnect=True, **reconnect_policy(reconnect=True))
    return nc
