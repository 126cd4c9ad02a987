"""Connecting to NATS with whatever credentials the settings carry (user/password, token, NKey, creds, TLS).

Reconnects forever with a 20 s ping (a client that gives up after two minutes of outage, nats-py's default,
would silently stop the service). Secrets are read from ``SecretStr`` only here and never logged.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

import nats
from nats.aio.client import Client

from sandboxd.errors import BrokerUnavailable
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


async def connect(
    settings: NatsSettings, *, allow_reconnect: bool = True, on_change: Callable[[bool], None] | None = None
) -> Client:
    """Connect, or raise ``BrokerUnavailable`` naming the server (never the credentials).

    ``on_change(connected)`` is told at once when the connection drops and when it is back (readiness).
    """

    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc.__class__.__name__, extra={"error": str(exc)})

    async def on_disconnect() -> None:
        log.info("nats disconnected")
        if on_change is not None:
            on_change(False)

    async def on_reconnect() -> None:
        log.info("nats reconnected")
        if on_change is not None:
            on_change(True)

    options = connect_options(settings, reconnect=allow_reconnect)
    try:
        return await nats.connect(
            **options,
            allow_reconnect=allow_reconnect,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
    except Exception as exc:
        servers = ", ".join(options["servers"])
        raise BrokerUnavailable(
            f"cannot connect to NATS at {servers} ({exc.__class__.__name__}; is the server running, and are the "
            "URL and credentials right?)"
        ) from exc
