"""Hand-built ``RenderedSandbox`` values for applier tests: every kind a sandbox has, one file per object.

The appliers only read manifests (kinds, names, filenames) and ``sandboxd.render.files``; building the values
by hand keeps their tests independent of the renderer's choices and lets a test vary one thing (an image tag,
a Secret value, a missing object).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandboxd.render.model import Manifest, RenderedSandbox

#: Kinds a retained delete keeps: the data, not access (mirrors ``sandboxd.render.retained``; written out so a
#: change shows here).
KEPT_KINDS = ("Namespace", "ResourceQuota", "PersistentVolumeClaim")


def _object(api_version: str, kind: str, name: str, namespace: str | None, **body: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["labels"] = {"app.kubernetes.io/managed-by": "sandboxd"}
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def sample_sandbox(
    owner_uid: str = "ceo-at-acme-com",
    *,
    image: str = "ghcr.io/example/pty-server:v1",
    secret_string_data: Mapping[str, str] | None = None,
    without: tuple[str, ...] = (),
    repos: tuple[str, ...] = ("acme-tools",),
) -> RenderedSandbox:
    """A sandbox of ``owner_uid``; ``image`` changes the StatefulSet, ``without`` drops files by name, ``repos``
    (slugs) are its volumes, ``pvc-repo-<slug>.yaml`` each."""
    ns = f"sandbox-{owner_uid}"
    objects: list[tuple[str, dict[str, Any]]] = [
        ("namespace.yaml", _object("v1", "Namespace", ns, None)),
        ("resourcequota.yaml", _object("v1", "ResourceQuota", "sandbox-quota", ns, spec={"hard": {"pods": "4"}})),
        *(
            (
                f"pvc-repo-{slug}.yaml",
                _object(
                    "v1",
                    "PersistentVolumeClaim",
                    f"repo-{slug}",
                    ns,
                    spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}},
                ),
            )
            for slug in repos
        ),
        ("serviceaccount.yaml", _object("v1", "ServiceAccount", "pty-server", ns)),
        ("role.yaml", _object("rbac.authorization.k8s.io/v1", "Role", "pty-server", ns, rules=[])),
        (
            "rolebinding.yaml",
            _object(
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                "pty-server",
                ns,
                roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pty-server"},
                subjects=[{"kind": "ServiceAccount", "name": "pty-server", "namespace": ns}],
            ),
        ),
        (
            "secret-sandbox-tokens.yaml",
            _object(
                "v1",
                "Secret",
                "sandbox-tokens",
                ns,
                type="Opaque",
                stringData=dict(secret_string_data) if secret_string_data is not None else {"placeholder": ""},
            ),
        ),
        ("configmap-mcp.yaml", _object("v1", "ConfigMap", "mcp", ns, data={"mcp.json": "{}"})),
        (
            "statefulset.yaml",
            _object(
                "apps/v1",
                "StatefulSet",
                "pty-server",
                ns,
                spec={"replicas": 1, "template": {"spec": {"containers": [{"name": "pty", "image": image}]}}},
            ),
        ),
        ("service.yaml", _object("v1", "Service", "pty-server", ns, spec={"ports": [{"port": 7681}]})),
        (
            "httproute.yaml",
            _object("gateway.networking.k8s.io/v1", "HTTPRoute", "sessions", ns, spec={"hostnames": ["x.example"]}),
        ),
    ]
    manifests = tuple(Manifest(filename=f, body=b) for f, b in objects if f not in without)
    return RenderedSandbox(
        sandbox_id=f"sandbox-{owner_uid}",
        owner_uid=owner_uid,
        namespace=ns,
        endpoint=f"https://x.example/sessions/{owner_uid}/",
        replicas=1,
        manifests=manifests,
    )


def kept_files(sandbox: RenderedSandbox) -> set[str]:
    """The file names of the objects a retained delete keeps."""
    return {m.filename for m in sandbox.manifests if m.kind in KEPT_KINDS}
