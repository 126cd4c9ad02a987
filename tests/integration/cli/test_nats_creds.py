"""Logging in with a ``.creds`` file (``NATS_CREDS`` or ``--creds``): ``sandboxd init``, ``sandboxd run`` and
``sandboxctl`` against a real nats-server in operator (JWT) mode, each as a user runs it (a subprocess).

The test is its own operator: it makes the operator, account and user NKeys (``nkeys``) and signs their JWTs
with the small encoder below, the way ``nsc`` would. The server trusts the operator and preloads the account
(JetStream enabled) and a system account. It refuses a client with no credentials, so when a command with the
creds file works, the creds file is what let it in. A user signed by an account the server does not know is an
authorization failure, never "is the server running", and neither its JWT nor its seed reaches the output. A
creds file that cannot be read is named (``cannot read FILE``), a failure here and not the server's, even against
a server without auth (which never asks for it), where ``sandboxd run`` exits 1 on it instead of running.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import nkeys
import pytest
from sandboxd_processes import SANDBOXCTL, SANDBOXD, Services, clean_env

from sandboxd.adapters.natsserver import NatsServer
from support.spine import unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

#: An account with no limits and JetStream enabled (``mem_storage``/``disk_storage`` other than 0: unlimited).
UNLIMITED: dict[str, Any] = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1}
UNLIMITED |= {"wildcards": True, "conn": -1, "leaf": -1}
JETSTREAM: dict[str, Any] = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


# --- a minimal NATS JWT encoder (nats-io/jwt v2: header.claims.signature, base64url without padding) --------


def new_seed(prefix: int) -> bytes:
    return nkeys.encode_seed(os.urandom(32), prefix)


def public_key(seed: bytes) -> str:
    return nkeys.from_seed(seed).public_key.decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def encode_jwt(issuer: bytes, subject: str, kind: str, **nats: Any) -> str:
    """A JWT of ``kind`` (operator, account, user) for ``subject``, signed by the ``issuer`` seed.

    ``jti`` is an id of the claims (nats-server does not check it; ``nsc`` uses SHA-512/256 of them).
    """
    claims: dict[str, Any] = {"iat": int(time.time()), "iss": public_key(issuer), "name": kind, "sub": subject}
    digest = hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    claims["nats"] = {**nats, "type": kind, "version": 2}
    header = b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    signed = f"{header}.{b64url(json.dumps(claims).encode())}"
    return f"{signed}.{b64url(nkeys.from_seed(issuer).sign(signed.encode()))}"


@dataclass(frozen=True)
class Creds:
    """A user's ``.creds`` file and what must never be printed: its JWT and its seed."""

    path: Path
    jwt: str
    seed: str

    def leaked_in(self, *outputs: str) -> bool:
        return any(self.jwt in out or self.seed in out for out in outputs)


