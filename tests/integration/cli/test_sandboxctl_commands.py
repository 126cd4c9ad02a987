"""``sandboxctl`` as a user runs it: a subprocess against a real nats-server and an in-process service.

Checks what a terminal shows (tables, JSON, YAML, one-line errors) and the exit codes scripts rely on:
0 done, 1 failed (one line on stderr, no traceback), 2 usage error.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import anyio
import pytest
import yaml
from sandboxd_processes import SANDBOXCTL, clean_env, ctl

from sandboxd.adapters.memory import MemoryApplier
from sandboxd.adapters.natsserver import NatsServer, free_port
from sandboxd.models.status import Phase
from support.spine import client, running_service, service_settings, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return lines[0]


async def test_create_status_update_delete_round_trip(fresh_nats_server: NatsServer, tmp_path: Path) -> None:
    url = fresh_nats_server.url
    sid = unique_id()
    async with client(url) as c, running_service(service_settings(url), MemoryApplier()):
        created = await ctl(
            "create", sid, "--email", "cli@acme.com", "--org", "acme", "--sessions", "2", "--repo", "acme/tools",
            url=url,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        assert f"sandbox.create.{sid}: published as stream sequence" in created.stdout
        await c.wait_status(sid, lambda s: s.phase is Phase.READY)

        table = await ctl("status", url=url)
        assert table.returncode == 0, table.stderr
        header, row = table.stdout.strip().splitlines()
        assert header.split() == ["ID", "PHASE", "READY", "NAMESPACE", "GEN", "UPDATED", "MESSAGE"]
        assert row.split()[:5] == [sid, "Ready", "2/2", "sandbox-cli-at-acme-com", "1"]

        detail = await ctl("status", sid, url=url)
        assert "Conditions:" in detail.stdout and "Endpoint:" in detail.stdout
        assert "StatefulSet sandbox-cli-at-acme-com/pty-server" in detail.stdout

        as_json = await ctl("status", sid, "-o", "json", url=url)
        record = json.loads(as_json.stdout)
        assert (record["sandboxId"], record["phase"], record["observedGeneration"]) == (sid, "Ready", 1)
        assert record["replicas"] == {"desired": 2, "ready": 2}

        spec_file = tmp_path / "spec.yaml"
        spec_file.write_text(
            yaml.safe_dump(
                {
                    "spec": {
                        "owner": {"email": "cli@acme.com", "orgRef": {"slug": "acme"}},
                        "quota": {"cpu": "2", "memory": "4Gi", "storage": "20Gi", "concurrentSessions": 3},
                    }
                }
            )
        )
        updated = await ctl("update", sid, "-f", str(spec_file), url=url)
        assert updated.returncode == 0, updated.stderr
        await c.wait_status(sid, lambda s: s.observed_generation == 2 and s.phase is Phase.READY)
        listed = yaml.safe_load((await ctl("status", "-o", "yaml", url=url)).stdout)
        assert [(s["sandboxId"], s["replicas"]["desired"]) for s in listed] == [(sid, 3)]

        deleted = await ctl("delete", sid, url=url)
        assert deleted.returncode == 0, deleted.stderr
        status = await c.wait_status(sid, lambda s: s.phase is Phase.DELETED)
    assert status.observed_generation == 3


async def test_republishing_an_event_id_reports_the_duplicate(fresh_nats_server: NatsServer) -> None:
    url, sid = fresh_nats_server.url, unique_id()
    async with client(url) as c, running_service(service_settings(url), MemoryApplier()):
        flags = ("create", sid, "--email", "dup@acme.com", "--org", "acme", "--event-id", "evt-cli-1")
        first = await ctl(*flags, url=url)
        second = await ctl(*flags, url=url)
        sequence = first.stdout.split("stream sequence ")[1].split()[0]
        stored = await c.js.get_msg("SANDBOX_EVENTS", int(sequence))
    assert first.returncode == second.returncode == 0
    assert f"duplicate of stream sequence {sequence}" in second.stdout
    headers = stored.headers or {}
    assert headers["Nats-Msg-Id"] == "evt-cli-1"
    assert headers["traceparent"].startswith("00-")  # the service's spans and logs join sandboxctl's trace


async def test_dead_letters_are_listed_shown_and_replayed(fresh_nats_server: NatsServer) -> None:
    url, sid = fresh_nats_server.url, unique_id()
    async with client(url) as c, running_service(service_settings(url), MemoryApplier()):
        # A suspend before the create is refused and dead-lettered; once the sandbox exists, a replay applies it.
        early = await ctl("suspend", sid, "--reason", "billing", "--force", url=url)
        assert early.returncode == 0, early.stderr
        with anyio.fail_after(15):
            while not await c.dead_letters():
                await anyio.sleep(0.1)
        await ctl("create", sid, "--email", "dlq@acme.com", "--org", "acme", "--sessions", "2", url=url)
        await c.wait_status(sid, lambda s: s.phase is Phase.READY and s.observed_generation == 1)

        listed = await ctl("dlq", "list", url=url)
        assert listed.returncode == 0, listed.stderr
        header, row = listed.stdout.strip().splitlines()
        assert header.split() == ["SEQ", "AGE", "SUBJECT", "REASON", "DELIVERIES", "MESSAGE"]
        seq, _, subject, reason = row.split()[:4]
        assert (subject, reason) == (f"sandbox.suspend.{sid}", "InvalidEvent")

        shown = json.loads((await ctl("dlq", "show", seq, "-o", "json", url=url)).stdout)
        assert shown["originalSubject"] == f"sandbox.suspend.{sid}"
        assert "needs a create first" in shown["message"]
        original_id = json.loads(shown["body"])["id"]

        replayed = await ctl("dlq", "replay", seq, url=url)
        assert replayed.returncode == 0, replayed.stderr
        assert f"with id replay:{seq}:{original_id}" in replayed.stdout
        status = await c.wait_status(sid, lambda s: s.observed_generation == 2)
        assert status.phase is Phase.SUSPENDED
        assert status.event_id == f"replay:{seq}:{original_id}"

        again = await ctl("dlq", "replay", "--all", url=url)
        assert "already replayed as" in again.stdout  # the same replay id within the window is stored once

        missing = await ctl("dlq", "show", "9999", url=url)
    assert missing.returncode == 1
    assert one_error_line(missing) == "sandboxctl: error: no dead letter 9999 in SANDBOX_DLQ"


async def test_watch_prints_changes_and_ctrl_c_exits_zero(fresh_nats_server: NatsServer, tmp_path: Path) -> None:
    url, sid = fresh_nats_server.url, unique_id()
    out = tmp_path / "watch.out"
    async with running_service(service_settings(url), MemoryApplier()):
        with out.open("wb") as sink:
            watcher = await anyio.open_process(
                [*SANDBOXCTL, "watch", "-s", url], stdout=sink, stderr=subprocess.STDOUT, env=clean_env()
            )
        try:
            with anyio.fail_after(15):
                while "watching for changes" not in out.read_text():
                    await anyio.sleep(0.05)
            await ctl("create", sid, "--email", "watch@acme.com", "--org", "acme", url=url)
            with anyio.fail_after(15):
                while f"{sid}  Ready" not in out.read_text():
                    await anyio.sleep(0.05)
            watcher.send_signal(signal.SIGINT)
            with anyio.fail_after(10):
                code = await watcher.wait()
        finally:
            if watcher.returncode is None:
                watcher.kill()
            await watcher.aclose()
    assert code == 0, out.read_text()
    assert "No sandboxes yet" in out.read_text()


async def test_an_unreachable_server_is_one_line_and_exit_1() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    done = await ctl("status", "--server", url, "--connect-timeout", "1")
    assert done.returncode == 1
    line = one_error_line(done)
    assert line.startswith(f"sandboxctl: error: cannot connect to NATS at {url}")
    assert done.stdout == ""


async def test_an_invalid_spec_is_one_line_and_exit_1(fresh_nats_server: NatsServer) -> None:
    done = await ctl(
        "create", "sb-bad", "--email", "not-an-email", "--org", "acme", "--sessions", "11",
        url=fresh_nats_server.url,
    )  # fmt: skip
    assert done.returncode == 1
    line = one_error_line(done)
    assert line.startswith("sandboxctl: error: invalid spec:")
    assert "spec.owner.email" in line and "spec.quota.concurrentSessions" in line


async def test_usage_errors_exit_2() -> None:
    missing_owner = await ctl("create", "sb-x")
    bad_id = await ctl("status", "Not_An_Id")
    replay_nothing = await ctl("dlq", "replay")
    assert (missing_owner.returncode, bad_id.returncode, replay_nothing.returncode) == (2, 2, 2)
    assert "--email and --org are required" in missing_owner.stderr
    assert "is not a sandbox id" in bad_id.stderr


async def test_status_of_an_unknown_sandbox_is_one_line(fresh_nats_server: NatsServer) -> None:
    url = fresh_nats_server.url
    async with running_service(service_settings(url), MemoryApplier()):
        done = await ctl("status", "sb-nobody", url=url)
        empty = await ctl("status", url=url)
    assert done.returncode == 1
    assert "sandbox sb-nobody has no status" in one_error_line(done)
    assert empty.returncode == 0 and empty.stdout.strip() == "No sandboxes."
