"""The namespace's ResourceQuota ``sandbox-quota`` (upstream §2.3), written from the resource plan.

``spec.hard`` holds every session pod at its share plus the MCP companion when it runs as a Deployment
(``sandboxd.render.resources`` explains the split and why it fixes upstream G5); ``count/pods`` is the number of
pods that may exist at once, never the raw spec value upstream wrote (which could be 0).

What it deliberately does not do: LimitRanges (every rendered container states its own requests and limits),
or quota on object counts beyond pods.
"""

from __future__ import annotations

from typing import Any, Final

from sandboxd.render import labels
from sandboxd.render.context import RenderContext
from sandboxd.render.objects import new_object

NAME: Final = "sandbox-quota"


def resource_quota(ctx: RenderContext) -> dict[str, Any]:
    body = new_object("v1", "ResourceQuota", name=NAME, namespace=ctx.namespace, labels=labels.common(ctx))
    body["spec"] = {"hard": ctx.resources.hard()}
    return body