def user_creds(path: Path, account: bytes) -> Creds:
    """A new user of ``account`` (a seed), as ``nsc generate creds`` writes it."""
    user = new_seed(nkeys.PREFIX_BYTE_USER)
    token = encode_jwt(account, public_key(user), "user", pub={}, sub={}, subs=-1, data=-1, payload=-1)
    path.write_text(
        f"-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user.decode()}\n------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )
    return Creds(path, token, user.decode())


@pytest.fixture
def operator_server(tmp_path: Path) -> Iterator[tuple[NatsServer, bytes]]:
    """A nats-server trusting one operator, with one JetStream account; yields it and that account's seed."""
    operator = new_seed(nkeys.PREFIX_BYTE_OPERATOR)
    system = new_seed(nkeys.PREFIX_BYTE_ACCOUNT)
    account = new_seed(nkeys.PREFIX_BYTE_ACCOUNT)
    accounts = {
        public_key(system): encode_jwt(operator, public_key(system), "account", limits=UNLIMITED),
        public_key(account): encode_jwt(operator, public_key(account), "account", limits=UNLIMITED | JETSTREAM),
    }
    config = tmp_path / "operator.conf"
    config.write_text(
        f'operator: "{encode_jwt(operator, public_key(operator), "operator")}"\n'
        f'system_account: "{public_key(system)}"\n'
        "resolver: MEMORY\n"
        "resolver_preload: {\n" + "".join(f'  {key}: "{jwt}"\n' for key, jwt in accounts.items()) + "}\n"
    )
    with NatsServer(store_dir=tmp_path / "nats", extra_args=["-c", str(config)]) as server:
        yield server, account


async def run(command: tuple[str, ...], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    with anyio.fail_after(60):
        done = await anyio.run_process([*command, *args], env=clean_env(**env), check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


async def test_a_creds_user_runs_init_the_service_and_sandboxctl(
    operator_server: tuple[NatsServer, bytes], tmp_path: Path
) -> None:
    """A user given only a .creds file provisions JetStream, runs the service and publishes and reads sandboxes,
    with ``NATS_CREDS`` or ``--creds``."""
    server, account = operator_server
    creds = user_creds(tmp_path / "user.creds", account)
    anonymous = await run(SANDBOXCTL, "-s", server.url, "status")
    assert anonymous.returncode == 1 and "authorization failed" in anonymous.stderr, anonymous.stderr

    init = await run(SANDBOXD, "init", NATS_URL=server.url, NATS_CREDS=str(creds.path))
    assert init.returncode == 0, init.stderr
    assert f"JetStream topology ready on {server.url}" in init.stdout
    services = Services(server.url, tmp_path / "rendered", tmp_path, env_overrides={"NATS_CREDS": str(creds.path)})
    sid = unique_id("creds")
    try:
        service = services.start()
        created = await run(
            SANDBOXCTL, "create", sid, "--email", "creds@acme.com", "--org", "acme", "--wait", "--timeout", "45",
            "-s", server.url, "--creds", str(creds.path),
        )  # fmt: skip
        assert created.returncode == 0, created.stderr + service.output()
        assert f"sandbox.create.{sid}: published as stream sequence" in created.stdout
        shown = await run(SANDBOXCTL, "status", sid, "-o", "json", NATS_URL=server.url, NATS_CREDS=str(creds.path))
        assert shown.returncode == 0, shown.stderr
        record = json.loads(shown.stdout)
        assert (record["sandboxId"], record["observedGeneration"]) == (sid, 1), record
        listed = await run(SANDBOXCTL, "-v", "status", "-o", "name", "-s", server.url, "--creds", str(creds.path))
        assert listed.returncode == 0 and sid in listed.stdout.split(), listed.stderr
        assert f"with the creds file {creds.path}" in listed.stderr  # -v: the kind of login, never its secrets
        assert not creds.leaked_in(init.stdout, init.stderr, created.stderr, listed.stderr, service.output())
    finally:
        services.stop_all()


async def test_creds_of_a_user_the_server_does_not_know_are_refused_as_authorization(
    operator_server: tuple[NatsServer, bytes], tmp_path: Path
) -> None:
    """A user signed by another account's key is told its credentials were refused, at once, and sees no secret."""
    server, _ = operator_server
    stranger = user_creds(tmp_path / "stranger.creds", new_seed(nkeys.PREFIX_BYTE_ACCOUNT))
    runs = {
        "sandboxd init": await run(SANDBOXD, "init", "-s", server.url, NATS_CREDS=str(stranger.path)),
        "status": await run(SANDBOXCTL, "-s", server.url, "status", "--creds", str(stranger.path)),
        # wrong credentials are no outage: a watch ends too, it does not wait
        "watch": await run(SANDBOXCTL, "-s", server.url, "watch", NATS_CREDS=str(stranger.path)),
    }
    for command, done in runs.items():
        assert done.returncode == 1, (command, done.stderr)
        assert "authorization failed" in done.stderr and "is the server running" not in done.stderr, done.stderr
        assert "trying again" not in done.stderr, (command, done.stderr)
        assert not stranger.leaked_in(done.stdout, done.stderr), command


async def test_a_creds_file_that_cannot_be_read_is_named(
    operator_server: tuple[NatsServer, bytes], tmp_path: Path
) -> None:
    """A missing creds file, or a folder given as one, is said to be unreadable, not the server to be down."""
    server, _ = operator_server
    missing, folder = tmp_path / "missing.creds", tmp_path
    runs = [
        await run(SANDBOXCTL, "status", "-s", server.url, "--creds", str(missing)),
        await run(SANDBOXCTL, "status", "-s", server.url, NATS_CREDS=str(missing)),
        await run(SANDBOXCTL, "watch", "-s", server.url, "--creds", str(missing)),
        await run(SANDBOXD, "init", "-s", server.url, NATS_CREDS=str(missing)),
        await run(SANDBOXCTL, "status", "-s", server.url, "--creds", str(folder)),
    ]
    for done, path in zip(runs, [missing] * 4 + [folder], strict=True):
        assert done.returncode == 1, done.stderr
        assert f"cannot read {path}" in done.stderr, done.stderr
        assert "is the server running" not in done.stderr and "trying again" not in done.stderr, done.stderr


async def test_a_missing_creds_or_tls_file_fails_here_even_against_a_server_without_auth(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """nats-py reads a creds file only when the server asks for a signature: against a server without auth a
    missing one used to connect, and ``sandboxd run`` to run. Now each command fails before connecting, naming
    the file and its variable, and ``sandboxd run`` exits 1 instead of retrying."""
    missing = tmp_path / "missing" / "x.creds"
    said = f"cannot connect to NATS at {nats_server.url}: a local failure, not the server: cannot read {missing}: "
    status = await run(SANDBOXCTL, "-v", "-s", nats_server.url, "--creds", str(missing), "status")
    assert status.returncode == 1, status.stderr
    assert said + "No such file or directory (NATS_CREDS)" in status.stderr, status.stderr
    assert "connected to" not in status.stderr and "is the server running" not in status.stderr, status.stderr
    tls = await run(SANDBOXCTL, "-s", nats_server.url, "--tls-ca", str(missing), "status")
    assert tls.returncode == 1 and said + "No such file or directory (NATS_TLS_CA)" in tls.stderr, tls.stderr

    services = Services(nats_server.url, tmp_path / "rendered", tmp_path)
    try:
        for variable in ("NATS_CREDS", "NATS_TLS_CA"):
            service = services.start(**{variable: str(missing)})
            assert await service.wait(30) == 1, service.output()
            assert f"{said}No such file or directory ({variable})" in service.output(), service.output()
            assert "retrying" not in service.output(), service.output()
    finally:
        services.stop_all()
