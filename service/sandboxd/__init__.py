"""sandboxd: the sandbox reconciler.

Platform services publish sandbox lifecycle events to NATS JetStream; this package validates them, keeps the
desired state, renders each sandbox's Kubernetes runtime, applies it (server-side apply or a GitOps commit),
projects status into a JetStream KV bucket and publishes idle-scale commands.

Layers, lowest first (enforced by import-linter, see ``pyproject.toml``)::

    errors < naming < models < settings < render < telemetry < reconcile | adapters < runtime < app < cli
"""

__version__ = "0.1.0"
