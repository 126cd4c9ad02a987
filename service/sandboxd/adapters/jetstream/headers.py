"""NATS header names of the JetStream boundary, and the dead-letter copy built from them.

One module owns every header name the service writes or reads (publishing, the dead-letter mover and
``sandboxctl dlq`` import them from here). The dead-letter copy of a message:

- keeps the publisher's own headers (``X-Publisher``, ``X-Request-Id``, ``traceparent`` …) as they were;
- never copies ``Nats-*`` headers (instructions to JetStream for the original publish: a copied
  ``Nats-Msg-Id``, ``Nats-Expected-*`` or ``Nats-Rollup`` would change how the copy is stored); the original
  ``Nats-Msg-Id`` is kept in ``Sandboxd-Original-Msg-Id``;
- never copies ``Sandboxd-*`` headers, so a publisher cannot forge why its event died;
- adds the ``Sandboxd-*`` headers below, whose text values are UTF-8 percent-encoded (every byte outside
  printable ASCII, and ``%`` itself, becomes ``%XX``: ``zoë`` → ``zo%C3%AB``) and bounded, so they are
  ASCII-safe for every client (nats-py reads a non-ASCII value read back by ``get_msg`` as mojibake);
- always fits the server's max payload: when body and headers would not, the body is cut and
  ``Sandboxd-Body-Truncated`` says how long it was; the original stays fetchable from
  ``Sandboxd-Original-Stream`` at ``Sandboxd-Original-Sequence`` while that stream holds it.

Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import Header, decode_header
from typing import Final
from urllib.parse import quote, unquote

from sandboxd.models.bounds import ELLIPSIS, MESSAGE_LIMIT, QUOTE_LIMIT

MSG_ID: Final = "Nats-Msg-Id"
TRACE_HEADERS: Final = ("traceparent", "tracestate")

H_REASON: Final = "Sandboxd-Dead-Reason"
H_MESSAGE: Final = "Sandboxd-Dead-Message"
H_STREAM: Final = "Sandboxd-Original-Stream"
H_SUBJECT: Final = "Sandboxd-Original-Subject"
H_SEQUENCE: Final = "Sandboxd-Original-Sequence"
H_ORIGINAL_ID: Final = "Sandboxd-Original-Msg-Id"
H_DELIVERIES: Final = "Sandboxd-Deliveries"
H_BODY_TRUNCATED: Final = "Sandboxd-Body-Truncated"
H_HEADERS_DROPPED: Final = "Sandboxd-Headers-Dropped"

#: Header-name prefixes never copied from the original message (compared case-insensitively).
RESERVED_PREFIXES: Final = ("nats-", "sandboxd-")
#: Encoded characters of a dead-letter message and of the other text headers.
MESSAGE_HEADER_LIMIT: Final = MESSAGE_LIMIT
TEXT_HEADER_LIMIT: Final = 4 * QUOTE_LIMIT

# Printable ASCII except "%" is kept as is; urllib's quote leaves "_.-~" and alphanumerics anyway.
_SAFE: Final = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%")
_ENCODED_ELLIPSIS: Final = quote(ELLIPSIS, safe="")  # %E2%80%A6
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name nats-py will send
_HEADER_LINE: Final = len(b"NATS/1.0\r\n") + len(b"\r\n")  # the version line and the blank line that ends


def encode(text: str, limit: int = TEXT_HEADER_LIMIT) -> str:
    """``text`` as an ASCII header value of at most ``limit`` characters, cut with an encoded ``…``.

    Whitespace runs (newlines included) become one space first: a header value is one line. A cut never
    splits the escapes of one character.
    """
    text = " ".join(text[: limit + 1].split())  # encoding never shrinks text: more than this is cut anyway
    encoded = _quote(text)
    if len(encoded) <= limit:
        return encoded
    budget, pieces = limit - len(_ENCODED_ELLIPSIS), []
    for character in text:
        piece = _quote(character)
        budget -= len(piece)
        if budget < 0:
            break
        pieces.append(piece)
    return "".join(pieces) + _ENCODED_ELLIPSIS


def _quote(text: str) -> str:
    return quote(text, safe=_SAFE, errors="replace")  # a lone surrogate becomes "?", never an exception


def decode(value: object) -> str:
    """A header value as text: percent-decoded, whatever nats-py handed over (``str`` or ``email`` Header)."""
    return unquote(text_of(value), errors="replace")


def text_of(value: object) -> str:
    """A header value as nats-py's ``get_msg`` hands it over: ``str``, or an ``email.header.Header`` holding
    the raw bytes of a non-ASCII value (shown as mojibake by ``str()``), decoded here as UTF-8."""
    if isinstance(value, Header):
        return b"".join(
            part if isinstance(part, bytes) else part.encode("utf-8", "surrogateescape")
            for part, _charset in decode_header(value)
        ).decode("utf-8", "replace")
    return str(value)


def publisher_headers(headers: Mapping[str, object]) -> dict[str, str]:
    """The original message's own headers: everything but ``Nats-*`` and ``Sandboxd-*``, values as text."""
    return {
        name: text_of(value)
        for name, value in headers.items()
        if _TOKEN.fullmatch(name) and not name.lower().startswith(RESERVED_PREFIXES)
    }


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a dead letter comes from and why it died."""

    stream: str
    subject: str
    sequence: int
    deliveries: int
    reason: str
    message: str


def dead_letter(
    data: bytes, headers: Mapping[str, object], origin: Origin, *, max_payload: int
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the dead-letter copy of a message; together at most ``max_payload`` bytes."""
    out = publisher_headers(headers)
    original_id = headers.get(MSG_ID)
    if original_id:
        out[H_ORIGINAL_ID] = encode(text_of(original_id))
    out.update(
        {
            MSG_ID: f"dlq:{origin.stream}:{origin.sequence}",
            H_REASON: encode(origin.reason),
            H_MESSAGE: encode(origin.message, MESSAGE_HEADER_LIMIT),
            H_STREAM: origin.stream,
            H_SUBJECT: encode(origin.subject),
            H_SEQUENCE: str(origin.sequence),
            H_DELIVERIES: str(origin.deliveries),
        }
    )
    return fit(data, out, max_payload=max_payload)


def fit(data: bytes, headers: dict[str, str], *, max_payload: int) -> tuple[bytes, dict[str, str]]:
    """Cut the body until it all fits; first drop copied headers (largest first) if they take over half."""
    if size(headers) + len(data) <= max_payload:
        return data, headers
    dropped: list[str] = []
    while size(headers) > max_payload // 2:  # only a publisher's own headers can be this large
        copied = [name for name in headers if not name.lower().startswith(RESERVED_PREFIXES)]
        if not copied:
            break
        largest = max(copied, key=lambda name: len(headers[name].encode()))
        dropped.append(largest)
        headers = {name: value for name, value in headers.items() if name != largest}
        headers[H_HEADERS_DROPPED] = encode(",".join(dropped))
    if size(headers) + len(data) <= max_payload:
        return data, headers
    headers = {**headers, H_BODY_TRUNCATED: str(len(data))}
    return data[: max(max_payload - size(headers), 0)], headers


def size(headers: Mapping[str, str]) -> int:
    """Bytes the header block takes on the wire (``NATS/1.0``, one ``Name: value`` line each, a blank line)."""
    return _HEADER_LINE + sum(len(name) + len(value.encode()) + 4 for name, value in headers.items())
