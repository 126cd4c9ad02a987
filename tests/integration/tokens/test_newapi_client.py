"""``NewApiBridge`` against a real HTTP bridge on 127.0.0.1 (upstream §8.2 and its tests, §9.6-9.7)."""

from __future__ import annotations

import socket

import pytest
from pydantic import SecretStr

from sandboxd.adapters.newapi import NewApiBridge
from sandboxd.errors import TokenMintFailed
from sandboxd.reconcile.tokens import MintRequest

from .bridge import ADMIN, Bridge, serving

pytestmark = pytest.mark.anyio

REQUEST = MintRequest(
    org_id="acme",
    user_id="ceo@acme.com",
    sandbox_id="sb-0099",
    allowed_channels=("qwen",),
    capabilities=("gitea.repo.list", "k8s.read.get"),
)


async def test_a_mint_posts_upstreams_headers_and_body_and_parses_the_token() -> None:
    async with serving(Bridge()) as bridge:
        client = NewApiBridge(bridge.url + "/", SecretStr(ADMIN))
        try:
            minted = await client.mint(REQUEST)
        finally:
            await client.aclose()
    (seen,) = bridge.seen
    assert (seen.method, seen.path) == ("POST", "/admin/tokens/sandbox")
    assert seen.headers["Authorization"] == f"Bearer {ADMIN}"
    assert seen.headers["X-Catalyst-Tool"] == "sandbox-controller"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Accept"] == "application/json"
    assert seen.body == {
        "org_id": "acme",
        "user_id": "ceo@acme.com",
        "sandbox_id": "sb-0099",
        "allowed_channels": ["qwen"],
        "capabilities": ["gitea.repo.list", "k8s.read.get"],
    }
    assert minted.token.get_secret_value() == "jwt-int-1"
    assert "jwt-int-1" not in repr(minted)
    assert minted.expires_at.tzinfo is not None


async def test_no_capabilities_leaves_the_field_out() -> None:
    async with serving(Bridge()) as bridge:
        client = NewApiBridge(bridge.url, SecretStr(ADMIN))
        try:
            await client.mint(MintRequest("acme", "ceo@acme.com", "sb-1", ("qwen",), ()))
        finally:
            await client.aclose()
    assert bridge.seen[0].body is not None
    assert "capabilities" not in bridge.seen[0].body


async def test_a_wrong_admin_secret_is_token_mint_failed_with_401_and_never_the_secret() -> None:
    async with serving(Bridge()) as bridge:
        client = NewApiBridge(bridge.url, SecretStr("wrong-admin-bytes"))
        try:
            with pytest.raises(TokenMintFailed) as caught:
                await client.mint(REQUEST)
        finally:
            await client.aclose()
    assert caught.value.reason == "TokenMintFailed"
    assert "status 401" in caught.value.message
    assert "invalid admin credentials" in caught.value.message
    assert "wrong-admin-bytes" not in caught.value.message
    assert len(bridge.seen) == 1


async def test_an_unreachable_bridge_is_token_mint_failed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    client = NewApiBridge(f"http://127.0.0.1:{port}", SecretStr(ADMIN), timeout_s=5)
    try:
        with pytest.raises(TokenMintFailed) as caught:
            await client.mint(REQUEST)
    finally:
        await client.aclose()
    assert caught.value.message.startswith(f"newapi: POST http://127.0.0.1:{port}/admin/tokens/sandbox: ")
    assert ADMIN not in caught.value.message


@pytest.mark.parametrize(
    "request_",
    [
        MintRequest(" ", "u@a.com", "sb", ("qwen",), ()),
        MintRequest("acme", "", "sb", ("qwen",), ()),
        MintRequest("acme", "u@a.com", "", ("qwen",), ()),
        MintRequest("acme", "u@a.com", "sb", (" ",), ()),
    ],
)
async def test_an_incomplete_request_is_refused_before_any_call(request_: MintRequest) -> None:
    async with serving(Bridge()) as bridge:
        client = NewApiBridge(bridge.url, SecretStr(ADMIN))
        try:
            with pytest.raises(TokenMintFailed):
                await client.mint(request_)
        finally:
            await client.aclose()
    assert bridge.seen == []


def test_a_blank_base_or_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="base URL"):
        NewApiBridge(" ", SecretStr(ADMIN))
    with pytest.raises(ValueError, match="admin secret"):
        NewApiBridge("http://127.0.0.1:1", SecretStr(" "))


async def test_revoke_deletes_the_sandboxs_tokens_and_says_when_the_bridge_cannot() -> None:
    async with serving(Bridge()) as bridge:
        client = NewApiBridge(bridge.url, SecretStr(ADMIN))
        try:
            assert await client.revoke("sb-0099") is True
            bridge.revoke_supported = False
            assert await client.revoke("sb-0099") is False
        finally:
            await client.aclose()
    assert [(s.method, s.path) for s in bridge.seen] == [("DELETE", "/admin/tokens/sandbox/sb-0099")] * 2
