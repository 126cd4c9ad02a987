"""The one place Kubernetes client failures become ``sandboxd.errors``.

An ``ApiException`` (or the HTTP status of a watch request) is judged by its status::

    status                                   becomes
    409 Conflict                             ApplyUnavailable: a concurrent writer; the next pass re-applies
    429 Too Many Requests                    ApplyUnavailable, delay = Retry-After
    401 Unauthorized                         ApplyUnavailable: tokens expire and rotate; a refreshed one may work
    410 Gone                                 ResourceVersionGone (an ApplyUnavailable): a watch relists
    5xx                                      ApplyUnavailable, delay = Retry-After when the server sent one
      500 "failed to create typed patch"     ApplyRejected: server-side apply's schema error for a field the
                                             server does not know; no retry can fix the object
    403 with cause NamespaceTerminating      ApplyUnavailable, 5 s: the namespace of a purge is still going
    any other 4xx (400, 403, 404, 422, ...)  ApplyRejected, with the API server's own ``message``

and failures that never reached an answer (``aiohttp.ClientError``, a timeout, ``OSError`` such as a refused
connection or a TLS failure) are ``ApplyUnavailable``.

Messages: a refusal is the API server's ``message`` verbatim (``HTTPRoute.gateway.networking.k8s.io
"pty-server" is invalid: spec.parentRefs[0].sectionName: Invalid value: ...``); anything else names the request
(method and path) and the failure. Never in a message: request headers (the bearer token), request bodies, and
any Secret value the caller names (``secret_values``), replaced by ``<redacted>`` should the server quote it.

What it deliberately does not do: decide that a 404 is fine (a delete or a read of something already gone is
the caller's call, made before translation), or retry.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from sandboxd.errors import ApplyRejected, ApplyUnavailable, SandboxdError

#: How long to wait before applying into a namespace that is still terminating, s.
NAMESPACE_TERMINATING_DELAY_S: Final = 5.0
REDACTED: Final = "<redacted>"
_UNTYPED_PATCH: Final = "failed to create typed patch object"


class ResourceVersionGone(ApplyUnavailable):
    """HTTP 410: the resourceVersion a watch resumed from is compacted away; list again."""

    reason = "ResourceVersionGone"


@contextmanager
def translated(request: str, *, secret_values: Collection[str] = ()) -> Iterator[None]:
    """Re-raise what the client library raises inside the block as ``sandboxd.errors``.

    ``request`` names the call (``PATCH /api/v1/namespaces/x/secrets/y``) for messages that are not the server's.
    """
    try:
        yield
    except ApiException as exc:
        headers: Mapping[str, str] = exc.headers or {}
        raise from_status(exc.status, exc.body, headers, request=request, secret_values=secret_values) from exc
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        detail = redact(
            str(exc) or ("no answer in time" if isinstance(exc, TimeoutError) else "no detail"), secret_values
        )
        raise ApplyUnavailable(f"{request}: Kubernetes API unreachable ({exc.__class__.__name__}: {detail})") from exc


def from_status(
    status: int | None,
    body: bytes | str | None,
    headers: Mapping[str, str],
    *,
    request: str,
    secret_values: Collection[str] = (),
) -> SandboxdError:
    """The error for an HTTP ``status`` the API server answered (``body`` is its ``Status`` object)."""
    answer = _status_object(body)
    message = redact(str(answer.get("message") or body_text(body) or "no message"), secret_values)
    code = status or 0
    said = f"{request}: HTTP {code}: {message}"
    if code == 410:
        return ResourceVersionGone(said)
    if _retryable(code, message, answer):
        delay = retry_after(headers)
        if "NamespaceTerminating" in _causes(answer):
            delay = max(delay or 0.0, NAMESPACE_TERMINATING_DELAY_S)
        return ApplyUnavailable(said, delay=delay)
    if code == 0:  # raised by the client before any request: the body could not be encoded
        return ApplyRejected(f"{request}: {message}")
    return ApplyRejected(message)


def _retryable(code: int, message: str, answer: Mapping[str, Any]) -> bool:
    if code in (401, 409, 429):
        return True
    if code >= 500:
        return not message.startswith(_UNTYPED_PATCH)
    return code == 403 and "NamespaceTerminating" in _causes(answer)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (the API server sends whole seconds); None when absent or a date."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def redact(text: str, secret_values: Collection[str]) -> str:
    for value in secret_values:
        if value:
            text = text.replace(value, REDACTED)
    return text


def body_text(body: bytes | str | None) -> str:
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text.strip()[:500]


def _status_object(body: bytes | str | None) -> dict[str, Any]:
    if not body:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _causes(answer: Mapping[str, Any]) -> set[str]:
    details = answer.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    if not isinstance(causes, list):
        return set()
    return {str(cause.get("reason")) for cause in causes if isinstance(cause, dict)}
