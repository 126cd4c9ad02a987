"""Where each kind the renderer emits lives in the Kubernetes REST API, and the label selectors the adapter uses.

Exactly the kinds ``sandboxd.render`` emits, in apply order (the Namespace first)::

    Namespace  ResourceQuota  ServiceAccount  Role  RoleBinding  NetworkPolicy (networking.k8s.io/v1)  Secret
    PersistentVolumeClaim  ConfigMap  Deployment  Service  StatefulSet  HTTPRoute (gateway.networking.k8s.io/v1)

A fixed table instead of discovery: every path is known before the first request, a kind the renderer starts to
emit without being added here is refused at once (``ApplyRejected``, before anything is written), and no
discovery round trip or cache is needed.

What it deliberately does not do: talk to the API server (``transport``), or decide what is kept by a retained
delete (``sandboxd.render.retained``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sandboxd.errors import ApplyRejected
from sandboxd.naming import label_value
from sandboxd.render import components, labels
from sandboxd.render.model import Manifest


@dataclass(frozen=True, slots=True)
class Resource:
    """One kind: its ``apiVersion``, its plural (the path segment) and whether it lives in a namespace."""

    kind: str
    api_version: str
    plural: str
    namespaced: bool

    @property
    def root(self) -> str:
        """``/api/v1`` for the core group, ``/apis/<group>/<version>`` for the others."""
        return f"/apis/{self.api_version}" if "/" in self.api_version else f"/api/{self.api_version}"

    def collection(self, namespace: str | None = None) -> str:
        """The collection in ``namespace``; across all namespaces (or cluster-scoped) when it is None."""
        if self.namespaced and namespace is not None:
            return f"{self.root}/namespaces/{namespace}/{self.plural}"
        return f"{self.root}/{self.plural}"

    def item(self, name: str, namespace: str | None = None) -> str:
        return f"{self.collection(namespace)}/{name}"


NAMESPACE: Final = Resource("Namespace", "v1", "namespaces", namespaced=False)
STATEFUL_SET: Final = Resource("StatefulSet", "apps/v1", "statefulsets", namespaced=True)
PERSISTENT_VOLUME_CLAIM: Final = Resource("PersistentVolumeClaim", "v1", "persistentvolumeclaims", namespaced=True)

#: Every kind a sandbox has, in apply order.
RESOURCES: Final[tuple[Resource, ...]] = (
    NAMESPACE,
    Resource("ResourceQuota", "v1", "resourcequotas", namespaced=True),
    Resource("ServiceAccount", "v1", "serviceaccounts", namespaced=True),
    Resource("Role", "rbac.authorization.k8s.io/v1", "roles", namespaced=True),
    Resource("RoleBinding", "rbac.authorization.k8s.io/v1", "rolebindings", namespaced=True),
    Resource("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies", namespaced=True),
    Resource("Secret", "v1", "secrets", namespaced=True),
    PERSISTENT_VOLUME_CLAIM,
    Resource("ConfigMap", "v1", "configmaps", namespaced=True),
    Resource("Deployment", "apps/v1", "deployments", namespaced=True),
    Resource("Service", "v1", "services", namespaced=True),
    STATEFUL_SET,
    Resource("HTTPRoute", "gateway.networking.k8s.io/v1", "httproutes", namespaced=True),
)
BY_KIND: Final = {resource.kind: resource for resource in RESOURCES}
#: The kinds that live in the sandbox's namespace: what prune and delete list there.
NAMESPACED: Final = tuple(resource for resource in RESOURCES if resource.namespaced)
#: The kinds whose deletions are watched across all namespaces (``watching``): every kind but Secret. Listing
#: Secrets cluster-wide, even metadata only, needs a grant that reads them all, which the reconciler must not
#: hold (docs/security.md); a deleted Secret comes back on the sandbox's next pass (a kick, or the resync).
CLUSTER_WATCHED: Final = tuple(resource for resource in RESOURCES if resource.kind != "Secret")


def resource_of(manifest: Manifest) -> Resource:
    """The resource ``manifest`` is applied to; ``ApplyRejected`` for a kind or apiVersion not in the table."""
    resource = BY_KIND.get(manifest.kind)
    if resource is None or resource.api_version != manifest.api_version:
        raise ApplyRejected(
            f"the Kubernetes applier does not manage {manifest.api_version} {manifest.kind} ({manifest.name})"
        )
    if resource.namespaced != (manifest.namespace is not None):
        where = "needs" if resource.namespaced else "must not have"
        raise ApplyRejected(f"{manifest.kind} {manifest.name} {where} a namespace")
    return resource


# --- label selectors (the renderer puts these labels on every object: ``sandboxd.render.labels``) ---------------

#: Everything the reconciler manages, in every sandbox.
MANAGED_SELECTOR: Final = f"{labels.MANAGED_BY}={labels.MANAGER}"
#: Every sandbox's session StatefulSet (its readiness is what ``Ready`` means).
PTY_SERVER_SELECTOR: Final = f"{labels.APP_NAME}={components.PTY_SERVER},{MANAGED_SELECTOR}"
#: The label that names an object's sandbox.
SANDBOX_LABEL: Final = labels.SANDBOX
PTY_SERVER: Final = components.PTY_SERVER


def sandbox_selector(sandbox_id: str) -> str:
    """The prune selector: one sandbox's managed objects."""
    return f"{labels.SANDBOX}={label_value(sandbox_id)},{MANAGED_SELECTOR}"
