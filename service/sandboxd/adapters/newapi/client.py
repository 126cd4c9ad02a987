"""The NewAPI bridge client: ``POST <base>/admin/tokens/sandbox`` to mint, ``DELETE .../<sandbox id>`` to revoke.

The wire contract is upstream's (§8.2): headers ``Content-Type``/``Accept: application/json``,
``Authorization: Bearer <NEWAPI_ADMIN_SECRET>`` and ``X-Catalyst-Tool: sandbox-controller``; body ``org_id``,
``user_id``, ``sandbox_id``, ``allowed_channels`` and ``capabilities`` (left out when empty); only a 200 with
``{"token", "expires_at"}`` is a token. Client-side validation refuses a blank org, user or sandbox id, or no
channels, before any request. Revoke is the design's operator path (upstream never called it): 200/204 revoked,
404 nothing to revoke, 405/501 the bridge does not support it (``False``).

This is the one place aiohttp and bridge failures become ``sandboxd.errors.TokenMintFailed``, with upstream's
message shapes (``newapi: POST <url>: status 401: <body, at most 512 bytes>``, ``newapi: POST <url>: <error>``).
Never in a message or a log: the admin secret or a token (a bridge that echoes either has it replaced by
``<redacted>``).

What it deliberately does not do: retry (the token writer schedules retries with backoff), or keep a token.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
from pydantic import SecretStr

from sandboxd.errors import TokenMintFailed
from sandboxd.reconcile.tokens import MintedToken, MintRequest

MINT_PATH: Final = "/admin/tokens/sandbox"
TOOL_HEADER: Final = "X-Catalyst-Tool"
TOOL: Final = "sandbox-controller"
BODY_LIMIT: Final = 512
REDACTED: Final = "<redacted>"
#: Revoke answers that mean "this bridge has no revoke endpoint".
UNSUPPORTED: Final = frozenset({405, 501})


class NewApiBridge:
    """One aiohttp session (opened on first use) against ``base_url``; ``aclose`` releases it."""

    def __init__(self, base_url: str, admin_secret: SecretStr, *, timeout_s: float = 60.0) -> None:
        base = base_url.strip().rstrip("/")
        if not base:
            raise ValueError("newapi: base URL is empty")
        if not admin_secret.get_secret_value().strip():
            raise ValueError("newapi: admin secret is empty")
        self.base_url = base
        self._secret = admin_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def mint(self, request: MintRequest) -> MintedToken:
        _validate(request)
        url = self.base_url + MINT_PATH
        body: dict[str, Any] = {
            "org_id": request.org_id,
            "user_id": request.user_id,
            "sandbox_id": request.sandbox_id,
            "allowed_channels": list(request.allowed_channels),
        }
        if request.capabilities:
            body["capabilities"] = list(request.capabilities)
        status, text = await self._call("POST", url, body)
        if status != 200:
            raise TokenMintFailed(f"newapi: POST {url}: status {status}: {self._scrub(text[:BODY_LIMIT])}")
        return _parse(text)

    async def revoke(self, sandbox_id: str) -> bool:
        """Revoke every token of ``sandbox_id``; False when the bridge does not support revoking."""
        url = f"{self.base_url}{MINT_PATH}/{sandbox_id}"
        status, text = await self._call("DELETE", url, None)
        if status in (200, 204, 404):
            return True
        if status in UNSUPPORTED:
            return False
        raise TokenMintFailed(
            f"newapi: DELETE {url}: status {status}: {self._scrub(text[:BODY_LIMIT])}", reason="TokenRevokeFailed"
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, url: str, body: dict[str, Any] | None) -> tuple[int, str]:
        headers = {
            "Accept": "application/json",
            "Authorization": f"Bearer {self._secret.get_secret_value()}",
            TOOL_HEADER: TOOL,
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(
                method, url, data=None if body is None else json.dumps(body), headers=headers
            ) as response:
                return response.status, await response.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            why = str(exc) or exc.__class__.__name__
            raise TokenMintFailed(f"newapi: {method} {url}: {self._scrub(why)}") from exc

    def _scrub(self, text: str) -> str:
        secret = self._secret.get_secret_value()
        return text.replace(secret, REDACTED) if secret else text


def _validate(request: MintRequest) -> None:
    for name in ("org_id", "user_id", "sandbox_id"):
        if not str(getattr(request, name)).strip():
            raise TokenMintFailed(f"newapi: mint request has no {name}")
    if not [c for c in request.allowed_channels if c.strip()]:
        raise TokenMintFailed("newapi: mint request has no allowed_channels")


def _parse(text: str) -> MintedToken:
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise TokenMintFailed("newapi: response is not JSON") from exc
    if not isinstance(payload, dict):
        raise TokenMintFailed("newapi: response is not a JSON object")
    token = payload.get("token")
    if not isinstance(token, str) or not token.strip():
        raise TokenMintFailed("newapi: response missing token")
    expires = payload.get("expires_at")
    try:
        expires_at = datetime.fromisoformat(str(expires).replace("Z", "+00:00")) if expires else None
    except ValueError:
        expires_at = None
    if expires_at is None or expires_at.year <= 1:
        raise TokenMintFailed("newapi: response missing expires_at")
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    return MintedToken(token=SecretStr(token), expires_at=expires_at.astimezone(UTC))
