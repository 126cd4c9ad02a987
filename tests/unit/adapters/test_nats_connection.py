"""What the NATS settings turn into for nats-py: the role's inbox prefix, the credentials, TLS.

The server side of these (deploy/nats/accounts.conf granting each user only its own inbox) is proved in
tests/integration/security; here only the mapping, the refusals at start-up and the files the settings name,
each read before connecting (an unreadable one is a local failure naming it and its variable).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from sandboxd.adapters.jetstream.connection import connect, connect_options
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


# --- files the settings name: read before connecting --------------------------------------------------------


@pytest.fixture
def readable(tmp_path: Path) -> Path:
    path = tmp_path / "readable.pem"
    path.write_text("not checked for content here\n")
    return path


@pytest.mark.parametrize("variable", ["NATS_CREDS", "NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY"])
def test_a_file_that_is_missing_is_a_local_failure_naming_it_and_its_variable(
    monkeypatch: pytest.MonkeyPatch, readable: Path, tmp_path: Path, variable: str
) -> None:
    """Checked before connecting: nats-py reads a creds file only when the server asks for a signature, and ssl's
    complaint names no file."""
    monkeypatch.setenv("NATS_URL", "nats://h:4222")
    monkeypatch.setenv("NATS_TLS_CERT", str(readable))  # a pair: the one under test is replaced below
    monkeypatch.setenv("NATS_TLS_KEY", str(readable))
    monkeypatch.setenv(variable, str(missing := tmp_path / "missing" / "x.pem"))
    with pytest.raises(ConfigurationError) as refused:
        connect_options(load(NatsSettings))
    assert refused.value.message == (
        "cannot connect to NATS at nats://h:4222: a local failure, not the server: "
        f"cannot read {missing}: No such file or directory ({variable})"
    )


def test_a_folder_given_as_the_creds_file_is_named_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NATS_CREDS", str(tmp_path))
    with pytest.raises(ConfigurationError) as refused:
        connect_options(load(NatsSettings))
    assert refused.value.message.endswith(f"cannot read {tmp_path}: Is a directory (NATS_CREDS)")


def test_a_readable_creds_file_goes_to_nats_py_unread(monkeypatch: pytest.MonkeyPatch, readable: Path) -> None:
    monkeypatch.setenv("NATS_CREDS", str(readable))
    assert connect_options(load(NatsSettings))["user_credentials"] == str(readable)


def test_a_tls_file_that_does_not_load_is_a_local_failure_naming_it(
    monkeypatch: pytest.MonkeyPatch, readable: Path
) -> None:
    monkeypatch.setenv("NATS_TLS_CA", str(readable))
    with pytest.raises(ConfigurationError) as refused:
        connect_options(load(NatsSettings))
    assert refused.value.message == (
        f"cannot connect to NATS at nats://127.0.0.1:4222: a local failure, not the server: "
        f"cannot load NATS_TLS_CA {readable}: NO_CERTIFICATE_OR_CRL_FOUND"
    )
    monkeypatch.delenv("NATS_TLS_CA")
    monkeypatch.setenv("NATS_TLS_CERT", str(readable))
    monkeypatch.setenv("NATS_TLS_KEY", str(readable))
    with pytest.raises(ConfigurationError) as refused:
        connect_options(load(NatsSettings))
    assert refused.value.message.endswith(f"cannot load NATS_TLS_CERT {readable} with NATS_TLS_KEY {readable}: not PEM")


@pytest.mark.anyio
async def test_connect_refuses_an_unreadable_file_before_trying_a_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A ``ConfigurationError``, not ``BrokerUnavailable``: a service stops instead of retrying forever."""
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")  # nothing listens there: a connect would say so
    monkeypatch.setenv("NATS_CREDS", str(tmp_path / "x.creds"))
    with pytest.raises(ConfigurationError) as refused:
        await connect(load(NatsSettings))
    assert f"a local failure, not the server: cannot read {tmp_path / 'x.creds'}" in refused.value.message
