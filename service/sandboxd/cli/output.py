"""What ``sandboxctl`` prints: status tables, one sandbox in detail, watch lines, dead letters; JSON and YAML.

Pure functions from records to text (the clock is a parameter), so tests compare strings. JSON and YAML are the
records' wire form (camelCase, ``None`` left out), the same bytes a console reading the bucket would see.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import yaml

from sandboxd.adapters.jetstream.headers import publisher_headers
from sandboxd.cli.deadletters import DeadLetter
from sandboxd.cli.terminal import printable
from sandboxd.models.base import Contract
from sandboxd.models.status import ConditionStatus, ConditionType, SandboxStatus

FORMATS: Final = ("table", "json", "yaml")
STATUS_FORMATS: Final = ("table", "wide", "name", "json", "yaml")  # wide: more columns; name: one id a line
MESSAGE_WIDTH: Final = 72


def wire(record: Contract) -> dict[str, Any]:
    data: dict[str, Any] = record.model_dump(mode="json", by_alias=True, exclude_none=True)
    return data


def as_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def as_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip("\n")


def age(then: datetime | None, now: datetime) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: how long ago, kubectl style."""
    if then is None:
        return "-"
    seconds = max(0, int((now - then.astimezone(UTC)).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def time_left(then: datetime | None, now: datetime) -> str:
    """``in 7h`` until ``then``, ``due`` once it has passed (expiry acts on its next pass); ``-`` for none."""
    if then is None:
        return "-"
    if then.astimezone(UTC) <= now:
        return "due"
    return "in " + age(now, then.astimezone(UTC))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    rows = [[printable(str(cell)) for cell in row] for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = ("   ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [headers, *rows])
    return "\n".join(line.rstrip() for line in lines)


def short(text: str, width: int = MESSAGE_WIDTH) -> str:
    """One line of at most ``width`` characters: whitespace runs as one space, any other character a terminal
    would act on (an escape sequence, a backspace) as ``?``, a cut ending in ``…``."""
    text = printable(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def ready_column(status: SandboxStatus) -> str:
    if status.replicas is None:
        return "-"
    return f"{status.replicas.ready}/{status.replicas.desired}"


def token_problem(status: SandboxStatus) -> str | None:
    """``TokenIssued=False`` in words: what failed, and that the last token (if any) still works until it expires."""
    issued = status.condition(ConditionType.TOKEN_ISSUED)
    if issued is None or issued.status is not ConditionStatus.FALSE:
        return None
    said = f"{issued.reason}: {issued.message}" if issued.message else issued.reason
    if status.token is None:
        return f"no session token issued ({said})"
    return f"token not renewed ({said}); the last one works until {wire_time(status.token.expires_at)}"


def message_of(status: SandboxStatus) -> str:
    """The one thing worth reading: the last error, a token not issued, the Ready condition, the newest one."""
    if status.last_error is not None:
        return status.last_error.message
    problem = token_problem(status)
    if problem is not None:
        return problem
    ready = status.condition(ConditionType.READY)
    if ready is not None and ready.message:
        return ready.message
    newest = max(status.conditions, key=lambda c: c.last_transition_time, default=None)
    return newest.message if newest is not None else ""


STATUS_HEADERS: Final = ("ID", "PHASE", "READY", "NAMESPACE", "GEN", "UPDATED", "MESSAGE")


def status_row(status: SandboxStatus, now: datetime) -> list[str]:
    return [
        status.sandbox_id,
        status.phase.value,
        ready_column(status),
        status.namespace or "-",
        str(status.observed_generation),
        age(status.updated_at, now),
        short(message_of(status)),
    ]


WIDE_HEADERS: Final = (*STATUS_HEADERS[:-1], "EXPIRES", "OWNER-UID", "ENDPOINT", "EVENT", "MESSAGE")


def status_table(statuses: Sequence[SandboxStatus], now: datetime, *, wide: bool = False) -> str:
    """kubectl get: the columns worth a glance; ``wide`` adds the time left before expiry, owner-uid, endpoint
    and the last event id."""
    if not statuses:
        return "No sandboxes."
    if not wide:
        return table(STATUS_HEADERS, [status_row(s, now) for s in statuses])
    rows = [
        [
            *status_row(s, now)[:-1],
            time_left(s.expires_at, now),
            s.owner_uid or "-",
            s.endpoint or "-",
            s.event_id or "-",
            short(message_of(s)),
        ]
        for s in statuses
    ]
    return table(WIDE_HEADERS, rows)


def status_detail(status: SandboxStatus, now: datetime) -> str:
    """One sandbox, kubectl-describe style."""
    fields = [
        ("ID", status.sandbox_id),
        ("Phase", status.phase.value),
        ("Ready", ready_column(status)),
        ("Generation", str(status.observed_generation)),
        ("Owner uid", status.owner_uid or "-"),
        ("Namespace", status.namespace or "-"),
        ("Endpoint", status.endpoint or "-"),
        ("Event", status.event_id or "-"),
        ("Attempts", str(status.attempts)),
        ("Updated", f"{age(status.updated_at, now)} ago ({wire_time(status.updated_at)})"),
    ]
    if status.last_activity_at is not None:
        fields.append(("Last activity", f"{age(status.last_activity_at, now)} ago"))
    if status.idle_since is not None:
        fields.append(("Idle since", f"{age(status.idle_since, now)} ago ({status.idle_reason or 'idle'})"))
    if status.expires_at is not None:
        keeps = f", {status.expiry_policy.value}" if status.expiry_policy is not None else ""
        fields.append(("Expires", f"{time_left(status.expires_at, now)} ({wire_time(status.expires_at)}{keeps})"))
    problem = token_problem(status)
    if problem is not None:
        fields.append(("Token", problem))
    elif status.token is not None:
        fields.append(("Token", f"issued, expires {time_left(status.token.expires_at, now)}"))
    if status.deleted_at is not None:
        fields.append(("Deleted", f"{age(status.deleted_at, now)} ago"))
    if status.last_error is not None:
        error = status.last_error
        kind = "retrying" if error.retryable else "permanent"
        fields.append(("Last error", f"{error.reason} ({kind}, {age(error.at, now)} ago): {error.message}"))
    if status.timings_ms:
        fields.append(("Timings", ", ".join(f"{k} {v:g}ms" for k, v in status.timings_ms.items())))
    width = max(len(name) for name, _ in fields) + 1
    lines = [f"{(name + ':').ljust(width)} {value}" for name, value in fields]
    lines += ["", "Conditions:"]
    if status.conditions:
        rows = [
            [
                c.type.value,
                c.status.value,
                c.reason,
                str(c.observed_generation),
                age(c.last_transition_time, now),
                short(c.message),
            ]
            for c in status.conditions
        ]
        drawn = table(("TYPE", "STATUS", "REASON", "GEN", "AGE", "MESSAGE"), rows)
        lines += ["  " + line for line in drawn.split("\n")]
    else:
        lines.append("  (none)")
    lines += ["", f"Objects ({len(status.applied_objects)}):"]
    for ref in status.applied_objects:
        where = f"{ref.namespace}/" if ref.namespace else ""
        lines.append(f"  {ref.kind} {where}{ref.name}")
    return "\n".join(lines)


#: The most characters of a key a warning shows: a key written straight into the bucket may be anything.
KEY_WIDTH: Final = 80


def unreadable_record(key: str) -> str:
    """The warning for a status record that does not parse: its key (the sandbox id), bounded and terminal-safe,
    and nothing of its value, which may be anything."""
    return (
        f"sandbox {short(key, KEY_WIDTH)}: its status record is unreadable "
        "(not a SandboxStatus record: a newer sandboxd's, or corrupt); skipped"
    )


def wire_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def watch_line(sandbox_id: str, status: SandboxStatus | None, now: datetime) -> str:
    stamp = wire_time(now)
    if status is None:
        return f"{stamp}  {sandbox_id}  (status removed)"
    ready = ready_column(status)
    return (
        f"{stamp}  {sandbox_id}  {status.phase.value}  ready {ready}  gen {status.observed_generation}  "
        f"{short(message_of(status))}"
    ).rstrip()


DLQ_HEADERS: Final = ("SEQ", "AGE", "SUBJECT", "REASON", "DELIVERIES", "MESSAGE")
#: The most characters of each ``dlq list`` column: a publisher chooses the subject (any token after the verb)
#: and the headers, so no column may grow with them. ``-o json`` and ``dlq show`` print every value whole.
DLQ_WIDTHS: Final = (20, 6, 60, 24, 10, 60)


def dead_letter_table(letters: Sequence[DeadLetter], now: datetime) -> str:
    if not letters:
        return "No dead letters."
    rows = [
        [
            short(cell, width)
            for cell, width in zip(
                (
                    str(d.sequence),
                    age(d.time, now),
                    d.original_subject,
                    d.reason or "-",
                    "-" if d.deliveries is None else str(d.deliveries),
                    d.message,
                ),
                DLQ_WIDTHS,
                strict=True,
            )
        ]
        for d in letters
    ]
    return table(DLQ_HEADERS, rows)


def dead_letter_record(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as JSON/YAML: the body as text when it is UTF-8, else as hex."""
    try:
        body: str = letter.data.decode()
    except UnicodeDecodeError:
        body = letter.data.hex()
    return {
        "sequence": letter.sequence,
        "time": wire_time(letter.time) if letter.time else None,
        "originalSubject": letter.original_subject,
        "originalSequence": letter.original_sequence,
        "originalId": letter.original_id,
        "reason": letter.reason,
        "message": letter.message,
        "deliveries": letter.deliveries,
        "headers": letter.headers,
        "body": body,
    }


def dead_letter_detail(letter: DeadLetter, now: datetime) -> str:
    record = dead_letter_record(letter)
    lines = [
        f"Sequence:          {letter.sequence}",
        f"Dead since:        {age(letter.time, now)} ago ({record['time'] or '-'})",
        f"Original subject:  {letter.original_subject}",
        f"Original sequence: {letter.original_sequence if letter.original_sequence is not None else '-'}",
        f"Original id:       {letter.original_id or '-'}",
        f"Reason:            {letter.reason or '-'}",
        f"Deliveries:        {letter.deliveries if letter.deliveries is not None else '-'}",
        f"Message:           {letter.message or '-'}",
    ]
    kept = publisher_headers(letter.headers)  # what a replay publishes again (``Sandboxd-*`` are shown above)
    lines += ["Headers:" if kept else "Headers:           -"]
    lines += [f"  {name}: {value}" for name, value in sorted(kept.items())]
    lines += ["Body:"]
    body = record["body"]
    with contextlib.suppress(ValueError, RecursionError):  # not JSON, or nested too deep: shown as it came
        body = as_json(json.loads(body))
    lines += ["  " + line for line in str(body).splitlines() or [""]]
    return "\n".join(lines)


def now_utc() -> datetime:
    return datetime.now(UTC)
