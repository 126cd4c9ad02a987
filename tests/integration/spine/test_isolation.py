"""On a real nats-server: a pass that raises an unexpected exception costs its event, never the service."""

from __future__ import annotations

import anyio
import pytest

from sandboxd import naming
from sandboxd.adapters.memory import MemoryApplier
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.models.status import Phase
from sandboxd.render.model import RenderedSandbox
from support.spine import client, running_service, service_settings, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


async def test_a_pass_that_raises_is_dead_lettered_and_the_service_goes_on(fresh_nats_server: NatsServer) -> None:
    bad, good, later = unique_id("bad"), unique_id("good"), unique_id("later")

    def bug(sandbox: RenderedSandbox) -> Exception | None:
        return RuntimeError("a bug; token=hunter2") if sandbox.sandbox_id == bad else None

    applier = MemoryApplier(fail=bug)
    settings = service_settings(fresh_nats_server.url)  # max_deliver 6, retries from 0.2 s up to 2 s
    async with client(fresh_nats_server.url) as c, running_service(settings, applier) as service:
        await c.create(bad, "bad@acme.com")
        await c.create(good, "good@acme.com")
        await c.wait_status(good, lambda s: s.phase is Phase.READY)
        with anyio.fail_after(30):
            while not (letters := await c.dead_letters()):
                await anyio.sleep(0.1)
        await c.create(later, "later@acme.com")  # the service still takes new work
        await c.wait_status(later, lambda s: s.phase is Phase.READY)
        assert service.health.ready
    [letter] = letters
    assert letter.headers is not None
    assert letter.headers["Sandboxd-Dead-Reason"] == "UnexpectedError"
    message = letter.headers["Sandboxd-Dead-Message"]
    assert "RuntimeError" in message and "hunter2" not in message
    assert letter.subject.endswith(bad)


async def test_an_event_the_broker_refuses_to_record_is_dead_lettered_and_its_status_says_why(
    fresh_nats_server: NatsServer,
) -> None:
    """Intake failing for good for a reason outside the event (here the desired-state bucket refuses values as
    large as a desired state) dead-letters the event, and the sandbox's status says why it was not recorded."""
    refused, fine = unique_id("refused"), unique_id("fine")
    async with (
        client(fresh_nats_server.url) as c,
        running_service(service_settings(fresh_nats_server.url), MemoryApplier()) as service,
    ):
        await c.create(fine, "fine@acme.com")
        await c.wait_status(fine, lambda s: s.phase is Phase.READY)
        stream = f"KV_{naming.DESIRED_BUCKET}"
        config = (await c.js.stream_info(stream)).config
        config.max_msg_size = 64
        await c.js.update_stream(config)
        await c.create(refused, "refused@acme.com")
        status = await c.wait_status(refused, lambda s: s.phase is Phase.REJECTED)
        letters = await c.dead_letters()
        assert service.health.ready
    [letter] = letters
    assert letter.subject.endswith(refused) and letter.headers is not None
    assert letter.headers["Sandboxd-Dead-Reason"] == "BrokerRefused"
    [accepted] = [cond for cond in status.conditions if cond.type == "Accepted"]
    assert (accepted.status, accepted.reason) == ("False", "BrokerRefused")
    assert status.last_error is not None and status.last_error.reason == "BrokerRefused"
    assert naming.DESIRED_BUCKET in status.last_error.message
