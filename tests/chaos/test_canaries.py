"""(f) Canaries: a recognisable value in every secret-bearing setting, then a search for it everywhere the
service writes.

Settings: the NATS password (in ``NATS_URL`` for one replica, in ``NATS_PASSWORD`` for the other, in the URL and
as ``--password`` for ``sandboxctl``), the NATS token (a second server that wants one: ``NATS_TOKEN`` and
``nats://token@``), the GitOps password (``SANDBOXD_GITOPS_PASSWORD`` for one replica, written into
``SANDBOXD_GITOPS_REPO`` for the other), the NKey seed (a third server whose only user is an NKey:
``NATS_NKEY_SEED`` for a replica and ``sandboxd init``, ``--nkey-seed-file`` for ``sandboxctl``). Places
searched: every message of every stream on every server (the KV buckets are streams too, so every revision of
every key), every replica's log at debug level, the GitOps repository's objects and the working clones' git
config, and what ``sandboxctl`` and ``sandboxd init`` print, errors included.
It proves 0 occurrences, raw or percent-encoded.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import anyio
import nkeys
import pytest

from integration.cli.sandboxd_processes import SANDBOXCTL, SANDBOXD, Services, clean_env, wait_fetching
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.models.status import SandboxStatus
from support.chaos import Figures, exits_fail_fast, occurrences, read_stream, unexpected_exits
from support.git_http import GitHttpServer, serving
from support.spine import Client, client, event, spec

pytestmark = [pytest.mark.chaos, pytest.mark.anyio, pytest.mark.timeout(600)]

RUN = uuid.uuid4().hex[:6]
NATS_PASSWORD = f"CANARY-{RUN}-nats-password"  # nats-py does not percent-decode a URL password: URL-safe
NATS_TOKEN = f"CANARY-{RUN}-nats-token"
GIT_PASSWORD = f"CANARY-{RUN}-git:pass@word"
NKEY_SEED = nkeys.encode_seed(uuid.uuid4().bytes * 2, nkeys.PREFIX_BYTE_USER).decode()  # SU…: no stem of its own
CANARIES = [NATS_PASSWORD, NATS_TOKEN, GIT_PASSWORD, NKEY_SEED]
#: Every form a canary could take on the way out: raw, percent-encoded (in a URL), and its recognisable stem.
NEEDLES = sorted({form.encode() for c in CANARIES for form in (c, quote(c, safe=""), quote(c))} | {b"CANARY-"})


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[NatsServer, NatsServer, NatsServer]]:
    nkey_conf = tmp_path / "nkey.conf"
    user = nkeys.from_seed(NKEY_SEED.encode()).public_key.decode()
    nkey_conf.write_text(f'authorization {{ users = [ {{ nkey: "{user}" }} ] }}\n')
    with (
        NatsServer(store_dir=tmp_path / "nats-pw", extra_args=["--user", "svc", "--pass", NATS_PASSWORD]) as pw,
        NatsServer(store_dir=tmp_path / "nats-tok", extra_args=["--auth", NATS_TOKEN]) as tok,
        NatsServer(store_dir=tmp_path / "nats-nkey", extra_args=["-c", str(nkey_conf)]) as nk,
    ):
        yield pw, tok, nk


async def run(program: tuple[str, ...], *args: str, env: dict[str, str]) -> tuple[str, bytes]:
    with anyio.fail_after(60):
        done = await anyio.run_process([*program, *args], env=env, check=False)
    return f"{program[-1]} {' '.join(args)}", done.stdout + done.stderr


async def stream_contents(url: str, **connect: str) -> list[tuple[str, bytes]]:
    """Every message of every stream on the server: subject, headers and body."""
    found: list[tuple[str, bytes]] = []
    async with client(url, **connect) as c:
        names = [info.config.name for info in await c.js.streams_info()]
        for name in names:
            for msg in await read_stream(c.js, str(name)):
                headers = repr(sorted((msg.headers or {}).items())).encode()
                where = f"stream {name} #{msg.metadata.sequence.stream}"
                found.append((where, msg.subject.encode() + headers + msg.data))
    return found


def git_objects(repo: Path) -> bytes:
    listed = subprocess.run(
        ["git", "--git-dir", str(repo), "cat-file", "--batch-all-objects", "--batch"], capture_output=True, check=True
    )
    log = subprocess.run(["git", "--git-dir", str(repo), "log", "--all", "-p"], capture_output=True, check=True)
    return listed.stdout + log.stdout


async def converged(c: Client, sandbox_id: str, event_id: str) -> None:
    with anyio.fail_after(120):
        while True:
            status: SandboxStatus | None = await c.status(sandbox_id)
            if status is not None and status.event_id == event_id:
                return
            await anyio.sleep(0.1)


async def test_canaries_in_every_secret_setting_never_appear_anywhere(
    servers: tuple[NatsServer, NatsServer, NatsServer], tmp_path: Path, figures: Figures
) -> None:
    pw, tok, nk = servers
    nats_in_url = f"nats://svc:{quote(NATS_PASSWORD, safe='')}@127.0.0.1:{pw.port}"
    token_in_url = f"nats://{quote(NATS_TOKEN, safe='')}@127.0.0.1:{tok.port}"
    git_root = tmp_path / "git"
    git_root.mkdir()
    await anyio.run_process(["git", "init", "-q", "--bare", "-b", "main", str(git_root / "gitops.git")])
    outputs: list[tuple[str, bytes]] = []
    with serving(GitHttpServer(root=git_root, username="bot", password=GIT_PASSWORD)) as git_http:
        gitops = {
            "SANDBOXD_APPLIER": "gitops",
            "SANDBOXD_LOG_LEVEL": "DEBUG",
            "TMPDIR": str(tmp_path / "tmp"),
        }
        (tmp_path / "tmp").mkdir()
        services = Services(pw.url, tmp_path / "unused", tmp_path, gitops)
        try:
            services.start(
                NATS_URL=nats_in_url,
                SANDBOXD_GITOPS_REPO=git_http.url("gitops.git"),
                SANDBOXD_GITOPS_USERNAME="bot",
                SANDBOXD_GITOPS_PASSWORD=GIT_PASSWORD,
            )
            services.start(
                NATS_USER="svc",
                NATS_PASSWORD=NATS_PASSWORD,
                SANDBOXD_GITOPS_REPO=git_http.url("gitops.git").replace(
                    "http://", f"http://bot:{quote(GIT_PASSWORD, safe='')}@"
                ),
            )
            token_service = services.start(NATS_URL=token_in_url, SANDBOXD_APPLIER="directory")
            nkey_service = services.start(NATS_URL=nk.url, NATS_NKEY_SEED=NKEY_SEED, SANDBOXD_APPLIER="directory")
            async with exits_fail_fast(services.started), client(nats_in_url) as c:
                await wait_fetching(c.js, services=2, timeout=60)
                sids = [f"canary-{RUN}-{n}" for n in range(6)]
                for n, sid in enumerate(sids):
                    created = event("create", sid, {"spec": spec(f"canary{n}-{RUN}@acme.com")})
                    await c.publish_raw(f"sandbox.create.{sid}", created.to_json(), {"Nats-Msg-Id": created.id})
                await c.publish_raw(f"sandbox.create.bad-{RUN}", b"not json", {"Nats-Msg-Id": f"bad-{RUN}"})
                deleted = event("delete", sids[0], {"purge": False})
                await c.publish_raw(f"sandbox.delete.{sids[0]}", deleted.to_json(), {"Nats-Msg-Id": deleted.id})
                await converged(c, sids[0], deleted.id)
                for sid in sids[1:]:
                    status = await c.status(sid)
                    with anyio.fail_after(120):
                        while status is None:
                            await anyio.sleep(0.1)
                            status = await c.status(sid)
                async with client(token_in_url) as t:
                    await wait_fetching(t.js, timeout=60)
                    created = event("create", f"tok-{RUN}", {"spec": spec(f"tok-{RUN}@acme.com")})
                    await t.publish_raw(f"sandbox.create.tok-{RUN}", created.to_json(), {"Nats-Msg-Id": created.id})
                    await converged(t, f"tok-{RUN}", created.id)
                async with client(nk.url, nkeys_seed_str=NKEY_SEED) as n:
                    await wait_fetching(n.js, timeout=60)
                    created = event("create", f"nk-{RUN}", {"spec": spec(f"nk-{RUN}@acme.com")})
                    await n.publish_raw(f"sandbox.create.nk-{RUN}", created.to_json(), {"Nats-Msg-Id": created.id})
                    await converged(n, f"nk-{RUN}", created.id)
                seed_file = tmp_path / "user.nk"
                seed_file.write_text(NKEY_SEED + "\n")
                wrong_seed = tmp_path / "wrong.nk"
                wrong_seed.write_text(nkeys.encode_seed(bytes(32), nkeys.PREFIX_BYTE_USER).decode() + "\n")

                plain, as_svc = clean_env(), ("--server", pw.url, "--user", "svc")
                nkey_env = clean_env(NATS_URL=nk.url)
                outputs += [
                    await run(SANDBOXCTL, "status", "-o", "json", env=clean_env(NATS_URL=nats_in_url)),
                    await run(SANDBOXCTL, "status", sids[1], "-o", "yaml", env=clean_env(NATS_URL=nats_in_url)),
                    await run(SANDBOXCTL, "dlq", "list", env=clean_env(NATS_URL=nats_in_url)),
                    await run(SANDBOXCTL, "status", *as_svc, "--password", NATS_PASSWORD, env=plain),
                    await run(SANDBOXCTL, "status", *as_svc, "--password", "wrong", env=plain),
                    await run(SANDBOXCTL, "status", env=clean_env(NATS_URL=token_in_url)),
                    await run(SANDBOXCTL, "status", env=clean_env(NATS_TOKEN=NATS_TOKEN, NATS_URL=tok.url)),
                    await run(SANDBOXD, "init", env=clean_env(NATS_URL=token_in_url)),
                    await run(SANDBOXD, "init", env=clean_env(NATS_URL=nats_in_url)),
                    await run(SANDBOXD, "init", env=clean_env(NATS_URL=nk.url, NATS_NKEY_SEED=NKEY_SEED)),
                    await run(SANDBOXCTL, "status", "-o", "json", "--nkey-seed-file", str(seed_file), env=nkey_env),
                    await run(SANDBOXCTL, "status", "--nkey-seed-file", str(wrong_seed), env=nkey_env),
                    await run(
                        SANDBOXCTL, "status", "--connect-timeout", "2", env=clean_env(NATS_URL=nats_in_url + "0")
                    ),
                ]
            figures["processes"] = len(services.started)
            for service in (token_service, nkey_service):
                assert service.process is not None and service.process.poll() is None
        finally:
            figures["exits"] = len(unexpected_exits(services.started, killed=set()))
            services.stop_all()
        figures["cli_runs"] = len(outputs)

    streams = await stream_contents(nats_in_url) + await stream_contents(token_in_url)
    streams += await stream_contents(nk.url, nkeys_seed_str=NKEY_SEED)
    figures["stream_messages"] = len(streams)
    logs = [(f"log {p.log.name}", p.log.read_bytes()) for p in services.started]
    figures["log_bytes"] = sum(len(data) for _, data in logs)
    git = [("git objects", git_objects(git_root / "gitops.git"))]
    git += [(f"clone config {path}", path.read_bytes()) for path in (tmp_path / "tmp").rglob("config")]
    assert len(git[0][1]) > 0 and any(b"sandbox/" in data for _, data in git)  # something was committed
    found = {
        "streams": occurrences(NEEDLES, iter(streams)),
        "logs": occurrences(NEEDLES, iter(logs)),
        "git": occurrences(NEEDLES, iter(git)),
        "cli": occurrences(NEEDLES, iter(outputs)),
    }
    figures["occurrences"] = sum(sum(counts.values()) for counts in found.values())
    assert figures["exits"] == 0
    assert not any(found.values()), found
