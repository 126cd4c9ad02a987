"""Logging in with an NKey: ``sandboxctl`` (seed in ``NATS_NKEY_SEED`` or ``--nkey-seed-file``) and ``sandboxd
init`` against a real nats-server whose only user is an NKey, each as a user runs it (a subprocess).

The seed is generated in the test (``nkeys``, the package nats-py signs the server's nonce with: a dependency of
sandboxd, so an NKey login works on a plain install). A wrong seed is an authorization failure, never "is the
server running", and the seed never reaches the output.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import nkeys
import pytest
from sandboxd_processes import SANDBOXCTL, SANDBOXD, clean_env

from sandboxd.adapters.natsserver import NatsServer

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


def user_seed() -> str:
    return nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()


def public_key(seed: str) -> str:
    return nkeys.from_seed(seed.encode()).public_key.decode()


@pytest.fixture
def nkey_server(tmp_path: Path) -> Iterator[tuple[NatsServer, str]]:
    """A nats-server whose only user is an NKey; yields it and that user's seed."""
    seed = user_seed()
    config = tmp_path / "nkey.conf"
    config.write_text(f'authorization {{ users = [ {{ nkey: "{public_key(seed)}" }} ] }}\n')
    with NatsServer(store_dir=tmp_path / "nats", extra_args=["-c", str(config)]) as server:
        yield server, seed


async def run(command: tuple[str, ...], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    with anyio.fail_after(30):
        done = await anyio.run_process([*command, *args], env=clean_env(**env), check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


async def test_an_nkey_user_runs_init_and_sandboxctl_from_the_environment_or_a_seed_file(
    nkey_server: tuple[NatsServer, str], tmp_path: Path
) -> None:
    server, seed = nkey_server
    init = await run(SANDBOXD, "init", NATS_URL=server.url, NATS_NKEY_SEED=seed)
    assert init.returncode == 0, init.stderr
    from_env = await run(SANDBOXCTL, "-s", server.url, "status", NATS_NKEY_SEED=seed)
    assert from_env.returncode == 0, from_env.stderr
    seed_file = tmp_path / "user.nk"
    seed_file.write_text(seed + "\n")
    from_file = await run(SANDBOXCTL, "status", "-s", server.url, "--nkey-seed-file", str(seed_file))
    assert from_file.returncode == 0, from_file.stderr
    assert seed not in init.stderr + from_env.stderr + from_file.stderr


async def test_a_seed_the_server_does_not_know_is_refused_as_authorization(
    nkey_server: tuple[NatsServer, str],
) -> None:
    server, _ = nkey_server
    stranger = user_seed()
    for command in ("status", "watch"):  # wrong credentials are no outage: a watch ends too, it does not wait
        done = await run(SANDBOXCTL, "-s", server.url, command, NATS_NKEY_SEED=stranger)
        assert done.returncode == 1, (command, done.stderr)
        assert "authorization failed" in done.stderr and "is the server running" not in done.stderr, done.stderr
        assert "trying again" not in done.stderr and stranger not in done.stdout + done.stderr
