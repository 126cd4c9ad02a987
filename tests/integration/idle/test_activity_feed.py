"""The activity feed's start on a real nats-server: a consumer that vanished while it started is not fatal."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import anyio
import nats
import pytest

from sandboxd import naming
from sandboxd.adapters.jetstream.activity import ActivityFeed
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.errors import BrokerUnavailable
from sandboxd.naming import SandboxId
from sandboxd.reconcile.activity import ActivityBook
from sandboxd.settings import TopologySettings

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


async def test_a_consumer_gone_while_the_feed_starts_is_retried_not_fatal(fresh_nats_server: NatsServer) -> None:
    """Under load an ordered consumer resets itself (missed heartbeats) and is re-created under a new name, so the
    one the feed asks about can be gone: the feed asks again, and if it stays gone says "not now" (retryable,
    as ``until_done`` retries) instead of a permanent refusal that ended ``sandboxd run`` once."""
    nc = await nats.connect(fresh_nats_server.url)
    try:
        js = nc.jetstream()
        await ensure_topology(js, TopologySettings())
        sub = await js.subscribe(  # heartbeats a minute apart: nats-py does not re-create it within the test
            naming.ACTIVITY_SUBJECTS,
            stream=naming.ACTIVITY_STREAM,
            ordered_consumer=True,
            idle_heartbeat=60.0,
            cb=_ignore,
        )
        await nc.jsm().delete_consumer(naming.ACTIVITY_STREAM, (await sub.consumer_info()).name)
        with pytest.raises(BrokerUnavailable, match="re-created"):
            await ActivityFeed._replay_pending(sub)  # the step start() takes, on its own

        feed = ActivityFeed(js, ActivityBook())
        await feed.start()  # a start afresh works, and an empty stream has nothing to replay
        assert feed.book.ready
        await feed.close()
    finally:
        await nc.close()


async def test_malformed_reports_are_ignored_and_said_once_a_minute(
    fresh_nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken reporter publishes every few seconds: what does not parse is counted, and a WARNING says so at
    most once a minute (with the count, and what is held back on close), quoting the subject; the good reports go
    on counting."""
    nc = await nats.connect(fresh_nats_server.url)
    try:
        js = nc.jetstream()
        await ensure_topology(js, TopologySettings())
        feed = ActivityFeed(js, ActivityBook())
        await feed.start()
        caplog.set_level(logging.WARNING, logger="sandboxd.adapters.jetstream.activity")
        for body in (b"{not json", b'{"lastActivityAt": "yesterday", "activeSessions": 1}', b"\xff" * 10):
            await js.publish(naming.activity_subject("sb-broken"), body)
        good = b'{"lastActivityAt": "2026-05-21T10:02:40", "activeSessions": 2}'  # no offset: read as UTC
        await js.publish(naming.activity_subject("sb-good"), good)
        with anyio.fail_after(10):
            while feed.book.latest(SandboxId("sb-good")) is None:
                await anyio.sleep(0.01)
        assert feed.ignored == 3
        [warning] = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
        assert "ignored 1 malformed activity report(s), the last on 'sandbox.activity.sb-broken'" in warning
        report = feed.book.latest(SandboxId("sb-good"))
        assert report is not None and report.last_activity_at == datetime(2026, 5, 21, 10, 2, 40, tzinfo=UTC)
        await feed.close()  # the two held back are said on the way out, not lost
        warnings = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
        assert len(warnings) == 2 and "ignored 2 malformed activity report(s)" in warnings[1]
    finally:
        await nc.close()


async def _ignore(msg: nats.aio.msg.Msg) -> None:
    pass
