"""Settings: a missing or invalid variable fails start-up with a message that names it.

Every test starts from an environment with none of sandboxd's variables set (``clean_env``), then sets what it
needs with ``monkeypatch``.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sandboxd.app.scaler import ScalerConfig
from sandboxd.errors import ConfigurationError, SandboxdError
from sandboxd.settings import (
    ApplierSettings,
    NatsSettings,
    RuntimeSettings,
    Settings,
    TopologySettings,
    WorkerSettings,
    load,
    load_settings,
)
from sandboxd.settings.fields import Group

GROUPS: tuple[type[Group], ...] = (RuntimeSettings, NatsSettings, TopologySettings, WorkerSettings, ApplierSettings)
REQUIRED = ("SANDBOX_PTY_SERVER_IMAGE", "SANDBOX_MCP_IMAGE", "SANDBOX_NEWAPI_URL", "SANDBOX_SOVEREIGN_FQDN")
DIGEST = "sha256:" + "0123456789abcdef" * 4


def variables() -> list[str]:
    names = []
    for group in GROUPS:
        for field in group.model_fields.values():
            assert isinstance(field.validation_alias, str), "every setting names its environment variable"
            names.append(field.validation_alias)
    return names


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in variables():
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def runtime_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The four required runtime variables, valid."""
    monkeypatch.setenv("SANDBOX_PTY_SERVER_IMAGE", "ghcr.io/openova/pty-server:1.4.2")
    monkeypatch.setenv("SANDBOX_MCP_IMAGE", f"ghcr.io/openova/sandbox-mcp@{DIGEST}")
    monkeypatch.setenv("SANDBOX_NEWAPI_URL", "https://newapi.example.com/v1")
    monkeypatch.setenv("SANDBOX_SOVEREIGN_FQDN", "omantel.omani.works")


def refusal(group: type[Group]) -> str:
    with pytest.raises(ConfigurationError) as refused:
        load(group)
    return refused.value.message


def test_every_variable_is_named_once() -> None:
    names = variables()
    assert len(names) == len(set(names))


# --- required variables -------------------------------------------------------------------------------------


def test_missing_required_variables_are_all_named() -> None:
    message = refusal(RuntimeSettings)
    for name in REQUIRED:
        assert f"{name} is required but not set" in message


@pytest.mark.parametrize("missing", REQUIRED)
def test_one_missing_variable_is_named_alone(runtime_env: None, monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.delenv(missing)
    message = refusal(RuntimeSettings)
    assert message == f"invalid configuration: {missing} is required but not set"


def test_the_whole_tree_loads_from_the_environment(runtime_env: None) -> None:
    settings = load_settings()
    assert settings.runtime.pty_server_image == "ghcr.io/openova/pty-server:1.4.2"
    assert settings.nats.url == "nats://127.0.0.1:4222"
    assert settings.topology.replicas == 1
    assert settings.worker.concurrency == 32
    assert settings.applier.kind == "kubernetes"
    assert settings.runtime.mcp_transport == "stdio"


def test_a_configuration_error_is_a_sandboxd_error() -> None:
    with pytest.raises(SandboxdError) as refused:
        load(RuntimeSettings)
    assert refused.value.reason == "ConfigurationInvalid"
    assert isinstance(refused.value.__cause__, ValidationError)


# --- images -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "words"),
    [
        ("ghcr.io/openova/pty-server:latest", "uses :latest"),
        ("ghcr.io/openova/pty-server", "has no tag"),
        ("pty-server", "has no tag"),
        ("reg:5000/x/y", "has no tag"),  # the registry's port is not a tag
        ("reg:5000/x/y:", "pin it by digest"),  # an empty tag
        ("", "is empty"),
    ],
)
def test_an_unpinned_image_is_refused_naming_the_variable(
    runtime_env: None, monkeypatch: pytest.MonkeyPatch, image: str, words: str
) -> None:
    monkeypatch.setenv("SANDBOX_PTY_SERVER_IMAGE", image)
    message = refusal(RuntimeSettings)
    assert message.startswith("invalid configuration: SANDBOX_PTY_SERVER_IMAGE ")
    assert words in message
    assert "pin it by digest" in message or "pinned by digest" in message


