"""The translation table of ``adapters.kubernetes.errors``, case by case (pure: no API server needed).

The real server is exercised for the cases it can be made to produce (422, 409, the 500 of an undeclared field,
NamespaceTerminating, timeouts) in the other modules here; this one pins every row, including those a test
server does not produce on demand (429 with Retry-After, 503, 401, 410).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from sandboxd.adapters.kubernetes.errors import (
    NAMESPACE_TERMINATING_DELAY_S,
    ResourceVersionGone,
    from_status,
    translated,
)
from sandboxd.errors import ApplyRejected, ApplyUnavailable, SandboxdError

REQUEST = "PATCH /apis/gateway.networking.k8s.io/v1/namespaces/sandbox-x/httproutes/pty-server"


def status_body(code: int, message: str, *, reason: str = "", causes: list[str] | None = None) -> bytes:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message}
    body |= {"reason": reason, "code": code}
    if causes:
        body["details"] = {"causes": [{"reason": cause} for cause in causes]}
    return json.dumps(body).encode()


def judged(code: int, message: str = "boom", headers: dict[str, str] | None = None, **kw: Any) -> SandboxdError:
    return from_status(code, status_body(code, message, **kw), headers or {}, request=REQUEST)


@pytest.mark.parametrize("code", [400, 403, 404, 422])
def test_refusals_are_permanent_in_the_servers_words(code: int) -> None:
    message = 'HTTPRoute.gateway.networking.k8s.io "pty-server" is invalid: spec.hostnames[0]: Invalid value'
    error = judged(code, message)
    assert type(error) is ApplyRejected
    assert error.message == message


@pytest.mark.parametrize("code", [401, 409, 429, 500, 502, 503, 504])
def test_transient_answers_are_retryable_and_name_the_request(code: int) -> None:
    error = judged(code, "try later")
    assert isinstance(error, ApplyUnavailable)
    assert type(error) is ApplyUnavailable
    assert error.message == f"{REQUEST}: HTTP {code}: try later"
    assert error.delay is None


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_becomes_the_delay(code: int) -> None:
    seconds = judged(code, headers={"Retry-After": "7"})
    date = judged(code, headers={"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})
    assert isinstance(seconds, ApplyUnavailable)
    assert isinstance(date, ApplyUnavailable)
    assert seconds.delay == 7.0
    assert date.delay is None


def test_gone_is_its_own_retryable_error() -> None:
    error = judged(410, "too old resource version: 5 (90)")
    assert isinstance(error, ResourceVersionGone)
    assert isinstance(error, ApplyUnavailable)


def test_an_undeclared_field_is_permanent_despite_the_500() -> None:
    message = "failed to create typed patch object (x/y; /v1, Kind=ConfigMap): .bogus: field not declared in schema"
    error = judged(500, message)
    assert type(error) is ApplyRejected
    assert error.message == message


def test_a_terminating_namespace_is_retried_after_a_pause() -> None:
    message = 'configmaps "x" is forbidden: unable to create new content in namespace n because it is being terminated'
    error = judged(403, message, reason="Forbidden", causes=["NamespaceTerminating"])
    assert isinstance(error, ApplyUnavailable)
    assert error.delay == NAMESPACE_TERMINATING_DELAY_S
    assert type(judged(403, "forbidden", reason="Forbidden", causes=["FieldValueForbidden"])) is ApplyRejected


def test_a_body_that_is_not_a_status_is_quoted_shortly() -> None:
    error = from_status(502, b"<html>bad gateway</html>", {}, request=REQUEST)
    assert error.message == f"{REQUEST}: HTTP 502: <html>bad gateway</html>"


def test_secret_values_never_reach_a_message() -> None:
    error = from_status(
        422,
        status_body(422, 'Secret "t" is invalid: data[token]: Invalid value: "s3cr3t-t0ken"'),
        {},
        request=REQUEST,
        secret_values=("s3cr3t-t0ken",),
    )
    assert "s3cr3t-t0ken" not in error.message
    assert "<redacted>" in error.message


def api_exception(code: int, body: bytes, headers: dict[str, str] | None = None) -> ApiException:
    exc = ApiException(status=code, reason="x")
    exc.body = body
    exc.headers = headers  # type: ignore[assignment]
    return exc


def test_translated_raises_from_the_library_error() -> None:
    cause = api_exception(429, status_body(429, "slow down"), {"Retry-After": "3"})
    with pytest.raises(ApplyUnavailable) as caught, translated(REQUEST):
        raise cause
    assert caught.value.delay == 3.0
    assert caught.value.__cause__ is cause


@pytest.mark.parametrize(
    "cause",
    [aiohttp.ServerDisconnectedError(), TimeoutError(), ConnectionRefusedError(111, "Connection refused")],
    ids=["disconnected", "timeout", "refused"],
)
def test_no_answer_is_retryable(cause: BaseException) -> None:
    with pytest.raises(ApplyUnavailable) as caught, translated(REQUEST):
        raise cause
    assert caught.value.message.startswith(f"{REQUEST}: Kubernetes API unreachable ({type(cause).__name__}")
    assert caught.value.__cause__ is cause


def test_other_errors_pass_through() -> None:
    with pytest.raises(KeyError), translated(REQUEST):
        raise KeyError("a bug, not the API")
