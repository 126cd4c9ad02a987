"""Bounded text: a publisher's value of any length is named in a refusal without being copied into it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from sandboxd.models import Condition, ConditionStatus, ConditionType, describe, parse_event
from sandboxd.models.base import MAX_PROBLEMS
from sandboxd.models.bounds import ELLIPSIS, MESSAGE_LIMIT, QUOTE_LIMIT, clip, quote
from sandboxd.models.status import LastError

EventFactory = Callable[..., dict[str, Any]]  # the make_event fixture (conftest.py)

HUGE = 40_000


@given(st.text(), st.integers(min_value=1, max_value=500))
def test_clip_keeps_short_text_and_cuts_long_text_with_an_ellipsis(text: str, limit: int) -> None:
    clipped = clip(text, limit)
    assert len(clipped) <= limit
    if len(text) <= limit:
        assert clipped == text
    else:
        assert clipped == text[: limit - 1] + ELLIPSIS


@given(st.one_of(st.text(), st.text(min_size=QUOTE_LIMIT * 2), st.lists(st.integers())))
def test_quote_shows_at_most_the_limit_whatever_the_value(value: object) -> None:
    shown = quote(value)
    assert len(shown) <= QUOTE_LIMIT + 3
    assert shown[0] == shown[-1] and shown[0] in "'\""


def test_quote_marks_a_cut_and_leaves_a_short_value_as_repr() -> None:
    assert quote("1.5cores") == "'1.5cores'"
    assert quote("x" * HUGE) == "'" + "x" * QUOTE_LIMIT + ELLIPSIS + "'"
    assert quote("\x00" * QUOTE_LIMIT).endswith(ELLIPSIS + "'"), "escapes cannot stretch a quote"


def _refusal(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as refused:
        parse_event(json.dumps(body))
    return describe(refused.value)


def _bend(body: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    node: Any = body
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value
    return body


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data.spec.planId", "data.spec.planId: String should have at most 63 characters"),
        ("data.spec.quota.cpu", "data.spec.quota.cpu: String should have at most 32 characters"),
        ("data.spec.quota.memory", "data.spec.quota.memory: String should have at most 32 characters"),
        ("data.spec.owner.orgRef.slug", "data.spec.owner.orgRef.slug: String should have at most 32 characters"),
        ("data.spec.repos.0.giteaRepo", "data.spec.repos.0.giteaRepo: String should have at most 141 characters"),
        ("data.spec.capabilities", "data.spec.capabilities.0: String should have at most 128 characters"),
        ("type", "Input tag 'io.openova.sandbox.create"),
        ("traceparent", "traceparent: String should have at most 512 characters"),
    ],
)
def test_a_40_kb_value_is_refused_in_a_few_hundred_characters(
    make_event: EventFactory, path: str, expected: str
) -> None:
    value: object = ["c" * HUGE] if path.endswith("capabilities") else "io.openova.sandbox.create" + "x" * HUGE
    message = _refusal(_bend(make_event("create"), path, value))
    assert expected in message
    assert len(message) < 2 * QUOTE_LIMIT + QUOTE_LIMIT


def test_an_unknown_40_kb_key_is_named_in_a_few_hundred_characters(make_event: EventFactory) -> None:
    body = make_event("create")
    body["data"]["spec"]["k" * HUGE] = "v" * HUGE
    message = _refusal(body)
    assert message.startswith("data.spec.kkkk") and message.endswith(": is not a known field")
    assert len(message) < 2 * QUOTE_LIMIT


def test_many_problems_are_counted_not_all_listed(make_event: EventFactory) -> None:
    body = make_event("create")
    body["data"]["spec"]["capabilities"] = ["bad capability " + "x" * HUGE] * 128
    message = _refusal(body)
    assert message.count("is not valid") + message.count("at most 128") == MAX_PROBLEMS
    assert message.endswith(f"and {128 - MAX_PROBLEMS} more problems")
    assert len(message) < MESSAGE_LIMIT


def test_a_missing_specversion_is_refused(make_event: EventFactory) -> None:
    body = make_event("delete")
    del body["specversion"]
    assert _refusal(body) == "specversion: is required"


@given(st.text(min_size=1, max_size=16), st.integers(min_value=0, max_value=3 * MESSAGE_LIMIT))
def test_status_messages_are_cut_where_they_are_written_never_refused(piece: str, times: int) -> None:
    message = piece * times
    now = datetime(2026, 5, 21, tzinfo=UTC)
    condition = Condition(
        type=ConditionType.ACCEPTED,
        status=ConditionStatus.FALSE,
        reason="InvalidEvent",
        message=message,
        last_transition_time=now,
    )
    error = LastError(reason="InvalidEvent", message=message, at=now, retryable=False)
    assert condition.message == error.message == clip(message, MESSAGE_LIMIT)
    assert Condition.model_validate_json(condition.to_json()) == condition
