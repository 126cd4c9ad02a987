"""The tenant bridge's settings: whether ``sandboxd run`` turns tenant ``sandbox_requested`` events into creates.

Off unless ``SANDBOXD_TENANT_BRIDGE=true``. The stream belongs to the tenant service (upstream ``CATALYST_ORG``):
sandboxd never creates it, only its own durable consumer on it. The defaults are upstream's names; change them
only together with the NATS permissions of the reconciler (``deploy/nats/accounts.conf``), which name them.
"""

from __future__ import annotations

from sandboxd.settings.fields import Group, env


class TenantBridgeSettings(Group):
    enabled: bool = env(
        "SANDBOXD_TENANT_BRIDGE",
        False,
        description="Run the tenant bridge in `sandboxd run`: each tenant `sandbox_requested` event becomes a "
        'sandbox.create (docs/operations.md, "The tenant bridge").',
    )
    stream: str = env(
        "SANDBOXD_TENANT_STREAM",
        "CATALYST_ORG",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The tenant service's stream (never created by sandboxd; the bridge waits for it).",
    )
    subject: str = env(
        "SANDBOXD_TENANT_SUBJECT",
        "catalyst.tenant.sandbox_requested",
        pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
        description="The subject of the tenant service's sandbox requests (the consumer's filter).",
    )
    consumer: str = env(
        "SANDBOXD_TENANT_CONSUMER",
        "sandboxd-tenant-bridge",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The bridge's durable consumer on that stream, shared by every replica.",
    )
