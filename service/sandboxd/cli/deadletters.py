"""The dead-letter stream (``SANDBOX_DLQ``) for operators: list, show, and replay to the original subject.

A dead letter is the original event body with the publisher's headers and ``Sandboxd-*`` headers that say
where it came from and why it died (``adapters.jetstream.headers``; their values are percent-encoded, and
decoded here). Replaying publishes it again on its original subject with the publisher's headers and a new
``Nats-Msg-Id`` of ``replay:<dlq-seq>:<original id>``, so JetStream's dedupe (which remembers the original
id) does not swallow it, while replaying the same dead letter twice within the duplicate window still lands
once. The intake requires the CloudEvents ``id`` to equal ``Nats-Msg-Id``, so a body that is a JSON object with
an ``id`` gets the same new id; any other body (the usual reason it died, JSON nested too deep to parse
included) is sent byte for byte. A dead letter
whose body was cut to fit the server's max payload is replayed from the original, read back from its stream
while the stream still holds it.

Listing reads the stream through an ephemeral consumer that acks nothing, so it never changes the stream.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import anyio
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from sandboxd import naming
from sandboxd.adapters.jetstream.errors import boundary
from sandboxd.adapters.jetstream.headers import (
    H_BODY_TRUNCATED,
    H_DELIVERIES,
    H_MESSAGE,
    H_ORIGINAL_ID,
    H_REASON,
    H_SEQUENCE,
    H_STREAM,
    H_SUBJECT,
    MSG_ID,
    decode,
    publisher_headers,
    text_of,
)
from sandboxd.adapters.jetstream.publishing import publish
from sandboxd.cli.exits import CommandError
from sandboxd.errors import BrokerUnavailable

MAX_ID: Final = 256
LIST_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    sequence: int  # in SANDBOX_DLQ
    original_subject: str
    original_sequence: int | None  # in SANDBOX_EVENTS
    original_id: str | None
    reason: str
    message: str
    deliveries: int | None
    time: datetime | None
    headers: dict[str, str]  # as text: ``Sandboxd-*`` values decoded, the publisher's as they were
    data: bytes
    original_stream: str = naming.EVENTS_STREAM
    body_truncated: int | None = None  # the original body's length when ``data`` holds only its start

    @classmethod
    def of(
        cls, *, sequence: int, subject: str, headers: Mapping[str, object], data: bytes, time: datetime | None
    ) -> DeadLetter:
        text = {
            name: decode(value) if name.lower().startswith("sandboxd-") else text_of(value)
            for name, value in headers.items()
        }
        return cls(
            sequence=sequence,
            original_subject=text.get(H_SUBJECT) or subject.removeprefix("sandbox.dlq."),
            original_sequence=_int(text.get(H_SEQUENCE)),
            original_id=text.get(H_ORIGINAL_ID),
            reason=text.get(H_REASON, ""),
            message=text.get(H_MESSAGE, ""),
            deliveries=_int(text.get(H_DELIVERIES)),
            time=time if time is None or time.tzinfo else time.replace(tzinfo=UTC),
            headers=text,
            data=data,
            original_stream=text.get(H_STREAM) or naming.EVENTS_STREAM,
            body_truncated=_int(text.get(H_BODY_TRUNCATED)),
        )

    def replay_id(self) -> str:
        original = self.original_id or _body_id(self.data) or f"seq-{self.original_sequence or 0}"
        return f"replay:{self.sequence}:{original}"[:MAX_ID]


async def list_dead_letters(js: JetStreamContext, *, timeout: float = LIST_TIMEOUT_S) -> list[DeadLetter]:
    """Every dead letter still in the stream, oldest first."""
    with boundary(f"reading {naming.DLQ_STREAM}"):
        try:
            info = await js.stream_info(naming.DLQ_STREAM)
        except NotFoundError as exc:
            raise CommandError(f"no {naming.DLQ_STREAM} stream on this server: run `sandboxd init`") from exc
        if not info.state.messages:
            return []
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL, inactive_threshold=30.0
        )
        sub = await js.pull_subscribe(naming.DLQ_SUBJECTS, stream=naming.DLQ_STREAM, config=config)
    letters: list[DeadLetter] = []
    try:
        with anyio.fail_after(timeout), boundary(f"reading {naming.DLQ_STREAM}"):
            while True:
                try:
                    batch = await sub.fetch(256, timeout=2.0)
                except TimeoutError:  # nats' or asyncio's (fetch raises both): an empty window, not fail_after's
                    break
                letters.extend(_from_msg(msg) for msg in batch)
                if batch and batch[-1].metadata.num_pending == 0:
                    break
    except TimeoutError as exc:  # fail_after's, raised outside the boundary
        raise BrokerUnavailable(f"reading {naming.DLQ_STREAM} took longer than {timeout:g}s") from exc
    finally:
        with contextlib.suppress(Exception):  # the connection may be gone: the consumer expires by itself
            await sub.unsubscribe()
    return letters


async def get_dead_letter(js: JetStreamContext, sequence: int) -> DeadLetter:
    with boundary(f"reading dead letter {sequence}"):
        try:
            raw = await js.get_msg(naming.DLQ_STREAM, seq=sequence)
        except NotFoundError as exc:
            raise CommandError(f"no dead letter {sequence} in {naming.DLQ_STREAM}") from exc
    return DeadLetter.of(
        sequence=int(raw.seq or sequence),
        subject=raw.subject or "",
        headers=dict(raw.headers or {}),
        data=raw.data or b"",
        time=raw.time,
    )


async def replay(js: JetStreamContext, letter: DeadLetter) -> tuple[int, bool]:
    """Publish the dead letter again on its original subject; (stream sequence, whether deduplicated)."""
    if not naming.parse_event_subject(letter.original_subject):
        raise CommandError(f"dead letter {letter.sequence} has no sandbox event subject to replay to")
    new_id = letter.replay_id()
    headers = {**publisher_headers(letter.headers), MSG_ID: new_id}
    data = letter.data if letter.body_truncated is None else await _original_body(js, letter)
    return await publish(js, letter.original_subject, _with_id(data, new_id), headers)


async def _original_body(js: JetStreamContext, letter: DeadLetter) -> bytes:
    """The whole body of a dead letter that holds only its start, read back from the original stream."""
    gone = CommandError(
        f"dead letter {letter.sequence} holds only the first {len(letter.data)} of {letter.body_truncated} "
        f"bytes, and {letter.original_stream} no longer holds the original (sequence "
        f"{letter.original_sequence or '-'}): it cannot be replayed"
    )
    if letter.original_sequence is None:
        raise gone
    with boundary(f"reading event {letter.original_sequence} of {letter.original_stream}"):
        try:
            stored = await js.get_msg(letter.original_stream, seq=letter.original_sequence)
        except NotFoundError as exc:
            raise gone from exc
    if stored.subject != letter.original_subject or stored.data is None:
        raise gone
    return stored.data


def _from_msg(msg: Msg) -> DeadLetter:
    meta = msg.metadata
    return DeadLetter.of(
        sequence=int(meta.sequence.stream),
        subject=msg.subject,
        headers=dict(msg.headers or {}),
        data=msg.data,
        time=meta.timestamp,
    )


def _body(data: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):  # nested deeper than Python recurses: not an event, sent as it is
        return None
    return body if isinstance(body, dict) else None


def _body_id(data: bytes) -> str | None:
    body = _body(data)
    value = body.get("id") if body else None
    return value if isinstance(value, str) and value else None


def _with_id(data: bytes, new_id: str) -> bytes:
    body = _body(data)
    if body is None or not isinstance(body.get("id"), str):
        return data
    try:
        return json.dumps({**body, "id": new_id}, ensure_ascii=False, separators=(",", ":")).encode()
    except RecursionError:
        return data


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None
