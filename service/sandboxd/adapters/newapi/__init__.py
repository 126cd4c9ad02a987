"""The NewAPI bridge (``platform/newapi``'s admin sidecar): minting and revoking sandbox LLM-gateway tokens."""

from sandboxd.adapters.newapi.client import NewApiBridge

__all__ = ["NewApiBridge"]
