"""The base of every contract model: frozen, unknown fields refused, camelCase on the wire.

Also the one place that turns a pydantic ``ValidationError`` into words a publisher can act on, bounded
however long the values it quotes (``models.bounds``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from sandboxd.models.bounds import QUOTE_LIMIT, clip, quote

#: Problems ``describe`` lists before it only counts the rest.
MAX_PROBLEMS = 8


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
            raise ValueError(f"{quote(value)} is not valid: {hint}")
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
    """One line per problem: ``spec.quota.cpu: '1x' is not valid: a CPU amount such as 500m or 2``.

    Bounded: at most ``MAX_PROBLEMS`` problems (then how many more), each path and message cut to a few
    hundred characters, so a value of any length can be named without being copied.
    """
    items = error.errors(include_url=False)
    lines = [_problem(item, prefix) for item in items[:MAX_PROBLEMS]]
    if len(items) > MAX_PROBLEMS:
        lines.append(f"and {len(items) - MAX_PROBLEMS} more problems")
    return "; ".join(lines)


def _problem(item: ErrorDetails, prefix: str) -> str:
    # The discriminator tag of a union (the event type) is noise in a field path: leave it out.
    where = ".".join(str(p) for p in item["loc"] if not str(p).startswith("io.openova."))
    where = clip(f"{prefix}.{where}" if prefix and where else (prefix or where), QUOTE_LIMIT)
    message = str(item["msg"]).removeprefix("Value error, ")
    if item["type"] == "missing":
        message = "is required"
    elif item["type"] == "extra_forbidden":
        message = "is not a known field"
    elif item["type"] == "union_tag_invalid":  # pydantic's own words quote the whole tag
        context = item.get("ctx") or {}
        tag = quote(context.get("tag"), QUOTE_LIMIT // 2)
        message = (
            f"Input tag {tag} found using {context.get('discriminator')} does not match any of the expected tags:"
            f" {context.get('expected_tags')}"
        )
    message = clip(message, 2 * QUOTE_LIMIT)
    return f"{where}: {message}" if where else message
