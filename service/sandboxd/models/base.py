"""The base of every contract model: frozen, unknown fields refused, camelCase on the wire.

Also the one place that turns a pydantic ``ValidationError`` into words a publisher can act on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer, ValidationError
from pydantic.alias_generators import to_camel


class Contract(BaseModel):
    """A message that crosses a process boundary."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        str_strip_whitespace=False,
    )

    def to_json(self) -> bytes:
        """Canonical wire form: camelCase, ``None`` fields left out."""
        return self.model_dump_json(exclude_none=True).encode()


def matching(pattern: str, hint: str) -> Callable[[str], str]:
    """A validator that refuses text not matching ``pattern`` with ``hint`` (what a valid value looks like)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not valid: {hint}")
        return value

    return check


def _utc_iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def utc(value: datetime) -> datetime:
    """Assume UTC for naive datetimes (publishers sometimes leave the offset out)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


#: An instant, serialised as RFC 3339 UTC with a ``Z``; a time without an offset is taken as UTC.
Timestamp = Annotated[datetime, AfterValidator(utc), PlainSerializer(_utc_iso, return_type=str, when_used="json")]


def describe(error: ValidationError, *, prefix: str = "") -> str:
    """One line per problem: ``spec.quota.cpu: '1x' is not valid: a CPU amount such as 500m or 2``."""
    lines = []
    for item in error.errors(include_url=False):
        # The discriminator tag of a union (the event type) is noise in a field path: leave it out.
        where = ".".join(str(p) for p in item["loc"] if not str(p).startswith("io.openova."))
        where = f"{prefix}.{where}" if prefix and where else (prefix or where)
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "is required"
        elif item["type"] == "extra_forbidden":
            message = "is not a known field"
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)
