"""How to reach NATS and how big to make the JetStream topology.

Credentials are ``SecretStr`` and never printed. Exactly one of user/password, token, NKey seed or creds file
is normally set; TLS works with any of them. The inbox prefix
is the start of every reply subject the connection subscribes to: a server that grants each user only its own
prefix (``deploy/nats/accounts.conf``) keeps one user from reading another's replies.

``nats_context`` reads a ``nats`` CLI context (ADR-21: ``$XDG_CONFIG_HOME/nats/context/<name>.json``, the
selected name in ``nats/context.txt``) for the clients (``sandboxctl``, ``sandboxd init``, ``sandboxd.client``);
``sandboxd run`` never reads one. A context only fills in what the environment leaves unset: explicit values win.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr, field_validator, model_validator

from sandboxd.errors import ConfigurationError
from sandboxd.settings.fields import Group, env

DAY = 86_400.0
#: Literal subject tokens only: a wildcard or a space in a prefix would make every reply subject invalid.
_INBOX_PREFIX: Final = re.compile(r"^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$")
#: A context name is a file name in one folder: no separators, no "..".
_CONTEXT_NAME: Final = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")


class NatsSettings(Group):
    url: str = env("NATS_URL", "nats://127.0.0.1:4222", description="Server URL(s), comma-separated; at least one.")
    user: str | None = env("NATS_USER", None, description="User for user/password auth.")
    password: SecretStr | None = env("NATS_PASSWORD", None, description="Password for user/password auth.")
    token: SecretStr | None = env("NATS_TOKEN", None, description="Token auth.")
    nkey_seed: SecretStr | None = env("NATS_NKEY_SEED", None, description="NKey seed (SU...) for NKey auth.")
    creds_file: str | None = env(
        "NATS_CREDS",
        None,
        description="Path to a .creds file (JWT + NKey); read before connecting, whether or not the server asks "
        "for it (so are the TLS files): one that cannot be read stops start-up, naming it.",
    )
    tls_ca: str | None = env("NATS_TLS_CA", None, description="CA bundle path to verify the server.")
    tls_cert: str | None = env("NATS_TLS_CERT", None, description="Client certificate path (mutual TLS).")
    tls_key: str | None = env("NATS_TLS_KEY", None, description="Client key path (mutual TLS).")
    name: str = env("NATS_CLIENT_NAME", "sandboxd", description="Connection name shown by the server.")
    inbox_prefix: str = env(
        "NATS_INBOX_PREFIX",
        "_INBOX",
        description="Start of this connection's reply subjects; the user's own, e.g. _INBOX_reconciler (deploy/nats).",
    )

    @field_validator("url")
    @classmethod
    def _some_server(cls, value: str) -> str:
        if not any(url.strip() for url in value.split(",")):
            raise ValueError("names no server: set one or more URLs, comma-separated, e.g. nats://127.0.0.1:4222")
        return value

    @field_validator("inbox_prefix")
    @classmethod
    def _literal_subject(cls, value: str) -> str:
        if not _INBOX_PREFIX.fullmatch(value):
            raise ValueError("must be subject tokens (letters, digits, _ $ -) joined by dots")
        return value

    @model_validator(mode="after")
    def _pairs(self) -> NatsSettings:
        if (self.user is None) != (self.password is None):
            raise ValueError("NATS_USER and NATS_PASSWORD must be set together")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("NATS_TLS_CERT and NATS_TLS_KEY must be set together")
        return self


class TopologySettings(Group):
    """Streams, buckets and the shared consumer; created or updated idempotently at start-up."""

    replicas: int = env(
        "SANDBOXD_STREAM_REPLICAS", 1, ge=1, le=5, description="Stream/bucket replicas: 1 locally, 3 on a cluster."
    )
    events_max_age_s: float = env(
        "SANDBOXD_EVENTS_MAX_AGE_SECONDS", 30 * DAY, gt=0, description="Audit log retention of SANDBOX_EVENTS, s."
    )
    dlq_max_age_s: float = env("SANDBOXD_DLQ_MAX_AGE_SECONDS", 30 * DAY, gt=0, description="Dead letters kept, s.")
    duplicate_window_s: float = env(
        "SANDBOXD_DUPLICATE_WINDOW_SECONDS", 120.0, gt=0, description="Nats-Msg-Id dedupe window, s."
    )
    ack_wait_s: float = env(
        "SANDBOXD_ACK_WAIT_SECONDS", 30.0, gt=0, description="Redelivery after this long without ack/progress, s."
    )
    max_deliver: int = env("SANDBOXD_MAX_DELIVER", 50, ge=2, description="Deliveries before an event is dead-lettered.")
    max_ack_pending: int = env(
        "SANDBOXD_MAX_ACK_PENDING",
        10_000,
        ge=1,
        description="Unacked events across all replicas; events held for a coalesced reconcile count here.",
    )
    status_retention_s: float = env(
        "SANDBOXD_STATUS_RETENTION_SECONDS",
        7 * DAY,
        ge=1,
        description="How long a Deleted (or never-created Rejected) status record stays in sandbox-status, s; "
        "at least max deliver x max(ack wait, retry cap), so no redelivery outlives it.",
    )

    @model_validator(mode="after")
    def _window_fits(self) -> TopologySettings:
        if self.duplicate_window_s > self.events_max_age_s:
            raise ValueError("SANDBOXD_DUPLICATE_WINDOW_SECONDS must not exceed SANDBOXD_EVENTS_MAX_AGE_SECONDS")
        # A tombstone that expired before the last redelivery of its deleted life's events would let that
        # redelivery begin a new life: the deleted sandbox would come back.
        # The whole rule also takes SANDBOXD_RETRY_CAP_SECONDS (``Settings``); this group alone checks its part.
        if self.status_retention_s < (floor := self.ack_wait_s * self.max_deliver):
            raise ValueError(
                f"SANDBOXD_STATUS_RETENTION_SECONDS ({self.status_retention_s:g}) must be at least SANDBOXD_MAX_DELIVER"
                " x max(SANDBOXD_ACK_WAIT_SECONDS, SANDBOXD_RETRY_CAP_SECONDS), and SANDBOXD_MAX_DELIVER x"
                f" SANDBOXD_ACK_WAIT_SECONDS alone is {floor:g}"
            )
        return self


# --- nats CLI contexts ----------------------------------------------------------------------------------------

#: A context file's field -> the ``NatsSettings`` field it fills; ``nkey`` names a seed file, read here.
_CONTEXT_FIELDS: Final = {
    "url": "url",
    "user": "user",
    "password": "password",
    "token": "token",
    "creds": "creds_file",
    "nkey": "nkey_seed",
    "cert": "tls_cert",
    "key": "tls_key",
    "ca": "tls_ca",
    "inbox_prefix": "inbox_prefix",
}
_CONTEXT_PATHS: Final = frozenset({"creds", "nkey", "cert", "key", "ca"})


def nats_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the ``nats`` CLI keeps its contexts: ``$XDG_CONFIG_HOME/nats``, else ``~/.config/nats``."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / "nats"


def selected_context(environ: Mapping[str, str] | None = None) -> str | None:
    """The context in use without ``--context``: ``NATS_CONTEXT``, else the one ``nats context select`` chose."""
    environ = os.environ if environ is None else environ
    if environ.get("NATS_CONTEXT"):
        return environ["NATS_CONTEXT"]
    try:
        chosen = (nats_config_dir(environ) / "context.txt").read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"cannot read the selected NATS context: {exc.strerror or exc}") from exc
    return chosen or None


def nats_context(name: str | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``NatsSettings`` values from the context ``name`` (``None``: ``selected_context()``; none: ``{}``).

    Values whose environment variable is set are left out, so the environment (and flags, given on top) win.
    A missing or unreadable context is a ``ConfigurationError`` naming the file, never its contents.
    """
    environ = os.environ if environ is None else environ
    name = name or selected_context(environ)
    if not name:
        return {}
    if not _CONTEXT_NAME.fullmatch(name) or ".." in name:
        raise ConfigurationError(f"{name!r} is not a NATS context name (letters, digits, _ . -)")
    path = nats_config_dir(environ) / "context" / f"{name}.json"
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigurationError(f"NATS context {name!r} not found ({path}; see `nats context ls`)") from exc
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read NATS context {name!r} from {path}: not a readable JSON file") from exc
    if not isinstance(document, dict):
        raise ConfigurationError(f"NATS context {name!r} ({path}) is not a JSON object")
    return {
        field: _context_value(key, document[key], context=name)
        for key, field in _CONTEXT_FIELDS.items()
        if isinstance(document.get(key), str) and document[key] and not _from_environment(field, environ)
    }


def _from_environment(field: str, environ: Mapping[str, str]) -> bool:
    variable = NatsSettings.model_fields[field].validation_alias
    return isinstance(variable, str) and variable in environ


def _context_value(key: str, value: str, *, context: str) -> str:
    if key not in _CONTEXT_PATHS:
        return value
    path = Path(value).expanduser()
    if key != "nkey":
        return str(path)
    try:
        seed = path.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(f"NATS context {context!r}: cannot read its nkey file {path}") from exc
    if not seed:
        raise ConfigurationError(f"NATS context {context!r}: its nkey file {path} is empty")
    return seed
