"""Poison events against a real ``sandboxd run`` and a real nats-server: dead-lettered once, never fatal.

A publisher controls every byte of an event. These tests send what a hostile or careless one would: a 40 KB
value in each field that once crashed the service (the rejection reason quoted it whole and overflowed the
status record), an event a few bytes under the server's max payload (its dead-letter copy plus headers did
not fit), and a reason with non-ASCII text. Each must be dead-lettered exactly once with a bounded,
ASCII-safe reason, the sandbox's status must say why, the process must keep running, and the valid events
published behind the poison must converge.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nats.aio.msg import Msg
from sandboxd_processes import Expectation, Services, ctl, wait_converged, wait_drained, wait_fetching, wait_for

from sandboxd import naming
from sandboxd.adapters.jetstream import headers as dead
from sandboxd.adapters.natsserver import NatsServer
from sandboxd.models.bounds import MESSAGE_LIMIT
from sandboxd.models.status import Phase
from support.spine import Client, client, spec, unique_id

pytestmark = [pytest.mark.nats, pytest.mark.anyio]

HUGE = "x" * 40_000
PRINTABLE_ASCII = {chr(c) for c in range(0x20, 0x7F)}


def create_body(sandbox_id: str, email: str, *, event_id: str, **spec_extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": "io.openova.sandbox.create",
        "id": event_id,
        "source": "/tests/poison",
        "subject": sandbox_id,
        "data": {"spec": spec(email, **spec_extra)},
    }


def poisoned(sandbox_id: str, field: str) -> dict[str, Any]:
    """A create whose ``field`` holds 40,000 characters."""
    body = create_body(sandbox_id, f"{sandbox_id}@acme.com", event_id=f"{sandbox_id}-poison")
    the_spec = body["data"]["spec"]
    if field == "planId":
        the_spec["planId"] = HUGE
    elif field == "quota.cpu":
        the_spec["quota"]["cpu"] = HUGE
    elif field == "quota.memory":
        the_spec["quota"]["memory"] = HUGE
    elif field == "owner.orgRef.slug":
        the_spec["owner"]["orgRef"]["slug"] = HUGE
    elif field == "giteaRepo":
        the_spec["repos"] = [{"giteaRepo": "acme/" + HUGE}]
    elif field == "unknown key":
        the_spec[HUGE] = "value"
    elif field == "type":
        body["type"] = "io.openova.sandbox.create" + HUGE
    return body


async def valid_sandboxes(c: Client, prefix: str, count: int) -> list[Expectation]:
    wants = [Expectation(unique_id(prefix), f"{prefix}{n}@acme.com") for n in range(count)]
    for want in wants:
        await c.publish(
            "create", want.sandbox_id, {"spec": spec(want.email, sessions=2)}, event_id=want.next_event_id()
        )
        want.sessions = 2
    return wants


def letters_for(letters: list[Msg], sequence: int) -> list[Msg]:
    return [m for m in letters if (m.headers or {}).get(dead.H_SEQUENCE) == str(sequence)]


def assert_bounded_ascii(letter: Msg) -> None:
    headers = letter.headers or {}
    for name, value in headers.items():
        if name.startswith("Sandboxd-"):
            assert isinstance(value, str) and set(value) <= PRINTABLE_ASCII, (name, value[:100])
    assert len(headers[dead.H_MESSAGE]) <= MESSAGE_LIMIT


async def dead_letter_count(c: Client, count: int) -> bool:
    return len(await c.dead_letters()) >= count


def still_running(services: Services) -> None:
    for process in services.started:
        assert process.process is not None and process.process.poll() is None, process.output()[-4000:]


FIELDS = ["planId", "quota.cpu", "quota.memory", "owner.orgRef.slug", "giteaRepo", "unknown key", "type"]


async def test_40_kb_values_are_dead_lettered_once_and_valid_events_behind_them_converge(
    fresh_nats_server: NatsServer, tmp_path: Path
) -> None:
    services = Services(fresh_nats_server.url, tmp_path / "rendered", tmp_path)
    try:
        async with client(fresh_nats_server.url) as c:
            services.start()
            await wait_fetching(c.js)
            sequences: dict[str, tuple[str, int]] = {}
            for field in FIELDS:
                sid = unique_id("poison")
                body = json.dumps(poisoned(sid, field)).encode()
                subject = naming.event_subject("create", sid)
                sequences[field] = (sid, await c.publish_raw(subject, body, {"Nats-Msg-Id": f"{sid}-poison"}))
            wants = await valid_sandboxes(c, "behind", 10)
            await wait_converged(c, services.root, wants, timeout=60, logs=services.logs)
            await wait_drained(c.js, timeout=30)
            letters = await c.dead_letters()
            statuses = {field: await c.status(sid) for field, (sid, _) in sequences.items()}
            still_running(services)
    finally:
        services.stop_all()

    for field, (_sid, sequence) in sequences.items():
        [letter] = letters_for(letters, sequence)  # exactly once
        assert_bounded_ascii(letter)
        assert (letter.headers or {})[dead.H_REASON] == "InvalidEvent", field
        status = statuses[field]
        assert status is not None and status.phase is Phase.REJECTED, (field, status)
        assert status.last_error is not None and len(status.last_error.message) < 1000, field
        assert "invalid create event" in status.last_error.message
    assert len(letters) == len(FIELDS), "only the poison was dead-lettered"


async def test_an_event_just_under_max_payload_is_dead_lettered_cut_and_still_replayable_from_its_stream(
    fresh_nats_server: NatsServer, tmp_path: Path
) -> None:
    services = Services(fresh_nats_server.url, tmp_path / "rendered", tmp_path)
    try:
        async with client(fresh_nats_server.url) as c:
            services.start()
            await wait_fetching(c.js)
            max_payload = c.nc.max_payload
            sid = unique_id("huge")
            body = create_body(sid, "huge@acme.com", event_id=f"{sid}-e1", planId="")
            skeleton = len(json.dumps(body).encode())
            body["data"]["spec"]["planId"] = "p" * (max_payload - 16 - skeleton)
            raw = json.dumps(body).encode()
            assert len(raw) == max_payload - 16
            sequence = await c.publish_raw(naming.event_subject("create", sid), raw)  # no headers: it fits
            wants = await valid_sandboxes(c, "after-huge", 20)
            await wait_converged(c, services.root, wants, timeout=90, logs=services.logs)
            await wait_drained(c.js, timeout=30)
            letters = await c.dead_letters()
            status = await c.status(sid)
            still_running(services)
            [letter] = letters_for(letters, sequence)
            dlq_seq = str(letter.metadata.sequence.stream)
            shown = await ctl("dlq", "show", dlq_seq, "-o", "json", url=fresh_nats_server.url)
            replayed = await ctl("dlq", "replay", dlq_seq, url=fresh_nats_server.url)
            await wait_for(lambda: dead_letter_count(c, 2), timeout=30, what="the replay to be refused again")
            [again] = [m for m in await c.dead_letters() if str(m.metadata.sequence.stream) != dlq_seq]
            still_running(services)
    finally:
        services.stop_all()

    assert_bounded_ascii(letter)
    headers = letter.headers or {}
    assert headers[dead.H_BODY_TRUNCATED] == str(max_payload - 16)
    assert headers[dead.H_STREAM] == naming.EVENTS_STREAM and headers[dead.H_SEQUENCE] == str(sequence)
    assert raw.startswith(letter.data) and len(letter.data) < len(raw)
    assert status is not None and status.phase is Phase.REJECTED
    assert status.last_error is not None and "planId" in status.last_error.message
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["headers"][dead.H_BODY_TRUNCATED] == str(max_payload - 16)
    # the replay sent the whole original (read back from SANDBOX_EVENTS), not the cut copy: refused for its
    # planId again, and cut again
    assert replayed.returncode == 0, replayed.stderr
    again_headers = again.headers or {}
    assert dead.decode(again_headers[dead.H_ORIGINAL_ID]).startswith("replay:")
    assert int(again_headers[dead.H_BODY_TRUNCATED]) > max_payload - 1024
    assert "planId" in dead.decode(again_headers[dead.H_MESSAGE])


async def test_a_non_ascii_reason_and_the_publishers_headers_survive_the_round_trip(
    fresh_nats_server: NatsServer, tmp_path: Path
) -> None:
    services = Services(fresh_nats_server.url, tmp_path / "rendered", tmp_path)
    try:
        async with client(fresh_nats_server.url) as c:
            services.start()
            await wait_fetching(c.js)
            sid = unique_id("zoe")
            body = create_body(sid, "zoë@exämple.com", event_id=f"{sid}-e1")
            publisher = {"Nats-Msg-Id": f"{sid}-e1", "X-Publisher": "tenant-service", "X-Request-Id": "req-7f3a"}
            sequence = await c.publish_raw(naming.event_subject("create", sid), json.dumps(body).encode(), publisher)
            wants = await valid_sandboxes(c, "after-zoe", 3)
            await wait_converged(c, services.root, wants, timeout=60, logs=services.logs)
            await wait_drained(c.js, timeout=30)
            [letter] = letters_for(await c.dead_letters(), sequence)
            stored = await c.js.get_msg(naming.DLQ_STREAM, seq=letter.metadata.sequence.stream)
            dlq_seq = str(letter.metadata.sequence.stream)
            shown = await ctl("dlq", "show", dlq_seq, "-o", "json", url=fresh_nats_server.url)
            replayed = await ctl("dlq", "replay", dlq_seq, url=fresh_nats_server.url)
            await wait_for(lambda: dead_letter_count(c, 2), timeout=30, what="the replay to be refused again")
            replays = (await c.dead_letters())[1:]
            still_running(services)
    finally:
        services.stop_all()

    assert_bounded_ascii(letter)
    headers = letter.headers or {}
    assert headers["X-Publisher"] == "tenant-service" and headers["X-Request-Id"] == "req-7f3a"
    assert headers[dead.H_ORIGINAL_ID] == f"{sid}-e1"
    assert "zoë@exämple.com" in dead.decode(headers[dead.H_MESSAGE])
    # get_msg parses headers with email.parser: every Sandboxd-* value is a plain ASCII str there too
    assert stored.headers is not None and isinstance(stored.headers[dead.H_MESSAGE], str)
    assert "zoë@exämple.com" in dead.decode(stored.headers[dead.H_MESSAGE])
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert "zoë@exämple.com" in record["message"]
    assert record["headers"]["X-Publisher"] == "tenant-service"
    assert replayed.returncode == 0, replayed.stderr
    # the replay was refused again (the email is still invalid) and carries the publisher's headers again
    assert any((m.headers or {}).get("X-Request-Id") == "req-7f3a" for m in replays), replays


async def test_a_deeply_nested_body_and_a_long_subject_are_dead_lettered_shown_and_replayed(
    fresh_nats_server: NatsServer, tmp_path: Path
) -> None:
    """JSON nested deeper than Python recurses, and a 315-character subject: each dead-lettered once, quoted
    at most 200 characters; ``dlq show`` shows the body as it came and ``dlq replay --all`` replays both."""
    services = Services(fresh_nats_server.url, tmp_path / "rendered", tmp_path)
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    long_subject = "sandbox.create." + "y" * 300
    url = fresh_nats_server.url
    try:
        async with client(url) as c:
            services.start()
            await wait_fetching(c.js)
            nested = await c.publish_raw(naming.event_subject("create", unique_id("deep")), deep)
            far = await c.publish_raw(long_subject, b"{}")
            await wait_for(lambda: dead_letter_count(c, 2), timeout=30, what="both events to be dead-lettered")
            letters = await c.dead_letters()
            [deep_letter], [far_letter] = letters_for(letters, nested), letters_for(letters, far)
            shown = await ctl("dlq", "show", str(deep_letter.metadata.sequence.stream), url=url)
            replayed = await ctl("dlq", "replay", "--all", url=url)
            await wait_for(lambda: dead_letter_count(c, 4), timeout=30, what="both replays to be refused again")
            still_running(services)
    finally:
        services.stop_all()

    assert deep_letter.data == deep
    assert shown.returncode == 0, shown.stderr
    assert '{"a":{"a":' in shown.stdout
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.count("replayed as stream sequence") == 2, replayed.stdout
    message = dead.decode((far_letter.headers or {})[dead.H_MESSAGE])
    assert "'sandbox.create." + "y" * 185 + "…'" in message and len(message) < 400, message
