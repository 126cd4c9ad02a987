"""Logs: one JSON object per line (or plain text for people), each line carrying the sandbox and the trace it
belongs to, and never a secret value.

A line is built the way structlog builds one: the record is read once into a plain dict (``event_of``), then
pure dict → dict processors run in order (``add_context``, then the ``Redaction``), then a renderer turns the
dict into text (``render_json`` or ``render_text``). No processor mutates the ``LogRecord``, so other handlers
(pytest's caplog) see it raw.

- ``configure`` installs one handler on the root logger. Level and format come from ``LogSettings``
  (``SANDBOXD_LOG_LEVEL``, default INFO; ``SANDBOXD_LOG_FORMAT``, ``json`` or ``text``), passed in or read by
  the settings tree at the call: this module reads no variable itself. The command picks the default format
  (json for ``sandboxd run``, text for ``sandboxd dev``); an explicit ``level`` (``-v``) wins.
- ``bound(sandbox_id=..., event_id=...)`` sets the context variables every line carries; ``trace_id`` and
  ``span_id`` come from the current OpenTelemetry span (also a context variable) when there is a valid one.
- ``Redaction`` is one processor, an object the caller builds and passes in (no process-wide state):
  ``Redaction.of(settings)`` knows every secret of a settings tree (NATS password, token, NKey seed, Git
  password, and the credentials written into a URL setting such as ``NATS_URL``: see ``known_secrets``). It
  replaces those values, anything shaped like an NKey seed and the credentials of a URL (``user:password@``,
  with or without a scheme, or a NATS token ``nats://token@``) with ``***`` in every string of the line:
  message, exception, stack and extras. Secrets are learnt where settings are read (the CLI reads them after
  logging is configured), so the edge that built it calls ``learn(settings)`` on the same object; text that
  leaves the process another way (the CLI's one-line errors) goes through its ``scrub``.
- ``without_credentials(url)`` is a URL (or a list of them) with the credentials written into it masked, for a
  message that names a server: it needs no ``Redaction``, the URL carries its own secrets.

A JSON line: ``{"time": "2026-11-27T05:11:00.123Z", "level": "INFO", "logger": "sandboxd.x", "message": "...",
"sandbox_id": "sb-1", "event_id": "...", "trace_id": "<32 hex>", "span_id": "<16 hex>", ...extras}``.

What it deliberately does not do: format records for other handlers, or scrub secrets it was never told about
beyond the two shapes above.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar, Token
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from typing import IO, Any, Final, Literal
from urllib.parse import unquote, urlsplit

from opentelemetry import trace
from pydantic import BaseModel, SecretStr

from sandboxd.settings.logging import FORMAT_VARIABLE, LEVEL_VARIABLE, LogSettings

Format = Literal["json", "text"]

#: A line on its way through the processors: plain values, keyed by field name.
Event = dict[str, Any]
Processor = Callable[[Event], Event]
Renderer = Callable[[Event], str]

MASK: Final = "***"
__all__ = ["FORMAT_VARIABLE", "LEVEL_VARIABLE", "LogSettings"]  # re-exported: the variables' names, for tests

_sandbox_id: ContextVar[str | None] = ContextVar("sandbox_id", default=None)
_event_id: ContextVar[str | None] = ContextVar("event_id", default=None)

# An NKey seed: "S" + key type + base32 (58 characters in all); a URL's user:password@; a NATS URL's token@
# (nats-py reads a user part without a password as a token; ``nats://name@`` is masked too, which only costs
# the name).
_NKEY_SEED: Final = re.compile(r"\bS[ANOUCPX][A-Z2-7]{56}\b")
_URL_PASSWORD: Final = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)[^\s/@]+@")
_NATS_URL_TOKEN: Final = re.compile(r"(?P<head>\b(?:nats|tls|ws|wss)://)[^\s/@:]+@", re.IGNORECASE)
# nats-py also takes a server without a scheme (``user:password@host:4222``, ``token@host``): the password of
# one that starts a word or follows a comma is masked; its token is masked once learnt (``url_secrets``).
_BARE_PASSWORD: Final = re.compile(r"(?<![^\s,])(?P<head>[^\s/@:,]+:)[^\s/@,]+@")
_BARE_SERVER: Final = re.compile(r"[^\s/@:]+(?::[^\s/@]+)?@[^\s/@:]+(?::\d+)?")
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


def add_context(event: Event) -> Event:
    """The processor that adds ``context_fields()`` (a field the call passed as an extra wins)."""
    return {**event, **{key: value for key, value in context_fields().items() if key not in event}}


# --- secrets -------------------------------------------------------------------------------------------------


class Redaction:
    """The processor that masks known secret values (and NKey seeds, URL credentials) in every string field."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._known: re.Pattern[str] | None = None
        self.add(secrets)

    @classmethod
    def of(cls, settings: object) -> Redaction:
        """A redaction that knows every secret of ``settings`` (``known_secrets``)."""
        return cls(known_secrets(settings))

    def learn(self, settings: object) -> None:
        """Mask the secrets of ``settings`` too, from now on (settings read after logging was configured)."""
        self.add(known_secrets(settings))

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these values too (idempotent; empty values are ignored)."""
        fresh = {s for s in secrets if s and s.strip()}
        if fresh <= self._secrets:
            return
        self._secrets |= fresh
        # Longest first, so a secret that contains another is masked whole.
        alternatives = sorted(self._secrets, key=len, reverse=True)
        self._known = re.compile("|".join(re.escape(s) for s in alternatives))

    def scrub(self, text: str) -> str:
        """``text`` with every known secret, NKey seed and URL credential replaced by ``***``."""
        if self._known is not None:
            text = self._known.sub(MASK, text)
        text = _NKEY_SEED.sub(MASK, text)
        text = _URL_PASSWORD.sub(rf"\g<head>{MASK}@", text)
        text = _BARE_PASSWORD.sub(rf"\g<head>{MASK}@", text)
        return _NATS_URL_TOKEN.sub(rf"\g<head>{MASK}@", text)

    def __call__(self, event: Event) -> Event:
        return {key: self.scrub(value) if isinstance(value, str) else value for key, value in event.items()}


def without_credentials(url: str) -> str:
    """``url`` (or a comma-separated list of URLs) with the credentials written into it replaced by ``***``."""
    return Redaction(url_secrets(url)).scrub(url)


def url_secrets(value: str) -> list[str]:
    """The credentials written into a URL (or a comma-separated list of URLs), raw and percent-decoded.

    A password; and, for a NATS URL, a user part without a password (nats-py sends it as a token). A server
    without a scheme (``user:password@host:port``, ``token@host``: nats-py reads it as ``nats://``) counts.
    """
    found: list[str] = []
    for written in (p.strip() for p in value.split(",")):
        if "@" not in written or ("://" not in written and not _BARE_SERVER.fullmatch(written)):
            continue
        try:
            url = urlsplit(written if "://" in written else f"nats://{written}")
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


# --- the line: read, processed, rendered ----------------------------------------------------------------------


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


def event_of(record: logging.LogRecord) -> Event:
    """The record as a plain dict (the record itself is left as it was): time, level, logger, message, the
    extras, and the exception and stack as text."""
    event: Event = {
        "time": _timestamp(record),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            event[key] = _jsonable(value)
    exception = record.exc_text or (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
    if exception:
        event["exception"] = exception
    if record.stack_info:
        event["stack"] = record.stack_info
    return event


def render_json(event: Mapping[str, Any]) -> str:
    """One JSON object on one line."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def render_text(event: Mapping[str, Any]) -> str:
    """``time LEVEL logger: message [sandbox_id=... trace_id=...]`` (then the exception) for people."""
    moment = datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).astimezone()
    when = moment.strftime("%Y-%m-%d %H:%M:%S") + f",{moment.microsecond // 1000:03d}"
    text = f"{when} {event['level']} {event['logger']}: {event['message']}"
    context = " ".join(f"{key}={event[key]}" for key in _CONTEXT if key in event)
    if context:
        text += f" [{context}]"
    for key in ("exception", "stack"):
        if key in event:
            text += "\n" + event[key]
    return text


