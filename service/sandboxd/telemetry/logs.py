"""Logs: one JSON object per line (or plain text for people), each line carrying the sandbox and the trace it
belongs to, and never a secret value.

- ``configure`` installs one handler on the root logger: level ``SANDBOXD_LOG_LEVEL`` (default INFO), format
  ``SANDBOXD_LOG_FORMAT`` (``json`` or ``text``; the command picks the default: json for ``sandboxd run``,
  text for ``sandboxd dev``).
- ``bound(sandbox_id=..., event_id=...)`` sets the context variables every line carries; ``trace_id`` and
  ``span_id`` come from the current OpenTelemetry span (also a context variable) when there is a valid one.
- ``redact(values)`` registers secret values (NATS password, token, NKey seed, Git password, and the
  credentials written into a URL setting such as ``NATS_URL``: see ``known_secrets``); the handler's
  ``Redactor`` filter replaces them, anything shaped like an NKey seed and the credentials of a URL
  (``user:password@``, or a NATS token ``nats://token@``) with ``***`` in the message, the exception text and
  string extras, before any formatter sees the record.
- ``scrub(text)`` applies the same redaction to any text that leaves the process another way: the CLI's
  one-line errors and what a command prints.

A JSON line: ``{"time": "2026-11-27T05:11:00.123Z", "level": "INFO", "logger": "sandboxd.x", "message": "...",
"sandbox_id": "sb-1", "event_id": "...", "trace_id": "<32 hex>", "span_id": "<16 hex>", ...extras}``.

What it deliberately does not do: format records for other handlers (pytest's caplog sees raw records), or
scrub secrets it was never told about beyond the two shapes above.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar, Token
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import IO, Any, Final, Literal
from urllib.parse import unquote, urlsplit

from opentelemetry import trace
from pydantic import BaseModel, SecretStr

Format = Literal["json", "text"]

MASK: Final = "***"
LEVEL_VARIABLE: Final = "SANDBOXD_LOG_LEVEL"
FORMAT_VARIABLE: Final = "SANDBOXD_LOG_FORMAT"

_sandbox_id: ContextVar[str | None] = ContextVar("sandbox_id", default=None)
_event_id: ContextVar[str | None] = ContextVar("event_id", default=None)

# An NKey seed: "S" + key type + base32 (58 characters in all); a URL's user:password@; a NATS URL's token@
# (nats-py reads a user part without a password as a token; ``nats://name@`` is masked too, which only costs
# the name).
_NKEY_SEED: Final = re.compile(r"\bS[ANOUCPX][A-Z2-7]{56}\b")
_URL_PASSWORD: Final = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)[^\s/@]+@")
_NATS_URL_TOKEN: Final = re.compile(r"(?P<head>\b(?:nats|tls|ws|wss)://)[^\s/@:]+@", re.IGNORECASE)
_NATS_SCHEMES: Final = frozenset({"nats", "tls", "ws", "wss"})
# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged as a field.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_CONTEXT: Final = ("sandbox_id", "event_id", "trace_id", "span_id")


# --- context -------------------------------------------------------------------------------------------------


class bound:  # lower case: it reads like a function, ``with bound(sandbox_id=...)``
    """Set ``sandbox_id`` / ``event_id`` for every line logged inside the block (restored on exit)."""

    __slots__ = ("_event_id", "_sandbox_id", "_tokens")

    def __init__(self, *, sandbox_id: str | None = None, event_id: str | None = None) -> None:
        self._sandbox_id = sandbox_id
        self._event_id = event_id
        self._tokens: list[tuple[ContextVar[str | None], Token[str | None]]] = []

    def __enter__(self) -> None:
        if self._sandbox_id is not None:
            self._tokens.append((_sandbox_id, _sandbox_id.set(self._sandbox_id)))
        if self._event_id is not None:
            self._tokens.append((_event_id, _event_id.set(self._event_id)))

    def __exit__(self, *_exc: object) -> None:
        while self._tokens:
            var, token = self._tokens.pop()
            var.reset(token)


def context_fields() -> dict[str, str]:
    """The sandbox, event and trace of the current context (only those that are set)."""
    found: dict[str, str] = {}
    sandbox_id, event_id = _sandbox_id.get(), _event_id.get()
    if sandbox_id is not None:
        found["sandbox_id"] = sandbox_id
    if event_id is not None:
        found["event_id"] = event_id
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        found["trace_id"] = format(span.trace_id, "032x")
        found["span_id"] = format(span.span_id, "016x")
    return found


class ContextFilter(logging.Filter):
    """Copies ``context_fields()`` onto each record (as attributes the formatters read)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in context_fields().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# --- secrets -------------------------------------------------------------------------------------------------


