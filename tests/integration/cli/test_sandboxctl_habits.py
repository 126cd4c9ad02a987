"""``sandboxctl`` habits kubectl and the ``nats`` CLI taught: a typo exits 1, ``--force`` publishes anyway,
``--wait [--timeout]`` waits until sandboxd has settled the event. Real nats-server, in-process sandboxd.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from sandboxd_processes import SANDBOXCTL, clean_env, ctl, until_in, watching

from integration.idle.rig import until
from sandboxd import naming
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.memory import MemoryApplier
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.models.status import Phase
from sandboxd.reconcile.ports import ApplyResult
from sandboxd.render import RenderedSandbox
from sandboxd.settings import TopologySettings
from support.spine import client, running_service, service_settings, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


async def test_a_typo_exits_1_and_publishes_nothing_unless_forced(nats_server: NatsServer) -> None:
    url, typo = nats_server.url, unique_id("typo")
    async with client(url) as c, running_service(service_settings(url), MemoryApplier()):
        for verb in ("delete", "suspend", "resume"):
            done = await ctl(verb, typo, url=url)
            assert done.returncode == 1, done.stdout
            assert error_line(done) == (
                f"sandboxctl: error: sandbox {typo} not found; --force / force=True publishes the {verb} anyway"
            )
        assert await c.status(typo) is None  # no Rejected row, no dead letter

        forced = await ctl("resume", typo, "--force", url=url)
        assert forced.returncode == 0 and f"sandbox.resume.{typo}: published" in forced.stdout
        await c.wait_status(typo, lambda s: s.phase is Phase.REJECTED)


async def test_wait_returns_once_settled_and_create_refuses_an_existing_id(nats_server: NatsServer) -> None:
    url, sid = nats_server.url, unique_id("wait")
    owner = ("--email", "wait@acme.com", "--org", "acme")
    async with running_service(service_settings(url), MemoryApplier()):
        created = await ctl("create", sid, *owner, "--sessions", "2", "--wait", "--timeout", "30", url=url)
        assert created.returncode == 0, created.stderr
        assert created.stdout.splitlines()[-1] == f"sandbox {sid}: Ready (2/2 session pods ready)"

        again = await ctl("create", sid, *owner, url=url)
        assert again.returncode == 1
        assert f"sandbox {sid} already exists (Ready); use update" in error_line(again)

        suspended = await ctl("suspend", sid, "--wait", url=url)
        assert suspended.stdout.splitlines()[-1].startswith(f"sandbox {sid}: Suspended"), suspended.stderr
        deleted = await ctl("delete", sid, "--purge", "--wait", url=url)
        assert deleted.stdout.splitlines()[-1].startswith(f"sandbox {sid}: Deleted"), deleted.stderr


async def test_a_wait_that_runs_out_exits_1_naming_what_it_waited_for(nats_server: NatsServer) -> None:
    url, sid = nats_server.url, unique_id("slow")  # nothing consumes: the event is never settled
    done = await ctl("create", sid, "--email", "slow@acme.com", "--org", "acme", "--wait", "--timeout", "1", url=url)
    assert done.returncode == 1
    assert f"sandboxctl: error: sandbox {sid}: create of {sid} settled: available" in error_line(done)
    assert "did not hold within 1s (it has no status)" in done.stderr


async def test_global_flags_anywhere_and_the_table_shapes(nats_server: NatsServer) -> None:
    url, live, gone = nats_server.url, unique_id("live"), unique_id("gone")
    owner = ("--org", "acme", "--wait")
    async with running_service(service_settings(url), MemoryApplier()):
        assert (await ctl("-s", url, "create", live, "--email", f"{live}@acme.com", *owner)).returncode == 0
        assert (await ctl("create", gone, "--email", f"{gone}@acme.com", *owner, "-s", url)).returncode == 0
        assert (await ctl("--server", url, "delete", gone, "--wait")).returncode == 0

        names = await ctl("-s", url, "-v", "status", "-o", "name")
        assert names.returncode == 0, names.stderr
        assert live in names.stdout.split() and gone not in names.stdout.split()  # Deleted: hidden
        every = (await ctl("status", "-o", "name", "--all", "-s", url)).stdout.split()
        assert {live, gone} <= set(every)
        deleted = (await ctl("status", "--phase", "deleted", "-o", "name", "-s", url)).stdout.split()
        assert gone in deleted and live not in deleted

        wide = (await ctl("status", "-o", "wide", "-s", url)).stdout.splitlines()
        assert wide[0].split() == [
            "ID", "PHASE", "READY", "NAMESPACE", "GEN", "UPDATED", "EXPIRES", "OWNER-UID", "ENDPOINT", "EVENT",
            "MESSAGE",
        ]  # fmt: skip
        row = next(line.split() for line in wide if line.startswith(live))
        assert row[6] == "-" and row[7] == f"{live}-at-acme-com" and row[8].startswith("https://")  # no expiry


async def test_version_and_completion_need_no_server() -> None:
    version = await ctl("--version")
    assert version.returncode == 0 and version.stdout.strip().startswith("sandboxctl ")
    for shell in ("bash", "zsh"):
        script = await ctl("completion", shell)
        assert script.returncode == 0 and "complete -o default -F _sandboxctl sandboxctl" in script.stdout
    probe = (
        "source /dev/stdin; COMP_WORDS=(sandboxctl -s x dlq re); COMP_CWORD=4; _sandboxctl; echo ${COMPREPLY[*]};"
        "COMP_WORDS=(sandboxctl delete sb-1 --pu); COMP_CWORD=3; _sandboxctl; echo ${COMPREPLY[*]}"
    )
    bash_script = (await ctl("completion", "bash")).stdout.encode()
    done = await anyio.run_process(["bash", "-c", probe], input=bash_script, check=True)
    assert done.stdout.decode().split() == ["replay", "--purge"]


async def test_watch_says_when_nats_goes_away_and_comes_back_then_ctrl_c_exits_0(
    fresh_nats_server: NatsServer, tmp_path: Path
) -> None:
    url = fresh_nats_server.url
    async with client(url) as c:  # the status bucket must exist before the watch opens it
        await ensure_topology(c.js, TopologySettings())
    async with watching(url, tmp_path) as (watcher, out, err):
        with anyio.fail_after(30):
            await until_in(out, "watching for changes")
            fresh_nats_server.stop()
            await until_in(err, "disconnected from NATS")
            fresh_nats_server.start()
            await until_in(err, "reconnected to NATS")
            watcher.send_signal(signal.SIGINT)
            code = await watcher.wait()
    assert code == 0, err.read_text()
    assert "Traceback" not in err.read_text() and "Error" not in err.read_text()
    assert err.read_text().count("disconnected from NATS") == 1  # the close after Ctrl-C is not an outage


async def test_watch_started_while_nats_is_down_waits_for_it_and_keeps_reconnecting_until_ctrl_c(
    fresh_nats_server: NatsServer, tmp_path: Path
) -> None:
    url = fresh_nats_server.url
    async with client(url) as c:
        await ensure_topology(c.js, TopologySettings())
    fresh_nats_server.stop()  # the same port again below: what a restarted server or a late start looks like
    async with watching(url, tmp_path, "--connect-timeout", "2") as (watcher, out, err):
        with anyio.fail_after(60):
            await until_in(err, "trying again until it answers")
            fresh_nats_server.start()
            await until_in(out, "watching for changes")
            for outage in (1, 2):  # each outage, however long, is waited out
                fresh_nats_server.stop()
                await anyio.sleep(3)  # longer than the first connect's timeout: an outage, not a blip
                assert watcher.returncode is None, err.read_text()
                fresh_nats_server.start()
                await until_in(err, "reconnected to NATS", count=outage)
            watcher.send_signal(signal.SIGINT)
            code = await watcher.wait()
    said = err.read_text()
    assert code == 0, said
    assert said.startswith(f"sandboxctl: cannot connect to NATS at {url}: connection refused"), said
    assert said.count("trying again until it answers") == 1 and f"connected to NATS at {url}; watching" in said
    assert said.count("disconnected from NATS") == 2 and said.count("reconnected to NATS") == 2, said
    assert "error" not in said and "Traceback" not in said


async def test_a_timeout_of_zero_or_less_is_a_usage_error_and_publishes_nothing(fresh_nats_server: NatsServer) -> None:
    url, sid = fresh_nats_server.url, unique_id("never")
    async with client(url) as c:
        await ensure_topology(c.js, TopologySettings())
        for flags in (("--timeout", "-5"), ("--timeout", "0"), ("--timeout", "nan"), ("--connect-timeout", "-1")):
            done = await ctl("create", sid, "--email", "n@acme.com", "--org", "acme", "--force", *flags, url=url)
            assert done.returncode == 2, (flags, done.stdout, done.stderr)
            assert f"argument {flags[0]}: '{flags[1]}' is not a number of seconds above zero" in done.stderr
        info = await c.js.stream_info(naming.EVENTS_STREAM)
    assert info.state.messages == 0


async def test_a_reader_that_goes_away_ends_the_command_quietly(fresh_nats_server: NatsServer) -> None:
    """``sandboxctl status -o json | head -1``: no ``error: Broken pipe``, the exit code SIGPIPE gives."""
    url = fresh_nats_server.url
    async with client(url) as c:
        await ensure_topology(c.js, TopologySettings())
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line: every write fails with EPIPE
    try:
        with anyio.fail_after(30):
            done = await anyio.run_process(
                [*SANDBOXCTL, "status", "-o", "json", "-s", url], stdout=write_end, env=clean_env(), check=False
            )
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == 128 + signal.SIGPIPE


@dataclass
class HeldApplier(MemoryApplier):
    """Holds every apply until ``hold`` is set: the sandbox is accepted (desired state written), not reconciled."""

    hold: anyio.Event = field(default_factory=anyio.Event)

    async def apply(self, sandbox: RenderedSandbox, *, generation: int) -> ApplyResult:
        await self.hold.wait()
        return await super().apply(sandbox, generation=generation)


async def test_a_sandbox_accepted_but_not_yet_reconciled_shows_as_pending_and_exists(nats_server: NatsServer) -> None:
    url, sid = nats_server.url, unique_id("early")
    owner = ("--email", "early@acme.com", "--org", "acme")
    applier = HeldApplier()
    async with client(url) as c, running_service(service_settings(url), applier):
        created = await ctl("create", sid, *owner, url=url)
        assert created.returncode == 0, created.stderr
        desired = await c.js.key_value(naming.DESIRED_BUCKET)
        await until(lambda: desired_has(desired, sid), what="intake to accept the create")
        assert await c.status(sid) is None  # no status until the first reconcile

        shown = await ctl("status", sid, url=url)
        assert shown.returncode == 0, shown.stderr
        assert "Phase:" in shown.stdout and "Pending" in shown.stdout
        assert "accepted, waiting for its first reconcile" in shown.stdout
        record = json.loads((await ctl("status", sid, "-o", "json", url=url)).stdout)
        assert (record["sandboxId"], record["phase"], record["namespace"]) == (
            sid,
            "Pending",
            "sandbox-early-at-acme-com",
        )

        again = await ctl("create", sid, *owner, url=url)
        assert again.returncode == 1 and f"sandbox {sid} already exists (Pending)" in error_line(again)
        updated = await ctl("update", sid, *owner, "--sessions", "3", url=url)  # no --force needed
        assert updated.returncode == 0, updated.stderr
        applier.hold.set()
        status = await c.wait_status(sid, lambda s: s.phase is Phase.READY and s.observed_generation == 2)
    assert status.replicas is not None and status.replicas.desired == 3


async def desired_has(bucket: KeyValue, sandbox_id: str) -> bool:
    try:
        await bucket.get(naming.desired_key(sandbox_id))
    except KeyNotFoundError:
        return False
    return True


async def test_verbose_says_where_and_how_it_connected_and_never_the_password(fresh_nats_server: NatsServer) -> None:
    url = fresh_nats_server.url  # of its own: both runs print the same table (no age moves between them)
    async with client(url) as c:
        await ensure_topology(c.js, TopologySettings())
    quiet = await ctl("status", url=url)
    verbose = await ctl("status", "-v", "--user", "alice", "--password", "pw-never-shown", url=url)

    assert quiet.returncode == verbose.returncode == 0
    assert quiet.stderr == ""
    assert verbose.stdout == quiet.stdout
    assert f"connecting to {url} (within 5s)" in verbose.stderr
    assert f"connected to {url} (nats-server 2." in verbose.stderr
    assert "as sandboxctl, with user alice and a password, inbox prefix _INBOX" in verbose.stderr
    assert "pw-never-shown" not in verbose.stderr