def test_the_mcp_image_is_held_to_the_same_rule(runtime_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_MCP_IMAGE", "ghcr.io/openova/sandbox-mcp:latest")
    assert refusal(RuntimeSettings).startswith("invalid configuration: SANDBOX_MCP_IMAGE ")


@pytest.mark.parametrize(
    "image",
    [
        "reg:5000/x/y:1.2",
        "ghcr.io/openova/pty-server:1.4.2",
        f"ghcr.io/openova/pty-server@{DIGEST}",
        f"reg:5000/x/y:1.2@{DIGEST}",
        f"ghcr.io/openova/pty-server:latest@{DIGEST}",  # the digest pins it, whatever the tag says
    ],
)
def test_tagged_and_digest_pinned_images_are_accepted(
    runtime_env: None, monkeypatch: pytest.MonkeyPatch, image: str
) -> None:
    monkeypatch.setenv("SANDBOX_PTY_SERVER_IMAGE", image)
    assert load(RuntimeSettings).pty_server_image == image


def test_a_malformed_digest_is_refused(runtime_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_PTY_SERVER_IMAGE", "ghcr.io/openova/pty-server@sha256:abc")
    assert "SANDBOX_PTY_SERVER_IMAGE" in refusal(RuntimeSettings)


# --- other runtime checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("SANDBOX_SOVEREIGN_FQDN", "localhost", "is not a DNS name"),
        ("SANDBOX_SOVEREIGN_FQDN", "bad_name.example.com", "is not a DNS name"),
        ("SANDBOX_NEWAPI_URL", "newapi.example.com", "is not an http(s) URL"),
        ("SANDBOX_NEWAPI_URL", "https://", "is not an http(s) URL"),
        ("SANDBOX_NEWAPI_URL", "ftp://newapi.example.com", "is not an http(s) URL"),
        ("SANDBOX_NEWAPI_URL", "http://newapi /v1", "is not an http(s) URL"),
        ("SANDBOX_NEWAPI_URL", "http://[::1/v1", "is not an http(s) URL"),
        ("SANDBOX_IDLE_TIMEOUT_MINUTES", "0", "greater than or equal to 1"),
        ("SANDBOX_MCP_TRANSPORT", "grpc", "Input should be 'stdio' or 'http'"),
    ],
)
def test_an_invalid_runtime_value_is_refused_naming_the_variable(
    runtime_env: None, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, words: str
) -> None:
    monkeypatch.setenv(variable, value)
    message = refusal(RuntimeSettings)
    assert f"{variable} " in message
    assert words in message


