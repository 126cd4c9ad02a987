"""``sandboxctl status`` and ``watch`` over status records they cannot read (a newer sandboxd's, or corrupt bytes put
straight into the bucket): each is one warning line on stderr naming its key and quoting nothing of its value, the
other sandboxes show as ever, and the list still exits 0. Real nats-server, no sandboxd: the records are written by
hand.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from sandboxd_processes import ctl, until_in, watching

from sandboxd import naming
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.models.status import Phase, SandboxStatus
from support.spine import status_bucket

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

NOT_A_STATUS = b'{"not":"a status"}'
#: Not JSON, not UTF-8, and a terminal title escape with a canary: none of it may reach the reader.
GARBAGE = b"\x1b]0;canary-pwned\x07\xff\xfe\x00 canary-bytes"
WARNING = "sandboxctl: warning: sandbox {}: its status record is unreadable"


def good(sandbox_id: str, phase: Phase = Phase.READY) -> bytes:
    status = SandboxStatus(sandbox_id=sandbox_id, phase=phase, updated_at=datetime(2026, 12, 3, tzinfo=UTC))
    return status.to_json()


def quotes_nothing_of_the_values(stderr: str) -> None:
    assert "canary" not in stderr and "\x1b" not in stderr and "a status" not in stderr, stderr


async def test_status_warns_once_per_unreadable_record_lists_the_rest_and_exits_0(
    fresh_nats_server: NatsServer,
) -> None:
    url = fresh_nats_server.url
    async with status_bucket(url) as kv:
        await kv.put(naming.status_key("ok1"), good("ok1"))
        await kv.put(naming.status_key("dc1"), NOT_A_STATUS)
        await kv.put(naming.status_key("dc2"), GARBAGE)

        for flags in ((), ("-o", "json"), ("-o", "name"), ("-A",)):
            done = await ctl("status", *flags, url=url)
            assert done.returncode == 0, (flags, done.stderr)
            assert "dc1" not in done.stdout and "dc2" not in done.stdout and "ok1" in done.stdout, flags
            assert done.stderr.splitlines() == [
                WARNING.format("dc1") + " (not a SandboxStatus record: a newer sandboxd's, or corrupt); skipped",
                WARNING.format("dc2") + " (not a SandboxStatus record: a newer sandboxd's, or corrupt); skipped",
            ], flags
            quotes_nothing_of_the_values(done.stderr)

        one = await ctl("status", "dc1", url=url)  # asked for by id: an error, as before
        assert one.returncode == 1 and "not a SandboxStatus record" in one.stderr


async def test_watch_of_an_unreadable_record_says_so_and_follows_it_once_readable(
    fresh_nats_server: NatsServer, tmp_path: Path
) -> None:
    url = fresh_nats_server.url
    async with status_bucket(url) as kv:
        await kv.put(naming.status_key("dc1"), NOT_A_STATUS)
        async with watching(url, tmp_path, "dc1") as (watcher, out, err):
            with anyio.fail_after(30):
                await until_in(out, "watching for changes")
                await kv.put(naming.status_key("dc1"), good("dc1"))
                await until_in(out, "dc1  Ready")
                await kv.put(naming.status_key("dc1"), GARBAGE)
                await until_in(err, WARNING.format("dc1"), count=2)
                watcher.send_signal(signal.SIGINT)
                code = await watcher.wait()
    shown, said = out.read_text(), err.read_text()
    assert code == 0, said
    assert shown.startswith("sandbox dc1: its status record is unreadable; waiting for changes"), shown
    assert "has no status yet" not in shown
    assert said.count("sandboxctl: warning:") == 2 and said.count("\n") == 2, said  # one line per record
    quotes_nothing_of_the_values(said + shown)


async def test_watch_of_all_shows_the_readable_ones_and_warns_of_each_unreadable_one(
    fresh_nats_server: NatsServer, tmp_path: Path
) -> None:
    url = fresh_nats_server.url
    async with status_bucket(url) as kv:
        await kv.put(naming.status_key("ok1"), good("ok1"))
        await kv.put(naming.status_key("dc1"), NOT_A_STATUS)
        async with watching(url, tmp_path) as (watcher, out, err):
            with anyio.fail_after(30):
                await until_in(out, "watching for changes")
                await kv.put(naming.status_key("dc2"), GARBAGE)
                await kv.put(naming.status_key("ok1"), good("ok1", Phase.IDLE))
                await until_in(out, "ok1  Idle")
                watcher.send_signal(signal.SIGINT)
                code = await watcher.wait()
    shown, said = out.read_text(), err.read_text()
    assert code == 0, said
    assert "ok1" in shown.splitlines()[1] and "dc1" not in shown and "dc2" not in shown, shown
    assert [line.split(":")[2] for line in said.splitlines()] == [" sandbox dc1", " sandbox dc2"], said
    quotes_nothing_of_the_values(said + shown)
