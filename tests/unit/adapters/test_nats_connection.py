"""What the NATS settings turn into for nats-py: the role's inbox prefix, the credentials, TLS.

The server side of these (deploy/nats/accounts.conf granting each user only its own inbox) is proved in
tests/integration/security; here only the pure mapping and the refusals at start-up.
"""

from __future__ import annotations

import ssl

import pytest

from sandboxd.adapters.jetstream.connection import connect_options
from sandboxd.adapters.jetstream.errors import connect_failure
from sandboxd.errors import BrokerUnavailable, ConfigurationError
from sandboxd.settings import NatsSettings, load


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for field in NatsSettings.model_fields.values():
        assert isinstance(field.validation_alias, str)
        monkeypatch.delenv(field.validation_alias, raising=False)


def test_the_inbox_prefix_reaches_nats_py_and_defaults_to_nats_own(monkeypatch: pytest.MonkeyPatch) -> None:
    assert connect_options(load(NatsSettings))["inbox_prefix"] == "_INBOX"
    monkeypatch.setenv("NATS_INBOX_PREFIX", "_INBOX_console")
    assert connect_options(load(NatsSettings))["inbox_prefix"] == "_INBOX_console"


@pytest.mark.parametrize("prefix", ["_INBOX.>", "_INBOX.*", "my inbox", "_INBOX.", ".x", ""])
def test_an_inbox_prefix_with_wildcards_or_gaps_is_refused(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("NATS_INBOX_PREFIX", prefix)
    with pytest.raises(ConfigurationError) as refused:
        load(NatsSettings)
    assert "NATS_INBOX_PREFIX" in refused.value.message


def test_user_and_password_become_nats_py_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_USER", "sandbox-publisher")
    monkeypatch.setenv("NATS_PASSWORD", "pa55word-value")
    options = connect_options(load(NatsSettings))
    assert (options["user"], options["password"]) == ("sandbox-publisher", "pa55word-value")
    assert "token" not in options and "tls" not in options


def test_a_tls_url_verifies_the_server_even_without_a_ca_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "tls://nats.example:4222")
    context = connect_options(load(NatsSettings))["tls"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_a_local_failure_names_what_failed_and_is_permanent_never_is_the_server_running() -> None:
    missing = connect_failure(ModuleNotFoundError("No module named 'nkeys'", name="nkeys"), servers="nats://h:4222")
    assert isinstance(missing, ConfigurationError)
    assert "is the server running" not in missing.message
    assert "'nkeys' is missing" in missing.message and "nats://h:4222" in missing.message
    unreadable = connect_failure(FileNotFoundError(2, "No such file or directory", "/x/u.creds"), servers="nats://h")
    assert isinstance(unreadable, ConfigurationError)
    assert unreadable.message == (
        "cannot connect to NATS at nats://h: a local failure, not the server: "
        "cannot read /x/u.creds: No such file or directory"
    )
    refused = connect_failure(ConnectionRefusedError(111, "Connection refused"), servers="nats://h:4222")
    assert isinstance(refused, BrokerUnavailable) and "is the server running" in refused.message
