"""Logs: JSON lines with the context's sandbox, event and trace; text for people; secrets never written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from sandboxd.settings import NatsSettings
from sandboxd.telemetry import logs
from sandboxd.telemetry.testing import capture

PASSWORD = "hunter2-Correct-Horse"
TOKEN = "tok_5f3b9c2e8a"
SEED = "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY"  # shaped like an NKey user seed
log = logging.getLogger("sandboxd.tests.logs")


@pytest.fixture
def redaction() -> logs.Redaction:
    return logs.Redaction([PASSWORD, TOKEN])


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch, redaction: logs.Redaction) -> Iterator[io.StringIO]:
    monkeypatch.delenv(logs.FORMAT_VARIABLE, raising=False)
    monkeypatch.delenv(logs.LEVEL_VARIABLE, raising=False)
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure(default_format="json", stream=out, redaction=redaction)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_time_level_logger_message_and_extras(stream: io.StringIO) -> None:
    log.info("applied %d objects", 9, extra={"duration_ms": 12.5})
    (line,) = lines(stream)
    assert line["level"] == "INFO"
    assert line["logger"] == "sandboxd.tests.logs"
    assert line["message"] == "applied 9 objects"
    assert line["duration_ms"] == 12.5
    assert line["time"].endswith("Z") and len(line["time"]) == len("2026-11-27T05:11:00.123Z")
    assert "sandbox_id" not in line and "trace_id" not in line


def test_the_context_sandbox_event_and_trace_ride_along(stream: io.StringIO) -> None:
    captured = capture()
    tracer = captured.telemetry.tracer
    assert tracer is not None
    with logs.bound(sandbox_id="sb-1"), logs.bound(event_id="evt-1"), tracer.start_as_current_span("x") as span:
        log.warning("inside")
    log.warning("outside")
    inside, outside = lines(stream)
    context = span.get_span_context()
    assert inside["sandbox_id"] == "sb-1" and inside["event_id"] == "evt-1"
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert not {"sandbox_id", "event_id", "trace_id", "span_id"} & set(outside)


def test_known_secrets_never_reach_a_line(stream: io.StringIO) -> None:
    log.error("connecting with password %s and token %s", PASSWORD, TOKEN, extra={"auth": f"Bearer {TOKEN}"})
    try:
        raise RuntimeError(f"authorization violation for {PASSWORD}")
    except RuntimeError:
        log.exception("failed")
    text = stream.getvalue()
    assert PASSWORD not in text and TOKEN not in text
    first, second = lines(stream)
    assert first["message"] == "connecting with password *** and token ***"
    assert first["auth"] == "Bearer ***"
    assert "authorization violation for ***" in second["exception"]


def test_secret_shapes_are_masked_even_when_nobody_registered_them(stream: io.StringIO) -> None:
    log.info("seed %s; url nats://sandboxd:pa55w0rd@nats.internal:4222", SEED)
    (line,) = lines(stream)
    assert SEED not in line["message"] and "pa55w0rd" not in line["message"]
    assert line["message"] == "seed ***; url nats://sandboxd:***@nats.internal:4222"


def test_known_secrets_come_from_every_secret_field_of_a_settings_tree() -> None:
    nats = NatsSettings(user="svc", password=SecretStr(PASSWORD), token=SecretStr(TOKEN), nkey_seed=SecretStr(SEED))
    assert sorted(logs.known_secrets(nats)) == sorted([PASSWORD, TOKEN, SEED])
    assert logs.known_secrets(NatsSettings(url="nats://127.0.0.1:4222")) == []


def test_a_secret_learnt_later_is_masked_from_then_on(stream: io.StringIO, redaction: logs.Redaction) -> None:
    late = "registered-later-0xBEEF"
    redaction.learn(NatsSettings(token=SecretStr(late)))  # settings read after logging was configured
    redaction.add([""])  # an empty value masks nothing
    log.info("value %s", late)
    assert late not in stream.getvalue()
    assert lines(stream)[0]["message"] == "value ***"


def test_a_redaction_knows_only_what_it_was_given() -> None:
    """No process-wide state: what one redaction learnt, another does not mask (beyond the secret shapes)."""
    taught = logs.Redaction.of(NatsSettings(user="svc", password=SecretStr(PASSWORD)))
    assert taught.scrub(f"password {PASSWORD}") == "password ***"
    assert logs.Redaction().scrub(f"password {PASSWORD}") == f"password {PASSWORD}"


def test_text_format_for_people(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    handler = logs.configure(default_format="text", stream=out, level="DEBUG", redaction=logs.Redaction([PASSWORD]))
    try:
        with logs.bound(sandbox_id="sb-9"):
            log.debug("hello %s", PASSWORD)
    finally:
        logging.getLogger().removeHandler(handler)
    text = out.getvalue()
    assert " DEBUG sandboxd.tests.logs: hello *** [sandbox_id=sb-9]" in text


def test_the_environment_picks_format_and_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logs.FORMAT_VARIABLE, "json")
    monkeypatch.setenv(logs.LEVEL_VARIABLE, "warning")
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure(default_format="text", stream=out)
    try:
        assert isinstance(handler.formatter, logs.LineFormatter) and handler.formatter.renderer is logs.render_json
        assert root.level == logging.WARNING
        again = logs.configure(default_format="text", stream=out)  # replaces, never duplicates, its handler
        assert [h for h in root.handlers if h.get_name() == "sandboxd"] == [again]
    finally:
        root.removeHandler(again)
        root.setLevel(level)


def test_credentials_written_into_a_url_are_known_secrets_and_scrubbed() -> None:
    nats = NatsSettings(url=f"nats://u:{PASSWORD}@h1:4222,nats://{TOKEN}@h2:4222,nats://h3:4222")
    assert set(logs.known_secrets(nats)) == {PASSWORD, TOKEN}
    assert logs.url_secrets("nats://u:p%40ss@h:4222") == ["p%40ss", "p@ss"]  # as written and as decoded
    assert logs.url_secrets("https://git.example/acme/gitops.git") == []
    assert logs.url_secrets("ssh://git@github.com/acme/gitops.git") == []  # a user name, not a token
    # Any URL's credentials are masked, known or not; the rest of the line stays readable.
    line = "cannot connect to NATS at nats://u:sEcret@h:4222, tls://t0ken@h:4443, https://a:b@git.example/x"
    assert logs.Redaction().scrub(line) == (
        "cannot connect to NATS at nats://u:***@h:4222, tls://***@h:4443, https://a:***@git.example/x"
    )


def test_credentials_of_a_server_without_a_scheme_are_known_secrets_and_scrubbed() -> None:
    # nats-py reads ``user:password@host`` and ``token@host`` as nats:// URLs, in a list too.
    nats = NatsSettings(url=f"u:{PASSWORD}@h1:4222,{TOKEN}@h2,nats://h3:4222")
    assert set(logs.known_secrets(nats)) == {PASSWORD, TOKEN}
    assert logs.url_secrets("git@github.com:acme/gitops.git") == []  # an scp-style Git remote: no token
    line = "cannot connect to NATS at admin:WrongS3CRET@127.0.0.1:24875,v:s3cret@h2:4222: authorization failed"
    assert logs.Redaction().scrub(line) == (
        "cannot connect to NATS at admin:***@127.0.0.1:24875,v:***@h2:4222: authorization failed"
    )
    assert logs.Redaction().scrub("error: see sandbox.create:x for why") == "error: see sandbox.create:x for why"
    # A bare token is masked once learnt: a server list carries its own (``without_credentials``).
    assert logs.without_credentials(f"{TOKEN}@h2:4222,u:{PASSWORD}@h1") == "***@h2:4222,u:***@h1"


def test_settings_passed_in_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logs.FORMAT_VARIABLE, "json")
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure(default_format="json", stream=out, settings=logs.LogSettings(format="text", level="ERROR"))
    try:
        assert isinstance(handler.formatter, logs.LineFormatter) and handler.formatter.renderer is logs.render_text
        assert root.level == logging.ERROR
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_the_processors_are_pure_functions_of_a_dict() -> None:
    redaction = logs.Redaction([PASSWORD])
    event = {"message": f"password {PASSWORD}", "auth": f"Bearer {PASSWORD}", "count": 3}
    assert redaction(event) == {"message": "password ***", "auth": "Bearer ***", "count": 3}
    assert event["message"] == f"password {PASSWORD}"  # the input is left as it was
    with logs.bound(sandbox_id="sb-1"):
        assert logs.add_context({"message": "m"}) == {"message": "m", "sandbox_id": "sb-1"}
        assert logs.add_context({"sandbox_id": "given"}) == {"sandbox_id": "given"}  # an explicit extra wins
    assert logs.render_json({"a": "é", "b": 1}) == '{"a":"é","b":1}'


def test_a_record_is_never_changed_on_its_way_to_a_line(stream: io.StringIO) -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    keeper = Keep()
    logging.getLogger().addHandler(keeper)
    try:
        log.info("password %s", PASSWORD)
    finally:
        logging.getLogger().removeHandler(keeper)
    assert lines(stream)[0]["message"] == "password ***"
    assert seen[0].getMessage() == f"password {PASSWORD}"  # other handlers see the raw record (caplog does)


def test_kubernetes_response_bodies_stay_out_of_a_debug_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """kubernetes_asyncio logs every response body at DEBUG; a Secret the token writer just wrote is one."""
    monkeypatch.delenv(logs.FORMAT_VARIABLE, raising=False)
    monkeypatch.setenv(logs.LEVEL_VARIABLE, "debug")
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure(default_format="json", stream=out)
    try:
        logging.getLogger("kubernetes_asyncio.client.rest").debug("response body: %s", '{"data": {"token": "c2Vj"}}')
        log.debug("our own debug line")
        assert [line["message"] for line in lines(out)] == ["our own debug line"]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
