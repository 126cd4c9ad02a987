"""What ``sandboxctl`` prints, as pure text from records (the clock is a parameter)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sandboxd.cli import output
from sandboxd.cli.deadletters import DeadLetter

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def letter(sequence: int, subject: str, *, reason: str = "InvalidEvent", message: str = "bad") -> DeadLetter:
    return DeadLetter(
        sequence=sequence,
        original_subject=subject,
        original_sequence=7,
        original_id="evt-1",
        reason=reason,
        message=message,
        deliveries=1,
        time=NOW - timedelta(minutes=3),
        headers={},
        data=b"{}",
    )


def test_dlq_list_bounds_every_column_a_hostile_publisher_chooses_and_json_keeps_them_whole() -> None:
    hostile = "sandbox.create." + "x" * 5000 + "\x1b[2J"  # a NATS token may be long and hold any non-space byte
    letters = [
        letter(12345678901234567890, hostile, reason="R" * 300 + "\x1b]0;pwned\x07", message="m " * 400),
        letter(2, "sandbox.suspend.alice"),
    ]

    header, first, second = output.dead_letter_table(letters, NOW).splitlines()

    assert header.split() == ["SEQ", "AGE", "SUBJECT", "REASON", "DELIVERIES", "MESSAGE"]
    assert max(len(header), len(first), len(second)) <= 200  # a terminal line, whatever was published
    assert first.split()[:2] == ["12345678901234567890", "3m"]  # the sequence a replay needs is never cut
    assert "sandbox.create.xxx" in first and "…" in first
    assert "\x1b" not in first and "\x07" not in first  # nothing a terminal would act on
    assert second.split()[:4] == ["2", "3m", "sandbox.suspend.alice", "InvalidEvent"]
    record = output.dead_letter_record(letters[0])
    assert (record["originalSubject"], record["reason"]) == (hostile, letters[0].reason)
    assert record["message"] == letters[0].message


def test_dlq_show_lists_the_publishers_headers_a_replay_sends_again() -> None:
    shown = letter(3, "sandbox.create.alice")
    shown.headers.update(
        {"X-Publisher": "billing", "X-Request-Id": "req-7", "Nats-Msg-Id": "evt-1", "Sandboxd-Reason": "InvalidEvent"}
    )

    lines = output.dead_letter_detail(shown, NOW).splitlines()

    headers = lines[lines.index("Headers:") + 1 : lines.index("Body:")]
    assert headers == [
        "  X-Publisher: billing",
        "  X-Request-Id: req-7",
    ]  # Nats-* and Sandboxd-* are not the publisher's
    assert "Headers:           -" in output.dead_letter_detail(letter(4, "sandbox.create.bob"), NOW).splitlines()


def test_an_unreadable_record_is_named_by_its_key_bounded_and_terminal_safe() -> None:
    assert output.unreadable_record("dc1") == (
        "sandbox dc1: its status record is unreadable (not a SandboxStatus record: a newer sandboxd's, or corrupt); "
        "skipped"
    )
    hostile = output.unreadable_record("k" * 5000 + "\x1b[2J\u202e")  # a key put straight into the bucket
    assert len(hostile) < 200 and "…" in hostile
    assert hostile.isprintable()
    assert output.unreadable_record("x\x1b[31my").startswith("sandbox x?[31my: ")
