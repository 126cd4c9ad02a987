"""The token Secret in the cluster: where the token writer puts each sandbox's LLM-gateway token.

The renderer emits the Secret (``SANDBOX_LLM_GATEWAY_TOKEN_SECRET``) with no data, under the reconciler's field
manager; the writer adds exactly three fields to it with server-side apply under its own field manager
(``sandboxd-token-writer``): ``data[<SANDBOX_LLM_GATEWAY_TOKEN_KEY>]`` and the annotations
``openova.io/llm-gateway-token-revision`` and ``openova.io/sandbox-token-expires-at``. Neither manager owns the
other's fields, so a reconcile never empties the Secret and a rotation never touches what the renderer wrote.

``read`` asks for the Secret's metadata only (``PartialObjectMetadata``): the writer never reads a token back.
Errors are ``sandboxd.errors`` (``errors.translated``), with the token replaced by ``<redacted>`` should the
server ever quote it.

What it deliberately does not do: create the namespace or the Secret's labels (the renderer's Secret must be
there first: ``read`` answers None until it is), or delete the Secret (the applier's delete does).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Final

from pydantic import SecretStr

from sandboxd.adapters.kubernetes.client import api_client, load_configuration
from sandboxd.adapters.kubernetes.transport import KubeTransport
from sandboxd.reconcile.tokens import SecretView
from sandboxd.render import labels
from sandboxd.settings.service import ApplierSettings

FIELD_MANAGER: Final = "sandboxd-token-writer"
EXPIRES_AT: Final = "openova.io/sandbox-token-expires-at"
SECRETS: Final = "/api/v1/namespaces/{namespace}/secrets/{name}"


class KubeTokenSecrets:
    """The token Secret of every sandbox namespace, through one ``KubeTransport``."""

    def __init__(self, transport: KubeTransport, *, secret_name: str, key: str) -> None:
        self._transport = transport
        self._name = secret_name
        self._key = key

    @classmethod
    async def from_settings(cls, settings: ApplierSettings, *, secret_name: str, key: str) -> KubeTokenSecrets:
        """For the cluster ``settings`` name (``KUBECONFIG`` or the pod's service account)."""
        configuration = await load_configuration(settings)
        transport = KubeTransport(
            api_client(configuration, connections=4), request_timeout_s=settings.kube_request_timeout_s
        )
        return cls(transport, secret_name=secret_name, key=key)

    def _path(self, namespace: str) -> str:
        return SECRETS.format(namespace=namespace, name=self._name)

    async def read(self, namespace: str) -> SecretView | None:
        found = await self._transport.get(self._path(namespace), metadata_only=True)
        if found is None:
            return None
        annotations = (found.get("metadata") or {}).get("annotations") or {}
        raw = str(annotations.get(labels.TOKEN_REVISION, ""))
        return SecretView(revision=int(raw) if raw.isdigit() else None)

    async def write(self, namespace: str, *, token: SecretStr, revision: int, expires_at: datetime) -> None:
        value = token.get_secret_value()
        encoded = base64.b64encode(value.encode()).decode()
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self._name,
                "namespace": namespace,
                "annotations": {
                    labels.TOKEN_REVISION: str(revision),
                    EXPIRES_AT: expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            },
            "data": {self._key: encoded},
        }
        await self._transport.apply(
            self._path(namespace), body, field_manager=FIELD_MANAGER, secret_values=(value, encoded)
        )

    async def aclose(self) -> None:
        await self._transport.aclose()
