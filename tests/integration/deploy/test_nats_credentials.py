"""Each process of the chart and of docker-compose connects to NATS as its own role of deploy/nats/accounts.conf.

The roles themselves are proved on a real server in tests/integration/security; here, that the deployment files
hand each process the user and inbox prefix that role has: the chart from Secrets only (the scaler's own, or the
reconciler's when it has none), compose from the passwords compose requires.
"""

from __future__ import annotations

import re
from typing import Any, Final

import pytest
import yaml

from .charts import FULL_VALUES, REPO_ROOT, Helm, container, env_of, one

ACCOUNTS: Final = REPO_ROOT / "deploy" / "nats" / "accounts.conf"
COMPOSE: Final = REPO_ROOT / "docker-compose.yml"
OWN_SECRETS: Final = {
    "nats.existingSecret": "sandboxd-nats",
    "nats.keys.user": "user",
    "nats.keys.password": "password",
    "nats.scaler.existingSecret": "sandboxd-nats-scaler",
    "nats.scaler.keys.user": "user",
    "nats.scaler.keys.password": "password",
}


def granted_inboxes() -> dict[str, str]:
    """user → the one inbox prefix accounts.conf lets it subscribe to."""
    text = ACCOUNTS.read_text()
    users = re.findall(r'user: (\S+)\n.*?subscribe: \{allow: \["(\S+)\.>"\]\}', text, flags=re.DOTALL)
    return dict(users)


