"""sandboxd: the sandbox reconciler.

Platform services publish sandbox lifecycle events to NATS JetStream; this package validates them, keeps the
desired state, renders each sandbox's Kubernetes runtime, applies it (server-side apply or a GitOps commit),
projects status into a JetStream KV bucket and publishes idle-scale commands.

Layers, lowest first (enforced by import-linter, see ``pyproject.toml``)::

    errors < naming < models < settings < render < telemetry < reconcile < runtime | adapters < app < cli

Adapters implement the protocols the reconcile use case declares (``sandboxd.reconcile.ports``); the runtime
drives the use case through the same protocols and never imports an adapter.
"""

__version__ = "0.1.0"
