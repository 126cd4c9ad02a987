"""The tenant bridge's per-request outcomes (``app.tenants``): one request never ends the loop, transient publish
failures are retried with the backoff, and only a request that cannot be a create, or one out of deliveries, is
dead-lettered. The end-to-end paths on a real nats-server are in tests/integration (spine, cli, security).
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from sandboxd.app.tenants import TenantBridge
from sandboxd.errors import BrokerUnavailable
from sandboxd.models.events import CreateEvent
from sandboxd.runtime.disposition import Disposition
from sandboxd.runtime.retry import Backoff
from sandboxd.settings import TenantBridgeSettings
from support.tenants import tenant_request
from unit.runtime.fakes import FakeDelivery, Letters

pytestmark = pytest.mark.anyio

MAX_DELIVER = 5


class Creates:
    """The create publisher; ``fail`` makes every publish raise it."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.published: list[CreateEvent] = []
        self.fail = fail

    async def __call__(self, event: CreateEvent) -> tuple[int, bool]:
        if self.fail is not None:
            raise self.fail
        self.published.append(event)
        return len(self.published), False


async def nothing_done(create: CreateEvent) -> str | None:
    """No sandbox and no earlier create: every request is published (the lookup has tests on a real server)."""
    return None


def bridge(creates: Creates, letters: Letters) -> TenantBridge:
    disposition = Disposition(dead_letters=letters, backoff=Backoff(1.0, 10.0), max_deliver=MAX_DELIVER)
    return TenantBridge(
        cast(Any, None), TenantBridgeSettings(), disposition=disposition, publish=creates, done=nothing_done
    )


def request(event_id: str = "evt-1", *, delivered: int = 1, **data: Any) -> FakeDelivery:
    body = tenant_request(event_id, **data)
    return FakeDelivery(
        "catalyst.tenant.sandbox_requested", body, headers={"Nats-Msg-Id": event_id}, num_delivered=delivered
    )


async def test_a_request_is_acked_once_its_create_is_published() -> None:
    creates, letters = Creates(), Letters()
    delivery = request("evt-1", plan_id="sandbox-free")
    await bridge(creates, letters).handle_one(delivery)
    [create] = creates.published
    assert create.id == "tenant:evt-1"
    assert create.data.spec.quota.concurrent_sessions == 1
    assert delivery.settled == [("ack", None)]


async def test_a_transient_publish_failure_is_retried_with_the_backoff_not_dead_lettered() -> None:
    letters, delivery = Letters(), request()
    await bridge(Creates(fail=BrokerUnavailable("NATS is down")), letters).handle_one(delivery)
    [(action, delay)] = delivery.settled
    assert action == "nak" and delay is not None and delay > 0
    assert letters.sent == []


async def test_an_unexpected_exception_is_that_requests_outcome_and_the_next_request_still_goes() -> None:
    letters, first, second = Letters(), request("evt-1"), request("evt-2")
    creates = Creates(fail=RuntimeError("a bug"))
    tenant_bridge = bridge(creates, letters)
    await tenant_bridge.handle_one(first)  # never raises
    creates.fail = None
    await tenant_bridge.handle_one(second)
    assert first.settled[0][0] == "nak"
    assert second.settled == [("ack", None)]
    assert [c.id for c in creates.published] == ["tenant:evt-2"]


async def test_a_request_out_of_deliveries_is_dead_lettered_with_the_last_failure() -> None:
    letters, delivery = Letters(), request(delivered=MAX_DELIVER - 1)
    await bridge(Creates(fail=BrokerUnavailable("NATS is down")), letters).handle_one(delivery)
    [(_, reason, message)] = letters.sent
    assert reason == "BrokerUnavailable" and f"gave up after {MAX_DELIVER - 1} deliveries" in message
    assert delivery.settled == [("term", None)]


async def test_a_request_that_cannot_be_a_create_is_dead_lettered_at_once() -> None:
    letters, creates, delivery = Letters(), Creates(), request(agents=["no-such-agent"])
    await bridge(creates, letters).handle_one(delivery)
    [(_, reason, message)] = letters.sent
    assert reason == "InvalidEvent" and "agentCatalogue" in message
    assert delivery.settled == [("term", None)] and creates.published == []