def secret_ref(env: dict[str, dict[str, Any]], name: str) -> tuple[str, str]:
    ref = env[name]["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def test_accounts_conf_gives_each_role_its_own_inbox() -> None:
    inboxes = granted_inboxes()
    assert set(inboxes) == {
        "sandboxd-reconciler",
        "sandboxd-scaler",
        "sandboxd-tokens",
        "sandbox-publisher",
        "sandbox-activity",
        "sandbox-console",
        "sandboxd-admin",
    }
    assert len(set(inboxes.values())) == len(inboxes)


def test_compose_connects_each_service_as_its_role() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    inboxes = granted_inboxes()
    for name, user in (
        ("reconciler", "sandboxd-reconciler"),
        ("reconciler-k3s", "sandboxd-reconciler"),
        ("scaler", "sandboxd-scaler"),
    ):
        env = services[name]["environment"]
        assert env["NATS_USER"] == user, name
        assert env["NATS_INBOX_PREFIX"] == inboxes[user], name
        variable = f"SANDBOXD_NATS_{user.removeprefix('sandboxd-').upper()}_PASSWORD"
        assert env["NATS_PASSWORD"].startswith(f"${{{variable}:?"), name  # required, never a default
    nats = services["nats"]
    assert "./deploy/nats:/etc/nats/sandboxd:ro" in nats["volumes"]
    assert nats["command"][:2] == ["-c", "/etc/nats/sandboxd/nats-server.conf"]
    for variable, value in nats["environment"].items():
        assert variable in ACCOUNTS.read_text() and value.startswith(f"${{{variable}:?"), variable


def test_the_chart_defaults_to_the_roles_inboxes(helm: Helm) -> None:
    objects = helm.template()
    inboxes = granted_inboxes()
    reconciler, scaler = (env_of(one(objects, "Deployment", c)) for c in ("reconciler", "scaler"))
    assert reconciler["NATS_INBOX_PREFIX"]["value"] == inboxes["sandboxd-reconciler"]
    # No credentials of its own: the scaler connects as the reconciler, so with the reconciler's inbox.
    assert scaler["NATS_INBOX_PREFIX"]["value"] == inboxes["sandboxd-reconciler"]
    own = env_of(one(helm.template(set_values=OWN_SECRETS), "Deployment", "scaler"))
    assert own["NATS_INBOX_PREFIX"]["value"] == inboxes["sandboxd-scaler"]


def test_each_process_gets_its_own_secret(helm: Helm) -> None:
    objects = helm.template(set_values=OWN_SECRETS)
    reconciler, scaler = (env_of(one(objects, "Deployment", c)) for c in ("reconciler", "scaler"))
    assert secret_ref(reconciler, "NATS_USER") == ("sandboxd-nats", "user")
    assert secret_ref(reconciler, "NATS_PASSWORD") == ("sandboxd-nats", "password")
    assert secret_ref(scaler, "NATS_USER") == ("sandboxd-nats-scaler", "user")
    assert secret_ref(scaler, "NATS_PASSWORD") == ("sandboxd-nats-scaler", "password")
    shared = env_of(one(helm.template(set_values=dict(list(OWN_SECRETS.items())[:3])), "Deployment", "scaler"))
    assert secret_ref(shared, "NATS_USER") == ("sandboxd-nats", "user")  # none of its own: the reconciler's


def test_a_creds_file_is_mounted_from_each_process_secret(helm: Helm) -> None:
    objects = helm.template(
        set_values={
            "nats.existingSecret": "sandboxd-nats",
            "nats.keys.creds": "reconciler.creds",
            "nats.scaler.existingSecret": "sandboxd-nats-scaler",
            "nats.scaler.keys.creds": "scaler.creds",
        }
    )
    for component, secret, key in (
        ("reconciler", "sandboxd-nats", "reconciler.creds"),
        ("scaler", "sandboxd-nats-scaler", "scaler.creds"),
    ):
        deployment = one(objects, "Deployment", component)
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["nats-creds"]["secret"]["secretName"] == secret
        assert volumes["nats-creds"]["secret"]["items"] == [{"key": key, "path": "nats.creds"}]
        assert env_of(deployment)["NATS_CREDS"]["value"] == "/etc/sandboxd/nats/nats.creds"
        mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
        assert mounts["nats-creds"]["readOnly"] is True


@pytest.mark.parametrize(
    ("set_values", "expected"),
    [
        ({"nats.scaler.keys.user": "user", "nats.scaler.keys.password": "p"}, "nats.scaler.existingSecret is empty"),
        ({"nats.scaler.existingSecret": "s", "nats.scaler.keys.user": "user"}, "must be set together"),
        ({"nats.inboxPrefix": "_INBOX.>"}, "/nats/inboxPrefix"),
        ({"nats.scaler.inboxPrefix": "my inbox"}, "/nats/scaler/inboxPrefix"),
    ],
)
def test_scaler_credentials_are_refused_as_the_reconcilers_are(
    helm: Helm, set_values: dict[str, Any], expected: str
) -> None:
    assert expected in helm.refusal(set_values=set_values)


def test_the_token_writer_connects_as_its_own_user_and_serves_its_probes(helm: Helm) -> None:
    external = {"tokens.writer": "external", **dict(list(OWN_SECRETS.items())[:3])}
    shared = one(helm.template(values=(FULL_VALUES,), set_values=external), "Deployment", "tokens")
    inboxes = granted_inboxes()
    # No credentials of its own: the writer connects as the reconciler, so with the reconciler's inbox.
    assert secret_ref(env_of(shared), "NATS_USER") == ("sandboxd-nats", "user")
    assert env_of(shared)["NATS_INBOX_PREFIX"]["value"] == inboxes["sandboxd-reconciler"]
    own_values = {
        **external,
        "nats.tokens.existingSecret": "sandboxd-nats-tokens",
        "nats.tokens.keys.user": "user",
        "nats.tokens.keys.password": "password",
    }
    own = one(helm.template(values=(FULL_VALUES,), set_values=own_values), "Deployment", "tokens")
    env = env_of(own)
    assert secret_ref(env, "NATS_USER") == ("sandboxd-nats-tokens", "user")
    assert secret_ref(env, "NATS_PASSWORD") == ("sandboxd-nats-tokens", "password")
    assert env["NATS_INBOX_PREFIX"]["value"] == inboxes["sandboxd-tokens"]
    main = container(own)
    assert env["SANDBOXD_TOKENS_HEALTH_PORT"]["value"] == "8082"
    assert main["ports"] == [{"name": "metrics", "containerPort": 8082, "protocol": "TCP"}]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
