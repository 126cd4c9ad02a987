"""Namespace grants: the RoleBindings that give sandboxd's own accounts their access inside one sandbox namespace.

The reconciler holds no cluster-wide access to Secrets, Roles or any object it writes in a sandbox (the chart's
``templates/clusterrole-*.yaml``). What it needs inside a sandbox namespace is a ClusterRole that is bound
nowhere cluster-wide; right after creating the Namespace, the applier binds it there with a RoleBinding named
after the ClusterRole (it holds ``bind`` on exactly those ClusterRoles, and may write only RoleBindings of those
names, outside the namespace's own grants). Each grant is one ``SANDBOXD_KUBE_NAMESPACE_GRANTS`` entry::

    <ClusterRole>=<ServiceAccount namespace>/<ServiceAccount name>[,...]

e.g. the reconciler's own access and the scaler's ``statefulsets/scale``. Empty: no grants (the applier's
identity already holds what it needs, as a cluster-admin kubeconfig does).

A grant only counts once the API server's authorizer has seen it, a moment after the write: the applier asks it
(``access_review``, a ``SelfSubjectAccessReview``: may I list Secrets here?) before the first object of a sandbox
is listed or written, so a fresh namespace never meets a 403 that would be taken for a refusal.

What it deliberately does not do: delete grants (a retained sandbox keeps the namespace, and the reconciler
needs its grant to purge it later; a purge deletes the namespace and the grants with it), or label them as the
sandbox's (prune and the deletion watches never see them; every apply writes them again).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sandboxd.errors import ConfigurationError
from sandboxd.naming import DNS_LABEL_RE
from sandboxd.render import labels

VARIABLE: Final = "SANDBOXD_KUBE_NAMESPACE_GRANTS"
RBAC_GROUP: Final = "rbac.authorization.k8s.io"
ROLE_BINDINGS: Final = f"/apis/{RBAC_GROUP}/v1/namespaces/{{namespace}}/rolebindings/{{name}}"
ACCESS_REVIEWS: Final = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
#: A ClusterRole name: a DNS subdomain (RBAC allows more, the chart writes no more).
_SUBDOMAIN: Final = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class NamespaceGrant:
    """Bind ``cluster_role`` to the ServiceAccount ``account_namespace``/``account`` in each sandbox namespace."""

    cluster_role: str
    account_namespace: str
    account: str

    def path(self, namespace: str) -> str:
        return ROLE_BINDINGS.format(namespace=namespace, name=self.cluster_role)

    def binding(self, namespace: str) -> dict[str, Any]:
        """The RoleBinding in ``namespace`` (named after the ClusterRole, so the chart can name it in RBAC)."""
        return {
            "apiVersion": f"{RBAC_GROUP}/v1",
            "kind": "RoleBinding",
            "metadata": {
                "name": self.cluster_role,
                "namespace": namespace,
                # managed-by, but no sandbox label: the grant is the reconciler's, not one of the sandbox's objects.
                "labels": {labels.MANAGED_BY: labels.MANAGER},
            },
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": self.cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": self.account, "namespace": self.account_namespace}],
        }


def parse_grants(text: str | None) -> tuple[NamespaceGrant, ...]:
    """``<ClusterRole>=<namespace>/<account>[,...]``; ``ConfigurationError`` naming the variable otherwise."""
    grants: list[NamespaceGrant] = []
    for entry in (part.strip() for part in (text or "").split(",")):
        if not entry:
            continue
        role, _, account = entry.partition("=")
        account_namespace, _, name = account.strip().partition("/")
        grant = NamespaceGrant(role.strip(), account_namespace.strip(), name.strip())
        if not (
            _SUBDOMAIN.fullmatch(grant.cluster_role)
            and DNS_LABEL_RE.fullmatch(grant.account_namespace)
            and _SUBDOMAIN.fullmatch(grant.account)
        ):
            raise ConfigurationError(
                f"{VARIABLE}: {entry!r} is not <ClusterRole>=<ServiceAccount namespace>/<ServiceAccount name>"
            )
        grants.append(grant)
    names = [g.cluster_role for g in grants]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"{VARIABLE}: a ClusterRole is named twice ({', '.join(sorted(names))})")
    return tuple(grants)


def access_review(namespace: str) -> dict[str, Any]:
    """May this identity list Secrets in ``namespace``? What the prune inventory needs first."""
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": namespace, "verb": "list", "resource": "secrets"}},
    }


def allowed(review: Mapping[str, Any]) -> bool:
    status = review.get("status")
    return isinstance(status, Mapping) and status.get("allowed") is True
