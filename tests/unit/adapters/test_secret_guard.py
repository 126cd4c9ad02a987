"""The guard that keeps Secret values out of the GitOps repository."""

from __future__ import annotations

import pytest

from sandboxd.adapters.gitops.secret_guard import refuse_secret_values
from sandboxd.errors import ApplyRejected
from sandboxd.render import to_yaml


def _secret(**body: object) -> bytes:
    return to_yaml({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tokens"}, **body}).encode()


@pytest.mark.parametrize(
    "body",
    [{}, {"stringData": {"placeholder": ""}}, {"data": {"placeholder": ""}}, {"data": {}}, {"type": "Opaque"}],
)
def test_secrets_without_values_pass(body: dict[str, object]) -> None:
    refuse_secret_values({"secret.yaml": _secret(**body), "cm.yaml": b"kind: ConfigMap\ndata:\n  a: b\n"})


@pytest.mark.parametrize("field", ["data", "stringData"])
def test_a_secret_value_is_refused_naming_the_key_not_the_value(field: str) -> None:
    with pytest.raises(ApplyRejected) as refused:
        refuse_secret_values({"secret.yaml": _secret(**{field: {"token": "c2stbGl2ZQ=="}})})
    assert "token" in str(refused.value)
    assert "secret.yaml" in str(refused.value)
    assert "c2stbGl2ZQ==" not in str(refused.value)


def test_a_placeholder_with_a_value_is_refused() -> None:
    with pytest.raises(ApplyRejected):
        refuse_secret_values({"secret.yaml": _secret(stringData={"placeholder": "x"})})


def test_secrets_inside_a_list_are_checked() -> None:
    listed = b"apiVersion: v1\nkind: List\nitems:\n- kind: Secret\n  metadata: {name: s}\n  data: {k: dg==}\n"
    with pytest.raises(ApplyRejected):
        refuse_secret_values({"list.yaml": listed})


def test_a_file_that_does_not_parse_is_refused() -> None:
    with pytest.raises(ApplyRejected, match="not valid YAML"):
        refuse_secret_values({"broken.yaml": b"kind: Secret\ndata: [unclosed\n"})