@pytest.mark.parametrize(
    "url", ["http://newapi", "http://x", "https://newapi.example.com/v1", "http://10.0.0.7:3000/v1"]
)
def test_an_in_cluster_gateway_url_however_short_is_accepted(
    runtime_env: None, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("SANDBOX_NEWAPI_URL", url)
    assert RuntimeSettings().newapi_url == url


def test_the_sovereign_fqdn_is_lowercased(runtime_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_SOVEREIGN_FQDN", " Omantel.Omani.Works ")
    assert load(RuntimeSettings).sovereign_fqdn == "omantel.omani.works"


def test_the_placeholder_secret_cannot_be_the_token_secret(runtime_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_LLM_GATEWAY_TOKEN_SECRET", "sandbox-tokens")
    assert "SANDBOX_LLM_GATEWAY_TOKEN_SECRET must differ" in refusal(RuntimeSettings)


def test_overrides_by_field_name_are_validated_too(runtime_env: None) -> None:
    assert load(RuntimeSettings, {"pty_server_image": "a/b:1"}).pty_server_image == "a/b:1"
    with pytest.raises(ConfigurationError, match="uses :latest"):
        load(RuntimeSettings, {"pty_server_image": "a/b:latest"})


# --- NATS ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alone", ["NATS_USER", "NATS_PASSWORD"])
def test_a_user_needs_a_password_and_back(monkeypatch: pytest.MonkeyPatch, alone: str) -> None:
    monkeypatch.setenv(alone, "sandboxd")
    message = refusal(NatsSettings)
    assert "NATS_USER" in message
    assert "NATS_PASSWORD" in message


def test_user_and_password_together_and_the_password_stays_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_USER", "sandboxd")
    monkeypatch.setenv("NATS_PASSWORD", "s3cr3t-value")
    nats = load(NatsSettings)
    assert nats.user == "sandboxd"
    assert nats.password is not None
    assert nats.password.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(nats)
    assert "s3cr3t-value" not in str(nats.model_dump())


def test_a_client_certificate_needs_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_TLS_CERT", "/etc/nats/tls.crt")
    message = refusal(NatsSettings)
    assert "NATS_TLS_CERT" in message
    assert "NATS_TLS_KEY" in message


@pytest.mark.parametrize("url", ["", " ", " , "])
def test_a_nats_url_that_names_no_server_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """Accepted, it made ``sandboxd run`` retry forever: "cannot connect to NATS at : NoServersError"."""
    monkeypatch.setenv("NATS_URL", url)
    assert refusal(NatsSettings).startswith("invalid configuration: NATS_URL names no server")


def test_a_value_given_by_field_name_is_named_by_its_variable() -> None:
    """A command's flag (``--server ""``) or a NATS context gives values by field name: still named NATS_*."""
    with pytest.raises(ConfigurationError) as refused:
        load(NatsSettings, {"url": ",", "inbox_prefix": "my inbox"})
    assert refused.value.message == (
        "invalid configuration: NATS_URL names no server: set one or more URLs, comma-separated, "
        "e.g. nats://127.0.0.1:4222; NATS_INBOX_PREFIX must be subject tokens (letters, digits, _ $ -) joined by dots"
    )


# --- topology and worker ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "variable", "value", "words"),
    [
        (TopologySettings, "SANDBOXD_STREAM_REPLICAS", "0", "greater than or equal to 1"),
        (TopologySettings, "SANDBOXD_STREAM_REPLICAS", "7", "less than or equal to 5"),
        (TopologySettings, "SANDBOXD_MAX_DELIVER", "1", "greater than or equal to 2"),
        (WorkerSettings, "SANDBOXD_CONCURRENCY", "many", "valid integer"),
        (WorkerSettings, "SANDBOXD_RESYNC_SECONDS", "0", "greater than 0"),
        (ApplierSettings, "SANDBOXD_APPLIER", "helm", "'kubernetes', 'gitops' or 'directory'"),
    ],
)
def test_a_bad_number_or_choice_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, group: type[Group], variable: str, value: str, words: str
) -> None:
    monkeypatch.setenv(variable, value)
    message = refusal(group)
    assert message.startswith(f"invalid configuration: {variable} ")
    assert words in message


def test_the_duplicate_window_must_fit_the_retention(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOXD_EVENTS_MAX_AGE_SECONDS", "60")
    message = refusal(TopologySettings)
    assert "SANDBOXD_DUPLICATE_WINDOW_SECONDS" in message
    assert "SANDBOXD_EVENTS_MAX_AGE_SECONDS" in message


def test_a_first_retry_delay_above_the_cap_is_refused_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOXD_RETRY_BASE_SECONDS", "500")  # the cap defaults to 300
    assert refusal(WorkerSettings) == (
        "invalid configuration: SANDBOXD_RETRY_BASE_SECONDS (500) must not exceed SANDBOXD_RETRY_CAP_SECONDS (300)"
    )
    monkeypatch.setenv("SANDBOXD_RETRY_CAP_SECONDS", "500")
    assert load(WorkerSettings).retry_base_s == load(WorkerSettings).retry_cap_s == 500


def test_settings_are_frozen(runtime_env: None) -> None:
    runtime = load(RuntimeSettings)
    with pytest.raises(ValidationError):
        runtime.pty_server_image = "a/b:2"  # type: ignore[misc]


def test_the_kubernetes_request_timeout_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ApplierSettings().kube_request_timeout_s == 30.0
    monkeypatch.setenv("SANDBOXD_KUBE_REQUEST_TIMEOUT_SECONDS", "7.5")
    assert ApplierSettings().kube_request_timeout_s == 7.5
    monkeypatch.setenv("SANDBOXD_KUBE_REQUEST_TIMEOUT_SECONDS", "0")
    assert refusal(ApplierSettings).startswith("invalid configuration: SANDBOXD_KUBE_REQUEST_TIMEOUT_SECONDS ")


def test_status_retention_outlives_every_redelivery() -> None:
    """A tombstone gone before the last redelivery of its events would let that redelivery re-create it."""
    with pytest.raises(ValidationError, match="SANDBOXD_STATUS_RETENTION_SECONDS"):
        TopologySettings(status_retention_s=60.0, ack_wait_s=30.0, max_deliver=50)
    assert TopologySettings().status_retention_s >= TopologySettings().ack_wait_s * TopologySettings().max_deliver


def test_status_retention_outlives_retries_backed_off_to_the_cap(runtime_env: None) -> None:
    with pytest.raises(ConfigurationError, match="SANDBOXD_RETRY_CAP_SECONDS"):
        Settings(
            runtime=load(RuntimeSettings),
            nats=NatsSettings(),
            topology=TopologySettings(status_retention_s=3600.0),  # 50 x 30 s fits, 50 x 300 s does not
            worker=WorkerSettings(),
            applier=ApplierSettings(),
        )


def test_on_a_cluster_an_events_retries_outlast_a_leader_election(runtime_env: None) -> None:
    """At R3 a retry budget of a few seconds dead-letters good events while a stream elects its leader (4-9 s):
    refused at start-up, naming what to raise; the same budget at R1 and the defaults at R3 are fine."""

    def settings(replicas: int, worker: WorkerSettings, max_deliver: int = 6) -> Settings:
        return Settings(
            runtime=load(RuntimeSettings),
            nats=NatsSettings(),
            topology=TopologySettings(replicas=replicas, max_deliver=max_deliver),
            worker=worker,
            applier=ApplierSettings(),
        )

    hasty = WorkerSettings(retry_base_s=0.2, retry_cap_s=2.0)  # 6 deliveries span 2.5 s at the least
    with pytest.raises(ConfigurationError, match=r"SANDBOXD_MAX_DELIVER \(6\).*only 2\.5 s; at least 30 s"):
        settings(3, hasty)
    settings(1, hasty)
    with pytest.raises(ConfigurationError, match=r"only 15\.5 s"):
        settings(3, WorkerSettings())  # the default delays, but 6 deliveries: 0.5 + 1 + 2 + 4 + 8 s at the least
    settings(3, WorkerSettings(), max_deliver=TopologySettings.model_fields["max_deliver"].default)


def test_the_retention_refusal_states_the_rule_operations_md_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOXD_STATUS_RETENTION_SECONDS", "10")
    message = refusal(TopologySettings)
    assert "SANDBOXD_MAX_DELIVER x max(SANDBOXD_ACK_WAIT_SECONDS, SANDBOXD_RETRY_CAP_SECONDS)" in message
    assert "(10)" in message and "1500" in message


def test_every_invalid_setting_is_named_at_once(runtime_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOXD_CONCURRENCY", "-3")
    monkeypatch.setenv("SANDBOXD_ACK_WAIT_SECONDS", "nan")
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    message = refused.value.message
    assert "SANDBOXD_CONCURRENCY" in message and "SANDBOXD_ACK_WAIT_SECONDS" in message
    assert message.count("invalid configuration") == 1


def test_the_scaler_names_every_invalid_setting_at_once_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOXD_CONCURRENCY", "-3")
    monkeypatch.setenv("SANDBOXD_ACK_WAIT_SECONDS", "nan")
    with pytest.raises(ConfigurationError) as refused:
        ScalerConfig.from_environment()
    message = refused.value.message
    assert "SANDBOXD_CONCURRENCY" in message and "SANDBOXD_ACK_WAIT_SECONDS" in message
    assert message.count("invalid configuration") == 1
