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

from typing import Final

from sandboxd.adapters.kubernetes.client import api_client, load_configuration
from sandboxd.adapters.kubernetes.resources import STATEFUL_SET
from sandboxd.adapters.kubernetes.transport import KubeTransport
from sandboxd.settings.service import ApplierSettings

FIELD_MANAGER: Final = "sandboxd-scaler"


class StatefulSetScaler:
    """``reconcile.ports.ScaleTarget`` on a ``KubeTransport`` (which translates every failure, and answers None
    for a 404)."""

    def __init__(self, transport: KubeTransport, *, field_manager: str = FIELD_MANAGER) -> None:
        self._transport = transport
        self._field_manager = field_manager

    @classmethod
    async def connect(cls, settings: ApplierSettings, *, field_manager: str = FIELD_MANAGER) -> StatefulSetScaler:
        """A scaler for the cluster ``settings`` name (``KUBECONFIG`` and context, or the pod's account), once
        its API server answers ``GET /version`` (``ApplyUnavailable`` while it does not: the caller retries)."""
        configuration = await load_configuration(settings)
        transport = KubeTransport(
            api_client(configuration, connections=16), request_timeout_s=settings.kube_request_timeout_s
        )
        scaler = cls(transport, field_manager=field_manager)
        try:
            await transport.get("/version")
        except BaseException:
            await scaler.aclose()
            raise
        return scaler

    async def scale(self, *, namespace: str, name: str, replicas: int) -> int | None:
        path = f"{STATEFUL_SET.item(name, namespace)}/scale"
        current = await self._transport.get(path)
        if current is None:
            return None
        previous = int((current.get("spec") or {}).get("replicas") or 0)
        if previous == replicas:
            return previous
        body = {"spec": {"replicas": replicas}}
        patched = await self._transport.patch(path, body, field_manager=self._field_manager)
        return None if patched is None else previous

    async def aclose(self) -> None:
        await self._transport.aclose()
