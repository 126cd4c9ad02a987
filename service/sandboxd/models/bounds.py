"""Bounded text: every value quoted into a message, and every message the service writes, has a ceiling.

A publisher controls the values it sends, so a message that quotes one (a rejection reason, a status
condition, a dead-letter header) must not grow with it: a 40 KB field once made a rejection reason longer
than the status record allows, and the service crashed on every redelivery. ``quote`` shows at most
``QUOTE_LIMIT`` characters of a value, ``clip`` cuts a whole message to a limit, both ending a cut with ``…``;
``BoundedMessage`` is a model field that truncates instead of refusing. Pure functions, no I/O; encoding for
transports (NATS headers) is the adapters' job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Final

from pydantic import BeforeValidator, Field

#: Characters of a publisher's value quoted in a message.
QUOTE_LIMIT: Final = 200
#: Characters of one message written to a status condition, a last error or a dead-letter header.
MESSAGE_LIMIT: Final = 4096
ELLIPSIS: Final = "…"


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` if it has at most ``limit`` characters, else its first ``limit - 1`` and ``…``."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + ELLIPSIS


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of (the start of) ``value``, at most ``limit + 3`` characters: ``'abc…'`` when cut.

    The cut is made on the escaped form too, so control characters (``\\x00`` → four characters) cannot
    stretch it.
    """
    text = value if isinstance(value, str) else repr(value)
    shown = repr(text[:limit])
    if len(text) <= limit and len(shown) <= limit + 2:
        return shown
    return shown[0] + shown[1:-1][:limit] + ELLIPSIS + shown[-1]


def _truncated(limit: int) -> Callable[[object], object]:
    def truncate(value: object) -> object:  # pydantic hands over the raw input, of any type
        return clip(value, limit) if isinstance(value, str) else value

    return truncate


#: A message field that keeps the first ``MESSAGE_LIMIT`` characters of what it is given, never refusing it.
BoundedMessage = Annotated[str, BeforeValidator(_truncated(MESSAGE_LIMIT)), Field(max_length=MESSAGE_LIMIT)]