class LineFormatter(logging.Formatter):
    """``renderer(processors…(event_of(record)))``: the only ``logging`` class here."""

    def __init__(self, *, processors: Iterable[Processor], renderer: Renderer) -> None:
        super().__init__()
        self.processors = tuple(processors)
        self.renderer = renderer

    def format(self, record: logging.LogRecord) -> str:
        event = event_of(record)
        for processor in self.processors:
            event = processor(event)
        return self.renderer(event)


# --- setup ---------------------------------------------------------------------------------------------------


_HANDLER: Final = "sandboxd"


def _level(explicit: str | None, settings: LogSettings) -> str:
    level = (explicit or settings.level or "INFO").strip().upper()
    return level if level in logging.getLevelNamesMapping() else "INFO"


def _format(default: Format, settings: LogSettings) -> Format:
    chosen = (settings.format or "").strip().lower()
    if chosen == "json":
        return "json"
    if chosen == "text":
        return "text"
    return default


#: Libraries that log whole HTTP response bodies at DEBUG (kubernetes_asyncio: a Secret's data, a token the
#: token writer just wrote): never below INFO, whatever the service's own level.
BODY_LOGGERS: Final = ("kubernetes_asyncio", "urllib3")


def configure(
    *,
    default_format: Format = "json",
    level: str | None = None,
    stream: IO[str] | None = None,
    settings: LogSettings | None = None,
    redaction: Redaction | None = None,
) -> logging.Handler:
    """Log to ``stream`` (stderr) through one handler on the root logger; returns that handler.

    ``level`` wins over ``settings.level`` (``-v`` passes DEBUG); ``settings.format`` wins over
    ``default_format``. ``settings`` defaults to the environment's (``LogSettings()``). ``redaction`` is the
    caller's, which it may go on teaching (``learn``); without one, only the secret shapes are masked (NKey
    seeds, URL credentials). Calling it again replaces the handler it installed before.
    """
    settings = settings if settings is not None else LogSettings()
    redaction = redaction if redaction is not None else Redaction()
    renderer = render_json if _format(default_format, settings) == "json" else render_text
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER)
    handler.setFormatter(LineFormatter(processors=(add_context, redaction), renderer=renderer))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER:
            root.removeHandler(existing)
            existing.close()
    root.addHandler(handler)
    root.setLevel(_level(level, settings))
    for chatty in BODY_LOGGERS:  # they log whole response bodies at DEBUG: a Secret's data among them
        logging.getLogger(chatty).setLevel(max(root.level, logging.INFO))
    return handler
