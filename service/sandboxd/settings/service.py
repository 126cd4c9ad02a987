"""How the service process runs: worker pool, retries, resync, applier choice, health and telemetry."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr, model_validator

from sandboxd.settings.fields import Group, env


class WorkerSettings(Group):
    concurrency: int = env(
        "SANDBOXD_CONCURRENCY", 32, ge=1, le=1024, description="Sandboxes reconciled at once per process."
    )
    resync_interval_s: float = env(
        "SANDBOXD_RESYNC_SECONDS", 600.0, gt=0, description="Re-enqueue every sandbox this often (±10%), s."
    )
    catch_up_hold_s: float = env(
        "SANDBOXD_CATCH_UP_HOLD_SECONDS",
        5.0,
        ge=0,
        description="While events are backlogged, a sandbox waits up to this long for its later events to join "
        "one reconcile, s (0 disables). No effect when there is no backlog.",
    )
    retry_base_s: float = env(
        "SANDBOXD_RETRY_BASE_SECONDS", 1.0, gt=0, description="First retry delay, s; at most the cap below."
    )
    retry_cap_s: float = env("SANDBOXD_RETRY_CAP_SECONDS", 300.0, gt=0, description="Longest retry delay, s.")
    shutdown_grace_s: float = env(
        "SANDBOXD_SHUTDOWN_GRACE_SECONDS", 20.0, gt=0, description="In-flight work may finish this long on SIGTERM."
    )
    health_port: int = env("SANDBOXD_HEALTH_PORT", 8081, ge=0, le=65535, description="/healthz /readyz /metrics.")
    health_host: str = env("SANDBOXD_HEALTH_HOST", "0.0.0.0", description="Bind address of that endpoint.")  # noqa: S104

    @model_validator(mode="after")
    def _base_within_cap(self) -> WorkerSettings:
        if self.retry_base_s > self.retry_cap_s:
            raise ValueError(
                f"SANDBOXD_RETRY_BASE_SECONDS ({self.retry_base_s:g}) must not exceed "
                f"SANDBOXD_RETRY_CAP_SECONDS ({self.retry_cap_s:g})"
            )
        return self


class ApplierSettings(Group):
    kind: Literal["kubernetes", "gitops", "directory"] = env(
        "SANDBOXD_APPLIER", "kubernetes", description="Where rendered objects go."
    )
    field_manager: str = env("SANDBOXD_FIELD_MANAGER", "sandboxd", description="Server-side apply field manager.")
    kubeconfig: str | None = env("KUBECONFIG", None, description="Kubeconfig path; unset = in-cluster config.")
    kube_context: str | None = env("SANDBOXD_KUBE_CONTEXT", None, description="Kubeconfig context.")
    apply_concurrency: int = env(
        "SANDBOXD_APPLY_CONCURRENCY", 8, ge=1, le=64, description="Objects of one sandbox applied at once."
    )
    kube_request_timeout_s: float = env(
        "SANDBOXD_KUBE_REQUEST_TIMEOUT_SECONDS",
        30.0,
        gt=0,
        description="A Kubernetes API request (a watch excepted) that has no answer after this long is retried "
        "later, s (the reconciler and the scaler).",
    )
    kube_namespace_grants: str = env(
        "SANDBOXD_KUBE_NAMESPACE_GRANTS",
        "",
        description="RoleBindings the Kubernetes applier writes in each sandbox namespace right after creating it: "
        "'<ClusterRole>=<ServiceAccount namespace>/<name>', comma-separated (the chart sets the reconciler's and "
        "the scaler's); empty = none, the applier's identity already holds what it needs (docs/security.md).",
    )
    directory: str = env("SANDBOXD_DIRECTORY", "./rendered", description="Folder for the directory applier.")
    gitops_repo: str = env(
        "SANDBOXD_GITOPS_REPO", "./gitops", description="Local path or remote URL of the GitOps repository."
    )
    gitops_branch: str = env("SANDBOXD_GITOPS_BRANCH", "main", description="Branch the GitOps applier commits to.")
    gitops_username: str | None = env("SANDBOXD_GITOPS_USERNAME", None, description="HTTP(S) remote user.")
    gitops_password: SecretStr | None = env("SANDBOXD_GITOPS_PASSWORD", None, description="Its password/token.")
    gitops_author: str = env(
        "SANDBOXD_GITOPS_AUTHOR", "sandboxd <sandboxd@localhost>", description="Commit author 'Name <email>'."
    )
