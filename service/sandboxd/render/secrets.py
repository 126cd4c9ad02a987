"""The sandbox's two Secrets, neither of which ever carries a secret value.

- ``sandbox-tokens`` (upstream §2.5): a placeholder with one empty key, kept because upstream tooling expects
  it to exist.
- the LLM-gateway token Secret, named ``SANDBOX_LLM_GATEWAY_TOKEN_SECRET``: exactly the Secret and key the
  pods' ``LLM_GATEWAY_TOKEN`` / ``OPENAI_API_KEY`` / ``SANDBOX_TOKEN`` read (upstream minted into one Secret and
  read another, §10 G2). It is rendered with no ``data`` or ``stringData`` at all: a token writer fills the
  value with its own field manager, so no token reaches Git or this process (G16), and it is rendered on every
  pass so it never flaps out of the kustomization (G1).

What it deliberately does not do: mint, hold or rotate tokens, or render the BYOS Secret (it belongs to the
user's BYOS flow; the pods only reference it).
"""

from __future__ import annotations

from typing import Any, Final

from sandboxd.render import labels
from sandboxd.render.context import RenderContext
from sandboxd.render.objects import new_object
from sandboxd.settings.runtime import PLACEHOLDER_SECRET

__all__ = ["PLACEHOLDER_SECRET", "placeholder", "token_secret"]

OPAQUE: Final = "Opaque"


def placeholder(ctx: RenderContext) -> dict[str, Any]:
    body = new_object("v1", "Secret", name=PLACEHOLDER_SECRET, namespace=ctx.namespace, labels=labels.common(ctx))
    body["type"] = OPAQUE
    body["stringData"] = {"placeholder": ""}
    return body


def token_secret(ctx: RenderContext) -> dict[str, Any]:
    body = new_object(
        "v1",
        "Secret",
        name=ctx.settings.llm_gateway_token_secret,
        namespace=ctx.namespace,
        labels=labels.owned(ctx),
    )
    body["type"] = OPAQUE
    return body
