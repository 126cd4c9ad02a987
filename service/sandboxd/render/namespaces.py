"""The sandbox's Namespace ``sandbox-<owner-uid>`` (upstream §2.2), the first object applied.

Labels name the organization, the Sovereign, the owner and the sandbox (``openova.io/sandbox`` and, for
selectors that want an explicit key, ``openova.io/sandbox-id``); annotations keep the owner's email and the
preview domain, which are not valid label values.

What it deliberately does not do: Pod Security admission labels (upstream renders none; the Sovereign's
admission policy owns that), or network isolation (``sandboxd.render.policies``).
"""

from __future__ import annotations

from typing import Any

from sandboxd.naming import label_value
from sandboxd.render import labels
from sandboxd.render.context import RenderContext
from sandboxd.render.objects import new_object


def namespace(ctx: RenderContext) -> dict[str, Any]:
    namespace_labels = {
        labels.ORGANIZATION: label_value(ctx.org),
        labels.SOVEREIGN: label_value(ctx.settings.sovereign_fqdn),
        labels.SANDBOX: ctx.sandbox_label,
        labels.SANDBOX_ID: ctx.sandbox_label,
        labels.OWNER: ctx.owner_label,
        labels.MANAGED_BY: labels.MANAGER,
    }
    annotations = {labels.OWNER_EMAIL: ctx.email}
    preview = ctx.request.spec.preview_domain
    if preview:
        annotations[labels.PREVIEW_DOMAIN] = preview
    return new_object(
        "v1", "Namespace", name=ctx.namespace, namespace=None, labels=namespace_labels, annotations=annotations
    )
