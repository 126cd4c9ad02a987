"""Dead-letter headers: ASCII-safe and bounded whatever the text, and the copy always fits the max payload."""

from __future__ import annotations

from dataclasses import replace
from email.parser import BytesParser

from hypothesis import given
from hypothesis import strategies as st

from sandboxd.adapters.jetstream import headers as dead

ORIGIN = dead.Origin(
    stream="SANDBOX_EVENTS",
    subject="sandbox.create.sb-1",
    sequence=42,
    deliveries=1,
    reason="InvalidEvent",
    message="invalid create event: data.spec.owner.email: 'zoë@exämple.com' is not valid",
)
PRINTABLE_ASCII = {chr(c) for c in range(0x20, 0x7F)}


@given(st.text(), st.integers(min_value=12, max_value=5000))
def test_an_encoded_value_is_printable_ascii_bounded_and_decodes_back(text: str, limit: int) -> None:
    encoded = dead.encode(text, limit)
    assert set(encoded) <= PRINTABLE_ASCII
    assert len(encoded) <= limit
    one_line = " ".join(text.split()).encode("utf-8", "replace").decode()
    decoded = dead.decode(encoded)
    if decoded != one_line:
        assert decoded.endswith("…") and one_line.startswith(decoded[:-1]), "a cut keeps whole characters only"


def test_the_documented_example() -> None:
    assert dead.encode("zoë@exämple.com") == "zo%C3%AB@ex%C3%A4mple.com"
    assert dead.encode("100% sure\r\nnext") == "100%25 sure next"
    assert dead.decode("zo%C3%AB@ex%C3%A4mple.com") == "zoë@exämple.com"


def test_a_non_ascii_value_read_back_by_get_msg_is_recovered() -> None:
    """nats-py's ``get_msg`` parses headers with ``email.parser``: a non-ASCII value comes back as a Header."""
    parsed = BytesParser().parsebytes("X-Who: zoë@exämple.com\r\n\r\n".encode())
    value = parsed["X-Who"]
    assert str(value) != "zoë@exämple.com", "the mojibake this guards against"
    assert dead.text_of(value) == "zoë@exämple.com"


def test_the_publishers_headers_are_kept_and_reserved_ones_are_not() -> None:
    original = {
        "Nats-Msg-Id": "evt-1",
        "Nats-Expected-Last-Sequence": "7",
        "nats-rollup": "sub",
        "Sandboxd-Dead-Reason": "forged",
        "X-Publisher": "tenant-service",
        "X-Request-Id": "req-1",
        "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    }
    body, out = dead.dead_letter(b"{}", original, ORIGIN, max_payload=1024 * 1024)
    assert body == b"{}"
    assert out["X-Publisher"] == "tenant-service" and out["X-Request-Id"] == "req-1"
    assert out["traceparent"] == original["traceparent"]
    assert out[dead.MSG_ID] == "dlq:SANDBOX_EVENTS:42"
    assert out[dead.H_ORIGINAL_ID] == "evt-1"
    assert out[dead.H_REASON] == "InvalidEvent"
    assert "Nats-Expected-Last-Sequence" not in out and "nats-rollup" not in out
    assert dead.decode(out[dead.H_MESSAGE]) == ORIGIN.message
    assert dead.H_BODY_TRUNCATED not in out


@given(
    body_size=st.integers(min_value=0, max_value=70_000),
    max_payload=st.integers(min_value=16_384, max_value=65_536),
    message=st.text(max_size=300),
    extra=st.integers(min_value=0, max_value=40_000),
)
def test_a_dead_letter_always_fits_and_says_when_its_body_was_cut(
    body_size: int, max_payload: int, message: str, extra: int
) -> None:
    original = {"Nats-Msg-Id": "é" * 300, "X-Big": "v" * extra, "X-Small": "s"}
    origin = replace(ORIGIN, message=message * 50)
    body, out = dead.dead_letter(b"b" * body_size, original, origin, max_payload=max_payload)
    assert dead.size(out) + len(body) <= max_payload
    assert out[dead.H_STREAM] == "SANDBOX_EVENTS" and out[dead.H_SEQUENCE] == "42"
    assert all(set(v) <= PRINTABLE_ASCII for k, v in out.items() if k.startswith("Sandboxd-"))
    if len(body) < body_size:
        assert out[dead.H_BODY_TRUNCATED] == str(body_size)
        assert body == b"b" * len(body)
    else:
        assert dead.H_BODY_TRUNCATED not in out
    if "X-Big" not in out:
        assert dead.decode(out[dead.H_HEADERS_DROPPED]) == "X-Big"


def test_a_body_of_max_payload_minus_16_is_cut_to_fit() -> None:
    max_payload = 1024 * 1024
    body, out = dead.dead_letter(b"x" * (max_payload - 16), {}, ORIGIN, max_payload=max_payload)
    assert dead.size(out) + len(body) == max_payload
    assert out[dead.H_BODY_TRUNCATED] == str(max_payload - 16)
