"""The sibling scaler's Kubernetes side: set a StatefulSet's replicas through its ``scale`` subresource.

``StatefulSetScaler`` is ``reconcile.ports.ScaleTarget``: it reads ``/scale`` and, when the count differs,
merge-patches ``{"spec": {"replicas": n}}`` with its own field manager (``sandboxd-scaler``). The reconciler's
server-side apply (field manager ``sandboxd``, ``force``) renders the same count and takes the field back on its
next pass without a conflict, so the two never fight over it. A missing StatefulSet (or namespace) is
``None``: nothing to scale. Other failures are translated by ``adapters.kubernetes.errors`` (retryable 409,
429, 5xx and unreachable; permanent 400, 403, 422).

What it does not do: decide the count (``reconcile.scaling.execute_scale`` does), choose the workload (the
sandbox's own pty-server, ``reconcile.scaling.target_of``; never a name a command carries), or touch anything but
``spec.replicas``. Its RBAC is exactly the two requests it makes: ``statefulsets/scale`` get and patch, in sandbox
namespaces only (docs/security.md); ``connect`` also reads ``/version``, which every account may
(``system:public-info-viewer``), to know the API server answers before the scaler reports ready.
"""

from __future__ import annotations

from typing import Any, Final

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from sandboxd.adapters.kubernetes.client import api_client, load_configuration
from sandboxd.adapters.kubernetes.errors import translated
from sandboxd.adapters.kubernetes.resources import STATEFUL_SET
from sandboxd.settings.service import ApplierSettings

MERGE_PATCH: Final = "application/merge-patch+json"
JSON: Final = "application/json"
FIELD_MANAGER: Final = "sandboxd-scaler"
_AUTH: Final = ["BearerToken"]
_OBJECT: Final = {200: "object", 201: "object"}


class StatefulSetScaler:
    def __init__(self, api: ApiClient, *, field_manager: str = FIELD_MANAGER, request_timeout_s: float = 30.0) -> None:
        self._api = api
        self._field_manager = field_manager
        self._timeout = request_timeout_s

    @classmethod
    async def connect(cls, settings: ApplierSettings, *, field_manager: str = FIELD_MANAGER) -> StatefulSetScaler:
        """A scaler for the cluster ``settings`` name (``KUBECONFIG`` and context, or the pod's account), once
        its API server answers ``GET /version`` (``ApplyUnavailable`` while it does not: the caller retries)."""
        configuration = await load_configuration(settings)
        scaler = cls(
            api_client(configuration, connections=16),
            field_manager=field_manager,
            request_timeout_s=settings.kube_request_timeout_s,
        )
        try:
            await scaler._call("GET", "/version")
        except BaseException:
            await scaler.aclose()
            raise
        return scaler

    async def scale(self, *, namespace: str, name: str, replicas: int) -> int | None:
        path = f"{STATEFUL_SET.item(name, namespace)}/scale"
        current = await self._call("GET", path)
        if current is None:
            return None
        previous = int((current.get("spec") or {}).get("replicas") or 0)
        if previous == replicas:
            return previous
        body = {"spec": {"replicas": replicas}}
        patched = await self._call("PATCH", path, body=body, query=[("fieldManager", self._field_manager)])
        return None if patched is None else previous

    async def aclose(self) -> None:
        await self._api.close()

    async def _call(
        self, method: str, path: str, *, body: dict[str, Any] | None = None, query: list[tuple[str, str]] | None = None
    ) -> dict[str, Any] | None:
        """One request; the object answered, or None for a 404 (the StatefulSet or its namespace is not there)."""
        content_type = MERGE_PATCH if method == "PATCH" else JSON
        with translated(f"{method} {path}"):
            try:
                result = await self._api.call_api(
                    path,
                    method,
                    query_params=query or [],
                    header_params={"Accept": JSON, "Content-Type": content_type},
                    body=body,
                    auth_settings=_AUTH,
                    response_types_map=_OBJECT,
                    _return_http_data_only=True,
                    _request_timeout=self._timeout,
                )
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
        return result if isinstance(result, dict) else {}
