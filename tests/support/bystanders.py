"""Objects no sandbox renders, for tests that prove sandboxd leaves them alone."""

from __future__ import annotations

from typing import Any


def bystander_statefulset(namespace: str, name: str, *, replicas: int = 2) -> dict[str, Any]:
    """A StatefulSet of ``replicas`` that is not a sandbox's (apply it with server-side apply)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": "example.com/bystander:1.0"}]},
            },
        },
    }
