"""One raw Kubernetes API call through a kubernetes_asyncio ``ApiClient``: what tests use to read and write
objects as themselves (not through the applier), with any identity the client carries."""

from __future__ import annotations

from typing import Any


async def call(
    api: Any, method: str, path: str, body: Any = None, *, content_type: str = "application/json", **query: str
) -> Any:
    """``method`` on ``path`` with ``query`` parameters; the decoded JSON body, or an ``ApiException``."""
    return await api.call_api(
        path,
        method,
        query_params=list(query.items()),
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
        response_types_map={200: "object", 201: "object"},
        _return_http_data_only=True,
    )
