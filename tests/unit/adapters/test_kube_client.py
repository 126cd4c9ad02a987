"""The Kubernetes client's session: proxy variables are honoured when they name a proxy for the API server."""

from __future__ import annotations

import pytest
from kubernetes_asyncio.client import Configuration

from sandboxd.adapters.kubernetes.client import api_client

pytestmark = pytest.mark.anyio

SERVER = "https://10.0.0.1:6443"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


async def trusts_environment() -> bool:
    configuration = Configuration(host=SERVER)
    client = api_client(configuration, connections=2)
    try:
        return bool(client.rest_client.pool_manager.trust_env)
    finally:
        await client.close()


async def test_without_proxy_variables_the_session_does_not_consult_the_environment() -> None:
    assert not await trusts_environment()


async def test_a_proxy_for_the_api_server_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert await trusts_environment()


async def test_an_api_server_the_no_proxy_list_names_goes_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,10.0.0.1")
    assert not await trusts_environment()


async def test_a_proxy_for_plain_http_only_leaves_an_https_server_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert not await trusts_environment()
