"""The activity feed's start on a real nats-server: a consumer that vanished while it started is not fatal."""

from __future__ import annotations

import nats
import pytest

from sandboxd import naming
from sandboxd.adapters.jetstream.activity import ActivityFeed
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.errors import BrokerUnavailable
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


async def _ignore(msg: nats.aio.msg.Msg) -> None:
    pass
