"""Lifecycle events: CloudEvents 1.0 structured JSON that round-trips, and refusals that say what is wrong."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from sandboxd.models import (
    CreateEvent,
    DeleteEvent,
    ResumeEvent,
    SandboxSpec,
    SuspendEvent,
    UpdateEvent,
    describe,
    parse_event,
)
from sandboxd.models.events import EVENT_CLASSES, TYPE_PREFIX
from sandboxd.naming import VERBS

EventFactory = Callable[..., dict[str, Any]]  # the make_event fixture (conftest.py)


def refusal(body: dict[str, Any] | str) -> str:
    with pytest.raises(ValidationError) as refused:
        parse_event(body if isinstance(body, str) else json.dumps(body))
    return describe(refused.value)


def test_there_is_one_event_class_per_verb() -> None:
    assert tuple(EVENT_CLASSES) == VERBS
    for verb, cls in EVENT_CLASSES.items():
        assert cls.model_fields["type"].default == f"{TYPE_PREFIX}{verb}"


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_round_trips_through_its_wire_form(make_event: EventFactory, verb: str) -> None:
    event = parse_event(json.dumps(make_event(verb, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")))
    assert type(event) is EVENT_CLASSES[verb]
    assert event.verb == verb
    assert parse_event(event.to_json()) == event
    assert json.loads(event.to_json())["type"] == f"io.openova.sandbox.{verb}"


def test_events_built_in_code_round_trip(make_event: EventFactory) -> None:
    spec = SandboxSpec.model_validate(make_event("create")["data"]["spec"])
    now = datetime(2026, 5, 21, 9, 30, tzinfo=UTC)
    built = [
        CreateEvent(specversion="1.0", id="1", source="/test", subject="sb-1", time=now, data={"spec": spec}),
        UpdateEvent(specversion="1.0", id="2", source="/test", subject="sb-1", data={"spec": spec}),
        DeleteEvent(specversion="1.0", id="3", source="/test", subject="sb-1"),
        SuspendEvent(specversion="1.0", id="4", source="/test", subject="sb-1"),
        ResumeEvent(specversion="1.0", id="5", source="/test", subject="sb-1"),
    ]
    for event in built:
        assert parse_event(event.to_json()) == event


def test_the_wire_form_is_cloudevents_structured_json(make_event: EventFactory) -> None:
    wire = json.loads(parse_event(json.dumps(make_event("create"))).to_json())
    assert wire["specversion"] == "1.0"
    assert wire["datacontenttype"] == "application/json"
    assert wire["time"] == "2026-05-21T09:30:00Z"
    assert "traceparent" not in wire, "None fields are left out"
    assert wire["data"]["spec"]["quota"]["concurrentSessions"] == 3


def test_times_are_written_in_utc(make_event: EventFactory) -> None:
    event = parse_event(json.dumps(make_event("resume", time="2026-05-21T13:30:00+04:00")))
    assert event.time == datetime(2026, 5, 21, 9, 30, tzinfo=UTC)
    assert json.loads(event.to_json())["time"] == "2026-05-21T09:30:00Z"
    assert event.time is not None
    assert event.time.utcoffset() == timedelta(hours=4), "the offset the publisher sent is kept in memory"


def test_optional_data_has_defaults(make_event: EventFactory) -> None:
    delete = parse_event(json.dumps(make_event("delete")))
    assert isinstance(delete, DeleteEvent)
    assert delete.data.purge is False, "delete keeps customer data unless asked"
    suspend = parse_event(json.dumps(make_event("suspend", data={"reason": "invoice overdue"})))
    assert isinstance(suspend, SuspendEvent)
    assert suspend.data.reason == "invoice overdue"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"specversion": "0.3"}, "specversion: Input should be '1.0'"),
        ({"id": ""}, "id: String should have at least 1 character"),
        ({"subject": "Sandbox_CEO"}, "subject: String should match pattern"),
        ({"subject": "s" * 64}, "subject: String should have at most 63 characters"),
        ({"time": "yesterday"}, "time: Input should be a valid datetime"),
        ({"datacontenttype": "text/plain"}, "datacontenttype: Input should be 'application/json'"),
        ({"partitionkey": "x"}, "partitionkey: is not a known field"),
        ({"data": {"spec": {}}}, "data.spec.owner: is required; data.spec.quota: is required"),
    ],
)
def test_a_refusal_names_the_attribute_and_what_is_wrong(
    make_event: EventFactory, change: dict[str, Any], expected: str
) -> None:
    assert expected in refusal(make_event("create", **change))


@pytest.mark.parametrize("attribute", ["id", "source", "subject"])
def test_required_attributes(make_event: EventFactory, attribute: str) -> None:
    body = make_event("delete")
    del body[attribute]
    assert refusal(body) == f"{attribute}: is required"


@pytest.mark.parametrize("verb", ["create", "update"])
def test_create_and_update_carry_the_whole_spec(make_event: EventFactory, verb: str) -> None:
    body = make_event(verb)
    del body["data"]
    assert refusal(body) == "data: is required"
    body["data"] = {"spec": {"quota": {"concurrentSessions": 4}}}
    assert "data.spec.owner: is required" in refusal(body), "an update is never a patch"


def test_the_spec_s_own_refusals_carry_the_event_path(make_event: EventFactory) -> None:
    body = make_event("create")
    body["data"]["spec"]["quota"]["concurrentSessions"] = 11
    assert refusal(body) == "data.spec.quota.concurrentSessions: Input should be less than or equal to 10"


def test_an_unknown_type_is_refused_listing_the_known_ones(make_event: EventFactory) -> None:
    message = refusal(make_event("restart"))
    assert "'io.openova.sandbox.restart'" in message
    assert all(f"'io.openova.sandbox.{verb}'" in message for verb in VERBS)


def test_a_body_that_is_not_json_is_refused() -> None:
    assert "Invalid JSON" in refusal("{not json")


def test_an_event_is_frozen(make_event: EventFactory) -> None:
    event = parse_event(json.dumps(make_event("delete")))
    with pytest.raises(ValidationError, match="frozen"):
        event.subject = "other"  # type: ignore[misc]


def test_a_time_without_offset_is_read_as_utc(make_event: EventFactory) -> None:
    event = parse_event(json.dumps(make_event("resume", time="2026-05-21T09:30:00")))
    assert json.loads(event.to_json())["time"] == "2026-05-21T09:30:00Z"
    assert event.time == datetime(2026, 5, 21, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize("bend", ["string-number", "bool", "snake-case"])
def test_the_wire_is_as_strict_as_the_schema(make_event: EventFactory, bend: str) -> None:
    body = make_event("create")
    quota = body["data"]["spec"]["quota"]
    if bend == "string-number":
        quota["concurrentSessions"] = "3"
    elif bend == "bool":
        quota["concurrentSessions"] = True
    else:
        quota["concurrent_sessions"] = quota.pop("concurrentSessions")
    assert "data.spec.quota.concurrent" in refusal(body)
