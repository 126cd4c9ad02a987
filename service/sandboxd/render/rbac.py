"""The in-sandbox identity: ServiceAccount, Role and RoleBinding, all named ``sandbox`` (upstream §2.4).

The session pods run as this ServiceAccount so agents can inspect and manage workloads *inside their own
namespace*, and read (never write) the platform's applications, environments, blueprints and organizations.
The rules are upstream's list, unchanged.

What it deliberately does not do: grant anything cluster-scoped (no ClusterRole), or widen the rules per plan.
"""

from __future__ import annotations

from typing import Any, Final

from sandboxd.render import labels
from sandboxd.render.context import RenderContext
from sandboxd.render.objects import new_object

NAME: Final = "sandbox"
RBAC_GROUP: Final = "rbac.authorization.k8s.io"
_MANAGE: Final = ["get", "list", "watch", "create", "update", "patch", "delete"]
_READ: Final = ["get", "list", "watch"]
RULES: Final = (
    (
        "",
        ["pods", "pods/log", "pods/exec", "services", "configmaps", "secrets", "persistentvolumeclaims", "events"],
        _MANAGE,
    ),
    ("apps", ["deployments", "statefulsets", "replicasets"], _MANAGE),
    ("batch", ["jobs", "cronjobs"], _MANAGE),
    ("apps.openova.io", ["applications"], _READ),
    ("catalyst.openova.io", ["environments", "blueprints"], _READ),
    ("orgs.openova.io", ["organizations"], _READ),
)


def service_account(ctx: RenderContext) -> dict[str, Any]:
    return new_object("v1", "ServiceAccount", name=NAME, namespace=ctx.namespace, labels=labels.common(ctx))


def role(ctx: RenderContext) -> dict[str, Any]:
    body = new_object(f"{RBAC_GROUP}/v1", "Role", name=NAME, namespace=ctx.namespace, labels=labels.common(ctx))
    body["rules"] = [
        {"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)} for group, resources, verbs in RULES
    ]
    return body


def role_binding(ctx: RenderContext) -> dict[str, Any]:
    body = new_object(f"{RBAC_GROUP}/v1", "RoleBinding", name=NAME, namespace=ctx.namespace, labels=labels.common(ctx))
    body["roleRef"] = {"apiGroup": RBAC_GROUP, "kind": "Role", "name": NAME}
    body["subjects"] = [{"kind": "ServiceAccount", "name": NAME, "namespace": ctx.namespace}]
    return body
