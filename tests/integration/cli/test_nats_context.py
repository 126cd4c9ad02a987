"""NATS contexts, as the ``nats`` CLI keeps them: ``sandboxctl``, ``sandboxd init`` and ``sandboxd.client`` connect
to a server that needs a user and password with nothing but a context file in ``$HOME/.config/nats``.

``--context NAME`` and ``NATS_CONTEXT`` pick a context, ``context.txt`` (``nats context select``) is the default;
flags and environment variables win over what the context says. Real nats-server with ``--user/--pass``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from sandboxd_processes import SANDBOXCTL, SANDBOXD, clean_env

from sandboxd.adapters.natsserver import NatsServer
from sandboxd.client import SandboxClient
from sandboxd.errors import ConfigurationError
from support.spine import spec, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

USER, PASSWORD = "ctx-user", "ctx-pass-8f3a1c"


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server that refuses anyone without the user and password."""
    store = tmp_path_factory.mktemp("nats-ctx")
    with NatsServer(store_dir=store, extra_args=["--user", USER, "--pass", PASSWORD]) as server:
        yield server


def write_context(home: Path, name: str, **fields: str) -> None:
    folder = home / ".config" / "nats" / "context"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"description": "test", **fields}))


def select(home: Path, name: str) -> None:
    (home / ".config" / "nats" / "context.txt").write_text(name + "\n")


async def run(command: tuple[str, ...], *args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in clean_env(HOME=str(home), **env).items() if k != "XDG_CONFIG_HOME"}
    with anyio.fail_after(30):
        done = await anyio.run_process([*command, *args], env=environment, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


async def test_sandboxctl_and_init_connect_through_the_selected_or_named_context(
    guarded_server: NatsServer, tmp_path: Path
) -> None:
    home, sid, url = tmp_path / "home", unique_id("ctx"), guarded_server.url
    home.mkdir()
    refused = await run(SANDBOXCTL, "status", "--connect-timeout", "3", home=home, NATS_URL=url)
    assert refused.returncode == 1 and "cannot connect to NATS" in refused.stderr, refused.stderr

    write_context(home, "dev", url=url, user=USER, password=PASSWORD)
    select(home, "dev")  # what `nats context select dev` writes
    init = await run(SANDBOXD, "init", home=home)
    assert init.returncode == 0, init.stderr
    create = ("create", sid, "--email", "ctx@acme.com", "--org", "acme")
    created = await run(SANDBOXCTL, *create, home=home)
    assert created.returncode == 0 and "published as stream sequence" in created.stdout, created.stderr
    duplicate = await run(SANDBOXCTL, *create, "--force", "--event-id", created.stdout.split()[-1][:-1], home=home)
    assert duplicate.returncode == 0 and "duplicate of stream sequence" in duplicate.stdout, duplicate.stderr

    # A wrong password in a named context: --context and NATS_CONTEXT pick it; the flag and the env var win.
    write_context(home, "stale", url=url, user=USER, password="not-the-password")
    picks: list[tuple[tuple[str, ...], dict[str, str]]] = [
        (("--context", "stale"), {}),
        ((), {"NATS_CONTEXT": "stale"}),
    ]
    for args, env in picks:
        stale = await run(SANDBOXCTL, "status", "--connect-timeout", "3", *args, home=home, **env)
        assert stale.returncode == 1 and "not-the-password" not in stale.stderr, stale.stderr
        flag = await run(SANDBOXCTL, "status", "--password", PASSWORD, *args, home=home, **env)
        assert flag.returncode == 0 and "No sandboxes" in flag.stdout, flag.stderr
        environ = await run(SANDBOXCTL, "status", *args, home=home, NATS_PASSWORD=PASSWORD, **env)
        assert environ.returncode == 0 and "No sandboxes" in environ.stdout, environ.stderr

    missing = await run(SANDBOXCTL, "status", "--context", "nope", home=home)
    assert missing.returncode == 1 and "NATS context 'nope' not found" in missing.stderr, missing.stderr
    sneaky = await run(SANDBOXCTL, "status", "--context", "../dev", home=home)
    assert sneaky.returncode == 1 and "not a NATS context name" in sneaky.stderr, sneaky.stderr


async def test_the_client_connects_through_a_context(
    guarded_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, sid = tmp_path / "home", unique_id("ctx")
    for variable in [v for v in os.environ if v.startswith("NATS_")] + ["XDG_CONFIG_HOME"]:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(home))
    write_context(home, "platform", url=guarded_server.url, user=USER, password=PASSWORD)
    async with SandboxClient.connect(context="platform") as sandboxes:
        published = await sandboxes.create(sid, spec("ctx@acme.com"), force=True)
        assert published.sequence > 0 and not published.duplicate
    monkeypatch.setenv("NATS_CONTEXT", "platform")
    async with SandboxClient.connect() as sandboxes:  # NATS_CONTEXT, as the nats CLI reads it
        assert (await sandboxes.create(sid, spec("ctx@acme.com"), event_id=published.event_id, force=True)).duplicate
    with pytest.raises(ConfigurationError, match="NATS context 'absent' not found"):
        async with SandboxClient.connect(context="absent"):
            pass
