"""A real nats-server running the shipped authorization (deploy/nats/), and connections as each of its roles.

``secured_nats`` starts the wheel's nats-server on ``deploy/nats/nats-server.conf`` exactly as shipped, with a
fresh random password per role in the environment variables ``accounts.conf`` names (never written to a file).
``SecuredNats.session(role)`` connects as that role through the service's own ``connect_options`` and collects
the permission violations nats-py reports to its error callback; ``SecuredNats.violations(role)`` reads the
ones the server logged, so a test can assert that a role doing its job was refused nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio
import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from sandboxd.adapters.jetstream.connection import connect_options
from sandboxd.adapters.natsserver import NatsServer, free_port
from sandboxd.settings import NatsSettings

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
SERVER_CONF: Final = REPO_ROOT / "deploy" / "nats" / "nats-server.conf"


@dataclass(frozen=True)
class Role:
    user: str
    inbox_prefix: str
    password_variable: str


ROLES: Final = {
    name: Role(user, f"_INBOX_{name}", f"SANDBOXD_NATS_{name.upper()}_PASSWORD")
    for name, user in (
        ("reconciler", "sandboxd-reconciler"),
        ("scaler", "sandboxd-scaler"),
        ("tokens", "sandboxd-tokens"),
        ("publisher", "sandbox-publisher"),
        ("activity", "sandbox-activity"),
        ("console", "sandbox-console"),
        ("admin", "sandboxd-admin"),
    )
}


@dataclass
class Session:
    """One connection as one role; ``refused`` waits for the server to report a permission violation."""

    nc: NatsClient
    js: JetStreamContext
    errors: list[str] = field(default_factory=list)

    async def refused(self, action: str, subject: str, *, whole_subject: bool = True, timeout: float = 10.0) -> None:
        """``action`` is ``publish`` or ``subscription``; nats-py reports the subject lower-cased.

        ``whole_subject=False``: any subject starting with ``subject`` (a reply inbox has a random tail).
        """
        wanted = f'permissions violation for {action} to "{subject.lower()}' + ('"' if whole_subject else "")
        with anyio.move_on_after(timeout):
            while not any(wanted in error for error in self.errors):
                await anyio.sleep(0.02)
            return
        raise AssertionError(f"the server never refused {action} to {subject!r}; errors: {self.errors}")


@dataclass
class SecuredNats:
    server: NatsServer
    passwords: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def settings(self, role: str, **overrides: Any) -> NatsSettings:
        return NatsSettings(**{**self.fields(role), **overrides})

    def fields(self, role: str) -> dict[str, Any]:
        spec = ROLES[role]
        return {
            "url": self.url,
            "user": spec.user,
            "password": self.passwords[role],
            "inbox_prefix": spec.inbox_prefix,
            "name": f"test-{role}",
        }

    def env(self, role: str) -> dict[str, str]:
        """The role's connection as a process reads it: NATS_URL, NATS_USER, NATS_PASSWORD, NATS_INBOX_PREFIX."""
        aliases = {name: field.validation_alias for name, field in NatsSettings.model_fields.items()}
        return {str(aliases[name]): value for name, value in self.fields(role).items() if name != "name"}

    @asynccontextmanager
    async def session(self, role: str, *, timeout: float = 2.0, **overrides: Any) -> AsyncIterator[Session]:
        """Connected as ``role``; a JetStream context whose requests give up after ``timeout`` s."""
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        options = connect_options(self.settings(role, **overrides), reconnect=False)
        nc = await nats.connect(**options, allow_reconnect=False, error_cb=on_error)
        try:
            yield Session(nc, nc.jetstream(timeout=timeout), errors)
        finally:
            await nc.close()

    @property
    def log(self) -> Path:
        return self.server.log_file or self.server.store_dir / "nats-server.log"

    def log_mark(self) -> int:
        """Where the server's log ends now: ``violations(since=...)`` counts only what comes after."""
        return self.log.stat().st_size

    def violations(self, role: str, *, since: int = 0) -> list[str]:
        """What the server logged as refused to ``role``'s user: ``Publish Violation - Subject "..."`` lines."""
        with self.log.open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
        marker = f'/user:{ROLES[role].user}" - '
        return [line.split(marker, 1)[1] for line in text.splitlines() if marker in line and "Violation" in line]


def fresh_passwords() -> dict[str, str]:
    """Letters first: nats-server 2.9 reads a variable as configuration text, where ``4f...`` is a bad number."""
    return {role: f"p{secrets.token_hex(24)}" for role in ROLES}


@contextmanager
def secured_nats(store_dir: Path, *, extra_args: list[str] | None = None) -> Iterator[SecuredNats]:
    """nats-server on the shipped configuration; the passwords live only in its environment while it starts."""
    passwords = fresh_passwords()
    # The shipped file's monitoring port moves to a free one: tests start several servers at once.
    args = ["-c", str(SERVER_CONF), "-m", str(free_port()), *(extra_args or [])]
    server = NatsServer(store_dir=store_dir, extra_args=args)
    with pytest.MonkeyPatch.context() as patch:
        for role, password in passwords.items():
            patch.setenv(ROLES[role].password_variable, password)
        server.start()
    try:
        yield SecuredNats(server, passwords)
    finally:
        server.stop()
