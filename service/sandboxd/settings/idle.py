"""The idle lifecycle's settings: the sweeper and prober inside the service, and the sibling scaler process.

The default idle timeout itself is ``RuntimeSettings.idle_timeout_minutes`` (``SANDBOX_IDLE_TIMEOUT_MINUTES``,
upstream's variable), because the renderer stamps the same value on the StatefulSet. Defaults follow the
upstream idle scaler where it had one (a pass every 60 s, a 5 s probe timeout, the pty-server ``/idle`` URL).
"""

from __future__ import annotations

from pydantic import field_validator

from sandboxd.settings.fields import Group, env

DEFAULT_PROBE_URL = "http://pty-server.{namespace}.svc.cluster.local:7681/idle"
PROBE_URL_FIELDS = {"namespace": "sandbox-x", "sandbox_id": "x", "owner_uid": "x"}


class IdleSettings(Group):
    """The sweeper (every replica runs one; compare-and-set makes their decisions agree) and the prober."""

    sweeper: bool = env(
        "SANDBOXD_IDLE_SWEEPER", True, description="Run the idle sweeper in this process (false: never idle)."
    )
    sweep_interval_s: float = env(
        "SANDBOXD_IDLE_SWEEP_SECONDS", 60.0, gt=0, le=3600, description="Time between sweeps, s (upstream 60)."
    )
    activity_resolution_s: float = env(
        "SANDBOXD_IDLE_ACTIVITY_RESOLUTION_SECONDS",
        60.0,
        ge=0,
        description="status.lastActivityAt is rewritten only when activity moved at least this much, s "
        "(a busy session reports every few seconds; the status need not follow each report).",
    )
    status_writes_per_sweep: int = env(
        "SANDBOXD_IDLE_STATUS_WRITES_PER_SWEEP",
        500,
        ge=1,
        description="Most lastActivityAt status writes one sweep makes (the rest wait for the next sweep), "
        "so a restart with thousands of reports does not burst the status bucket.",
    )
    probe: bool = env(
        "SANDBOXD_IDLE_PROBE",
        False,
        description="Poll each running sandbox's pty-server for activity (off: activity arrives as events).",
    )
    probe_url: str = env(
        "SANDBOXD_IDLE_PROBE_URL",
        DEFAULT_PROBE_URL,
        description="Probe URL; {namespace}, {sandbox_id} and {owner_uid} are filled in (upstream's URL).",
    )
    probe_timeout_s: float = env(
        "SANDBOXD_IDLE_PROBE_TIMEOUT_SECONDS", 5.0, gt=0, le=60, description="Per-probe timeout, s (upstream 5)."
    )
    probe_concurrency: int = env(
        "SANDBOXD_IDLE_PROBE_CONCURRENCY", 32, ge=1, le=1024, description="Probes in flight at once."
    )

    @field_validator("probe_url")
    @classmethod
    def _template(cls, value: str) -> str:
        value = value.strip()
        try:
            filled = value.format(**PROBE_URL_FIELDS)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"{value!r} is not a URL template; use {{namespace}}, {{sandbox_id}} or {{owner_uid}}"
            ) from exc
        if not filled.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL such as {DEFAULT_PROBE_URL}")
        return value


class ScalerSettings(Group):
    """The sibling scaler (``sandboxd scaler``): executes idle-scale commands against the StatefulSets."""

    field_manager: str = env(
        "SANDBOXD_SCALER_FIELD_MANAGER",
        "sandboxd-scaler",
        min_length=1,
        max_length=128,
        description="Field manager of the scale patches (distinct from the reconciler's server-side apply).",
    )
    concurrency: int = env("SANDBOXD_SCALER_CONCURRENCY", 8, ge=1, le=256, description="Sandboxes scaled at once.")
    fetch_batch: int = env("SANDBOXD_SCALER_FETCH_BATCH", 32, ge=1, le=256, description="Commands per fetch.")
    fetch_timeout_s: float = env(
        "SANDBOXD_SCALER_FETCH_SECONDS", 5.0, gt=0, le=60, description="Longest wait of one empty fetch, s."
    )
    # Named for /metrics, the scaler's only endpoint once; the names stay so that deployments keep working.
    metrics_port: int = env(
        "SANDBOXD_SCALER_METRICS_PORT", 8080, ge=0, le=65535, description="/healthz /readyz /metrics; 0 = a free port."
    )
    metrics_host: str = env(
        "SANDBOXD_SCALER_METRICS_HOST",
        "0.0.0.0",  # noqa: S104 - a pod serves its probes and /metrics on every interface
        description="Bind address of that endpoint.",
    )