class Redactor(logging.Filter):
    """Replaces known secret values (and NKey seeds, URL passwords) in a record before it is formatted."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._known: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        fresh = {s for s in secrets if s and s.strip()}
        if fresh <= self._secrets:
            return
        self._secrets |= fresh
        # Longest first, so a secret that contains another is masked whole.
        alternatives = sorted(self._secrets, key=len, reverse=True)
        self._known = re.compile("|".join(re.escape(s) for s in alternatives))

    def scrub(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(MASK, text)
        text = _NKEY_SEED.sub(MASK, text)
        text = _URL_PASSWORD.sub(rf"\g<head>{MASK}@", text)
        return _NATS_URL_TOKEN.sub(rf"\g<head>{MASK}@", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.scrub(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.scrub(value))
        return True


#: The process's redactor: ``configure`` puts it on the handler it installs; ``redact`` feeds it.
REDACTOR: Final = Redactor()


def redact(secrets: Iterable[str]) -> None:
    """Never log these values (idempotent; empty values are ignored)."""
    REDACTOR.add(secrets)


def scrub(text: str) -> str:
    """``text`` with every secret the process knows of, and any URL credentials, replaced by ``***``."""
    return REDACTOR.scrub(text)


def url_secrets(value: str) -> list[str]:
    """The credentials written into a URL (or a comma-separated list of URLs), raw and percent-decoded.

    A password; and, for a NATS URL, a user part without a password (nats-py sends it as a token).
    """
    found: list[str] = []
    for part in value.split(","):
        if "://" not in part or "@" not in part:
            continue
        try:
            url = urlsplit(part.strip())
            username, password = url.username, url.password
        except ValueError:  # an unparseable port, say: nothing to learn from it, the patterns still apply
            continue
        if password is not None:
            found += [password, unquote(password)]
        elif username is not None and url.scheme.lower() in _NATS_SCHEMES:
            found += [username, unquote(username)]
    return [secret for secret in found if secret]


def known_secrets(settings: object) -> list[str]:
    """Every ``SecretStr`` value in a settings tree (a dataclass of pydantic groups, a group, or nested), and
    the credentials written into its URL-valued strings (``url_secrets``)."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, SecretStr):
            found.append(node.get_secret_value())
        elif isinstance(node, str):
            found.extend(url_secrets(node))
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name))
        elif is_dataclass(node) and not isinstance(node, type):
            for item in fields(node):
                walk(getattr(node, item.name))

    walk(settings)
    return [value for value in found if value]


# --- formatting ----------------------------------------------------------------------------------------------


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = _jsonable(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [sandbox_id=... trace_id=...]`` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(f"{key}={getattr(record, key)}" for key in _CONTEXT if hasattr(record, key))
        if not context:
            return text
        head, newline, rest = text.partition("\n")
        return f"{head} [{context}]{newline}{rest}"


# --- setup ---------------------------------------------------------------------------------------------------


def _level(explicit: str | None) -> str:
    level = (explicit or os.environ.get(LEVEL_VARIABLE) or "INFO").strip().upper()
    return level if level in logging.getLevelNamesMapping() else "INFO"


def _format(default: Format) -> Format:
    chosen = os.environ.get(FORMAT_VARIABLE, "").strip().lower()
    if chosen == "json":
        return "json"
    if chosen == "text":
        return "text"
    return default


def configure(
    *,
    default_format: Format = "json",
    level: str | None = None,
    stream: IO[str] | None = None,
    secrets: Iterable[str] = (),
) -> logging.Handler:
    """Log to ``stream`` (stderr) through one handler on the root logger; returns that handler.

    ``level`` wins over ``SANDBOXD_LOG_LEVEL`` (``-v`` passes DEBUG); ``SANDBOXD_LOG_FORMAT`` wins over
    ``default_format``. Calling it again replaces the handler it installed before.
    """
    redact(secrets)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name("sandboxd")
    handler.addFilter(ContextFilter())
    handler.addFilter(REDACTOR)
    handler.setFormatter(JsonFormatter() if _format(default_format) == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == "sandboxd":
            root.removeHandler(existing)
            existing.close()
    root.addHandler(handler)
    root.setLevel(_level(level))
    return handler
