"""Which refusal an apply of many objects reports: the cause, in dependency order, not the fastest answer."""

from __future__ import annotations

import anyio
import pytest

from sandboxd.adapters.kubernetes.applier import _gather
from sandboxd.errors import ApplyRejected, ApplyUnavailable

pytestmark = pytest.mark.anyio


def failing(error: Exception, after_s: float):  # type: ignore[no-untyped-def]
    async def call() -> None:
        await anyio.sleep(after_s)
        raise error

    return call


async def test_the_earliest_object_s_refusal_is_reported_even_when_a_later_one_answered_first() -> None:
    role = ApplyRejected('roles.rbac.authorization.k8s.io "sandbox" is forbidden: attempting to grant RBAC permissions')
    binding = ApplyRejected('roles.rbac.authorization.k8s.io "sandbox" not found')
    with pytest.raises(ApplyRejected) as raised:
        await _gather([failing(role, 0.05), failing(binding, 0.0)], limit=2)
    assert raised.value is role


async def test_a_refusal_wins_over_an_earlier_transient_failure() -> None:
    busy = ApplyUnavailable("the server is busy")
    refused = ApplyRejected("spec.replicas: Invalid value")
    with pytest.raises(ApplyRejected) as raised:
        await _gather([failing(busy, 0.0), failing(refused, 0.01)], limit=2)
    assert raised.value is refused
