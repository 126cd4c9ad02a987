"""Connecting to NATS with whatever credentials the settings carry (user/password, token, NKey, creds, TLS).

``connect`` makes one attempt (each server of the URL list tried in turn) and raises ``BrokerUnavailable`` saying
why in plain words (``errors.connect_failure``): whoever owns the process decides whether to try again (the
service, the scaler and the token writer retry with backoff while /readyz names the reason; a command prints it).
Once connected, a service's connection reconnects forever with a 20 s ping (a client that gives up after two
minutes of outage, nats-py's default, would silently stop the service). Secrets are read from ``SecretStr`` only
here and never logged.
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

from sandboxd.adapters.jetstream.errors import connect_failure
from sandboxd.settings import NatsSettings

log = logging.getLogger(__name__)


def tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    if not (settings.tls_ca or settings.tls_cert or settings.url.startswith("tls://")):
        return None
    context = ssl.create_default_context(cafile=settings.tls_ca)
    if settings.tls_cert and settings.tls_key:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def connect_options(settings: NatsSettings, *, reconnect: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect``; pure, so tests can check what each setting turns into."""
    options: dict[str, Any] = {
        "servers": [url.strip() for url in settings.url.split(",") if url.strip()],
        "name": settings.name,
        "inbox_prefix": settings.inbox_prefix,
        # A service reconnects forever; a one-shot command (sandboxctl) gives up at once.
        "max_reconnect_attempts": -1 if reconnect else 1,  # nats-py reads 0 as "forever"
        "reconnect_time_wait": 2 if reconnect else 0.1,
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
    context = tls_context(settings)
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
        reconnecting = connect_options(settings, reconnect=True)
        nc.options.update(
            allow_reconnect=True,
            max_reconnect_attempts=reconnecting["max_reconnect_attempts"],
            reconnect_time_wait=reconnecting["reconnect_time_wait"],
        )
    return nc
