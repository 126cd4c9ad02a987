"""Settings: one pydantic-settings tree, read only at the edge (``load_settings``), passed down as values.

Each group is small and every field names its environment variable, its unit and its default. A missing or
invalid value fails start-up with a ``ConfigurationError`` that names the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from pydantic import ValidationError

from sandboxd.errors import ConfigurationError
from sandboxd.settings.broker import NatsSettings, TopologySettings
from sandboxd.settings.fields import Group
from sandboxd.settings.idle import IdleSettings, ScalerSettings
from sandboxd.settings.runtime import RuntimeSettings
from sandboxd.settings.service import ApplierSettings, WorkerSettings
from sandboxd.settings.tenants import TenantBridgeSettings
from sandboxd.settings.tokens import TokenSettings

__all__ = [
    "ApplierSettings",
    "IdleSettings",
    "NatsSettings",
    "RuntimeSettings",
    "ScalerSettings",
    "Settings",
    "TenantBridgeSettings",
    "TokenSettings",
    "TopologySettings",
    "WorkerSettings",
    "load",
    "load_groups",
    "load_settings",
]

G = TypeVar("G", bound=Group)

#: The least time an event's redeliveries must span on a clustered broker: nats-server elects a stream's leader
#: in 4-9 s, and a dead node can cost a stream, a bucket and the consumer one election each.
ELECTION_OUTLAST_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Settings:
    runtime: RuntimeSettings
    nats: NatsSettings
    topology: TopologySettings
    worker: WorkerSettings
    applier: ApplierSettings
    idle: IdleSettings = field(default_factory=IdleSettings)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    tenants: TenantBridgeSettings = field(default_factory=TenantBridgeSettings)

    def __post_init__(self) -> None:
        # A deleted sandbox's status record (its tombstone) must outlive every redelivery of its events: one that
        # came after the record expired would begin a new life and bring the sandbox back. A delivery comes again
        # at most max(ack wait, retry cap) after the one before, SANDBOXD_MAX_DELIVER times in all.
        topology = self.topology
        horizon = topology.max_deliver * max(topology.ack_wait_s, self.worker.retry_cap_s)
        if topology.status_retention_s < horizon:
            raise ConfigurationError(
                f"SANDBOXD_STATUS_RETENTION_SECONDS ({topology.status_retention_s:g}) must be at least "
                f"SANDBOXD_MAX_DELIVER x max(SANDBOXD_ACK_WAIT_SECONDS, SANDBOXD_RETRY_CAP_SECONDS) = {horizon:g}"
            )
        # On a cluster (replicas > 1) a leader election stalls a stream or bucket for 4-9 s, several in a row when
        # a node dies: an event whose retries all fall inside one would be dead-lettered though nothing is wrong
        # with it. The shortest time its redeliveries can span (every jitter drawn low) must outlast that.
        worker = self.worker
        if topology.replicas > 1:
            shortest = sum(
                0.5 * min(worker.retry_cap_s, worker.retry_base_s * 2 ** (failures - 1))
                for failures in range(1, topology.max_deliver)
            )
            if shortest < ELECTION_OUTLAST_S:
                raise ConfigurationError(
                    f"at SANDBOXD_STREAM_REPLICAS={topology.replicas} an event's retries must outlast a leader "
                    f"election: SANDBOXD_MAX_DELIVER ({topology.max_deliver}) retries from "
                    f"SANDBOXD_RETRY_BASE_SECONDS ({worker.retry_base_s:g}) up to SANDBOXD_RETRY_CAP_SECONDS "
                    f"({worker.retry_cap_s:g}) can span only {shortest:.1f} s; at least {ELECTION_OUTLAST_S:g} s "
                    "is needed (raise SANDBOXD_MAX_DELIVER or the retry delays)"
                )


def load(group: type[G], overrides: Mapping[str, Any] | None = None) -> G:
    """Read one group from the environment; a problem becomes a ``ConfigurationError`` naming the variable."""
    try:
        values: dict[str, Any] = dict(overrides or {})
        return group(**values)
    except ValidationError as exc:
        problems = []
        for item in exc.errors(include_url=False):
            variable = _variable(group, item["loc"])
            message = str(item["msg"]).removeprefix("Value error, ")
            if item["type"] == "missing":
                message = "is required but not set"
            problems.append(f"{variable} {message}" if variable else message)
        raise ConfigurationError(_INVALID + "; ".join(problems)) from exc


_INVALID: Final = "invalid configuration: "


def _variable(group: type[Group], loc: tuple[int | str, ...]) -> str:
    """The variable an error is about, also for a value given by field name (a command's flag, a NATS context)."""
    field = group.model_fields.get(str(loc[0])) if len(loc) == 1 else None
    if field is not None and isinstance(field.validation_alias, str):
        return field.validation_alias
    return ".".join(str(p) for p in loc)


def load_settings() -> Settings:
    """The whole tree from the environment, as ``sandboxd run`` needs it; every invalid setting of every group
    is named in one ``ConfigurationError``, so a start-up that fails says everything to fix at once."""
    groups: dict[str, type[Group]] = {
        "runtime": RuntimeSettings,
        "nats": NatsSettings,
        "topology": TopologySettings,
        "worker": WorkerSettings,
        "applier": ApplierSettings,
        "idle": IdleSettings,
        "tokens": TokenSettings,
        "tenants": TenantBridgeSettings,
    }
    return Settings(**load_groups(groups))


def load_groups(groups: Mapping[str, type[Group]]) -> dict[str, Any]:
    """Each group from the environment, by name; every invalid setting of every group in one
    ``ConfigurationError`` (each process's start-up says everything to fix at once)."""
    loaded: dict[str, Any] = {}
    problems: list[str] = []
    for name, group in groups.items():
        try:
            loaded[name] = load(group)
        except ConfigurationError as exc:
            problems.append(exc.message.removeprefix(_INVALID))
    if problems:
        raise ConfigurationError(_INVALID + "; ".join(problems))
    return loaded
