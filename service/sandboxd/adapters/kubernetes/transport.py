"""The REST calls the applier, the watches and the scaler make, and nothing else: apply, create, get, patch,
list, delete, watch.

Every call goes to an explicit path (``resources``), so core kinds and the HTTPRoute CRD take one code path,
errors always raise (unlike the 36.1.0 DynamicClient, which returns them as ``Status`` objects), and every
failure is translated by ``errors.translated`` right here. Bodies are plain dicts; nothing is deserialised into
client models. The request goes straight to the ``ApiClient``'s REST client (its connection pool, TLS and proxy
settings) with the ``ApiClient``'s own headers and authorization (a token refreshed as the configuration says):
``ApiClient.call_api`` would also walk every body and answer through its model (de)serialiser, which does nothing
for plain JSON; with the per-request environment look-ups ``client`` turns off, that was half of the client's CPU
per apply (docs/benchmarks.md, 2026-12-03 evening).

- ``apply``: server-side apply, ``PATCH`` with ``application/apply-patch+yaml`` (the client JSON-encodes the dict,
  which is valid YAML), one ``fieldManager``, ``force=true``, ``fieldValidation=Strict``;
- ``list`` and ``watch`` can ask for metadata only (``PartialObjectMetadata``): the prune inventory and the
  deletion watches never receive a Secret's data;
- ``patch``: a JSON merge patch with a ``fieldManager`` (the scaler's ``spec.replicas`` on ``/scale``);
- ``get``, ``patch`` and ``delete`` answer None / None / False for 404, the only place a 404 is not an error.

What it deliberately does not do: retry, order, or know what a sandbox is.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncGenerator, Collection, Mapping, Sequence
from typing import Any, Final

import aiohttp
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from sandboxd.adapters.kubernetes.errors import from_status, translated

APPLY_PATCH: Final = "application/apply-patch+yaml"
MERGE_PATCH: Final = "application/merge-patch+json"
JSON: Final = "application/json"
METADATA_LIST: Final = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
METADATA: Final = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_AUTH: Final = ["BearerToken"]
#: Read timeout on top of the server-side watch timeout: the server closes first unless it is gone.
_WATCH_READ_GRACE_S: Final = 30.0

Object = dict[str, Any]


class KubeTransport:
    """REST calls on one ``ApiClient``; ``request_timeout_s`` bounds every call but a watch."""

    def __init__(self, api: ApiClient, *, request_timeout_s: float = 30.0) -> None:
        self.api = api
        self.request_timeout_s = request_timeout_s

    async def apply(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        field_manager: str,
        force: bool = True,
        dry_run: bool = False,
        secret_values: Collection[str] = (),
    ) -> Object:
        """Server-side apply ``body`` at ``path``; the object as stored (as it would be, with ``dry_run``)."""
        query = [("fieldManager", field_manager), ("fieldValidation", "Strict")]
        if force:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        return await self._call(
            "PATCH", path, query=query, body=dict(body), content_type=APPLY_PATCH, secret_values=secret_values
        )

    async def create(self, collection: str, body: Mapping[str, Any]) -> Object:
        """``POST`` ``body`` to ``collection``; the object answered (a review's verdict is in its ``status``)."""
        return await self._call("POST", collection, body=dict(body))

    async def get(self, path: str, *, metadata_only: bool = False) -> Object | None:
        """The object at ``path`` (its metadata only, e.g. a Secret without its data), or None when there is none."""
        try:
            return await self._call("GET", path, accept=METADATA if metadata_only else JSON, not_found_ok=True)
        except _NotFound:
            return None

    async def patch(self, path: str, body: Mapping[str, Any], *, field_manager: str) -> Object | None:
        """Merge-patch ``body`` into the object at ``path``; the object as stored, or None when there is none."""
        try:
            return await self._call(
                "PATCH",
                path,
                query=[("fieldManager", field_manager)],
                body=dict(body),
                content_type=MERGE_PATCH,
                not_found_ok=True,
            )
        except _NotFound:
            return None

    async def list(self, collection: str, *, label_selector: str, metadata_only: bool = False) -> Object:
        """The list object (``items`` and ``metadata.resourceVersion``) of ``collection`` matching the selector."""
        return await self._call(
            "GET",
            collection,
            query=[("labelSelector", label_selector)],
            accept=METADATA_LIST if metadata_only else JSON,
        )

    async def delete(self, path: str, *, propagation: str = "Background") -> bool:
        """Delete the object at ``path``; False when it was already gone."""
        try:
            await self._call("DELETE", path, query=[("propagationPolicy", propagation)], not_found_ok=True)
        except _NotFound:
            return False
        return True

    async def watch(
        self,
        collection: str,
        *,
        label_selector: str,
        resource_version: str,
        timeout_s: float,
        metadata_only: bool = False,
    ) -> AsyncGenerator[Object, None]:
        """The watch events (``{"type", "object"}``) after ``resource_version``, until the server ends the watch.

        The server ends it after ``timeout_s`` (jittered up to twice that, as client-go does, so many watches do
        not all reconnect at once). ``ERROR`` events are yielded as they come: the caller decides (a 410 means
        relist). Use it inside ``contextlib.aclosing`` so the connection is released when the caller stops early.
        """
        server_timeout = int(timeout_s * (1 + random.random()))  # jitter spreads reconnects
        query = [
            ("watch", "true"),
            ("labelSelector", label_selector),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(max(1, server_timeout))),
        ]
        request = f"WATCH {collection}"
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.request_timeout_s, sock_read=server_timeout + _WATCH_READ_GRACE_S
        )
        with translated(request):
            response = await self._send(
                "GET",
                collection,
                query=query,
                accept=METADATA if metadata_only else JSON,
                timeout=timeout,
                preload=False,
            )
        try:
            if response.status != 200:
                with translated(request):
                    body = await response.read()
                raise from_status(response.status, body, response.headers, request=request)
            while True:
                with translated(request):
                    line = await response.content.readline()
                if not line:
                    return
                event = json.loads(line)
                if isinstance(event, dict):
                    yield event
        finally:
            response.release()

    async def aclose(self) -> None:
        await self.api.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Object | None = None,
        content_type: str = JSON,
        accept: str = JSON,
        not_found_ok: bool = False,
        secret_values: Collection[str] = (),
    ) -> Object:
        request = f"{method} {path}"
        with translated(request, secret_values=secret_values):
            try:
                response = await self._send(
                    method,
                    path,
                    query=query,
                    accept=accept,
                    content_type=content_type,
                    body=body,
                    timeout=self.request_timeout_s,
                )
            except ApiException as exc:
                if not_found_ok and exc.status == 404:
                    raise _NotFound from exc  # not a library error: passes ``translated`` untouched
                raise
        try:
            result = json.loads(response.data) if response.data else {}
        except ValueError:  # not JSON: nothing the callers read
            return {}
        return result if isinstance(result, dict) else {}

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]],
        accept: str,
        timeout: float | aiohttp.ClientTimeout,
        content_type: str = JSON,
        body: Object | None = None,
        preload: bool = True,
    ) -> Any:
        """One request through the REST client: a non-2xx answer raises ``ApiException`` unless ``preload`` is off
        (then the aiohttp response comes back as it is, for a watch to stream)."""
        headers = {**self.api.default_headers, "Accept": accept, "Content-Type": content_type}
        params = list(query)
        await self.api.update_params_for_auth(headers, params, _AUTH)  # the bearer token, refreshed if it rotates
        rest: Any = self.api.rest_client  # its stubs say query_params is a dict; urlencode takes pairs as well
        return await rest.request(
            method,
            f"{self.api.configuration.host or ''}{path}",
            query_params=params,
            headers=headers,
            body=body,
            _preload_content=preload,
            _request_timeout=timeout,
        )


class _NotFound(Exception):
    """A 404 the caller asked to hear about (``get``, ``patch`` and ``delete``); never leaves this module."""
