"""What ``sandboxctl status`` prints for a sandbox that expires and for a token that was not issued (pure text
from records; the clock is a parameter)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sandboxd.cli import output
from sandboxd.models.spec import ExpiryPolicy
from sandboxd.models.status import Condition, ConditionStatus, ConditionType, Phase, SandboxStatus, TokenState

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def ready(**changes: object) -> SandboxStatus:
    status = SandboxStatus(sandbox_id="alice", phase=Phase.READY, updated_at=NOW - timedelta(minutes=5))
    return status.model_copy(update=changes)


def token_refused() -> Condition:
    return Condition(
        type=ConditionType.TOKEN_ISSUED,
        status=ConditionStatus.FALSE,
        reason="GatewayUnavailable",
        message="new-api answered 503",
        last_transition_time=NOW,
    )


def test_the_time_left_shows_in_the_wide_table_and_the_detail() -> None:
    expiring = ready(expires_at=NOW + timedelta(hours=7, minutes=59), expiry_policy=ExpiryPolicy.PURGE)
    header, row = output.status_table([expiring, ready(sandbox_id="bob")], NOW, wide=True).splitlines()[:2]
    assert "EXPIRES" in header.split()
    assert "in 7h" in row
    detail = output.status_detail(expiring, NOW)
    assert "Expires:" in detail and "in 7h (2025-06-01T19:59:00Z, purge)" in detail
    assert "Expires:" not in output.status_detail(ready(), NOW)
    assert output.time_left(NOW - timedelta(seconds=1), NOW) == "due"


def test_a_token_not_issued_reads_as_such() -> None:
    never = ready(conditions=[token_refused()])
    assert output.message_of(never) == "no session token issued (GatewayUnavailable: new-api answered 503)"
    last = TokenState(
        revision=2,
        expires_at=NOW + timedelta(hours=1),
        rotated_at=NOW - timedelta(hours=23),
        rotate_at=NOW,
        fingerprint="f",
    )
    stale = ready(conditions=[token_refused()], token=last)
    assert output.message_of(stale) == (
        "token not renewed (GatewayUnavailable: new-api answered 503); the last one works until 2025-06-01T13:00:00Z"
    )
    assert "Token:" in output.status_detail(stale, NOW) and "token not renewed" in output.status_detail(stale, NOW)
    assert "Token:" in output.status_detail(ready(token=last), NOW)
    assert "issued, expires in 1h" in output.status_detail(ready(token=last), NOW)
