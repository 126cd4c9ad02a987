"""Desired states, activity reports, a recording command publisher and a fake scale target for the
idle-lifecycle tests: one knob per argument."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandboxd import naming
from sandboxd.errors import BrokerUnavailable, SandboxdError
from sandboxd.models.activity import ActivityReport, ScaleCommand
from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.models.spec import SandboxSpec
from support.spine import spec

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def desired(
    sandbox_id: str = "sb-1",
    *,
    email: str | None = None,
    sessions: int = 2,
    enabled: bool | None = None,
    timeout: int | None = None,
    lifecycle: Lifecycle = Lifecycle.ACTIVE,
    idle_since: datetime | None = None,
    accepted_at: datetime = T0,
    generation: int = 1,
) -> DesiredState:
    extra: dict[str, Any] = {}
    if enabled is not None or timeout is not None:
        scaling: dict[str, Any] = {}
        if enabled is not None:
            scaling["enabled"] = enabled
        if timeout is not None:
            scaling["timeoutMinutes"] = timeout
        extra["idleScaling"] = scaling
    body = SandboxSpec.model_validate(spec(email or f"{sandbox_id}@acme.com", sessions=sessions, **extra))
    return DesiredState(
        sandbox_id=sandbox_id,
        generation=generation,
        sequence=generation,
        event_id=f"evt-{sandbox_id}-{generation}",
        spec=body,
        owner_uid=naming.owner_uid(body.owner.email).value,
        lifecycle=lifecycle,
        idle_since=idle_since,
        accepted_at=accepted_at,
    )


def report(at: datetime, sessions: int = 0) -> ActivityReport:
    return ActivityReport(last_activity_at=at, active_sessions=sessions)


@dataclass
class Commands:
    """``CommandPublisher`` that records what it published; ``failing`` refuses like a broker that is down."""

    sent: list[ScaleCommand] = field(default_factory=list)
    failing: bool = False

    async def publish(self, command: ScaleCommand) -> None:
        if self.failing:
            raise BrokerUnavailable("no NATS")
        self.sent.append(command)

    @property
    def ids(self) -> list[str]:
        return [c.command_id for c in self.sent]


@dataclass
class FakeStatefulSets:
    """``ScaleTarget`` holding replica counts by (namespace, name); ``fail`` raises on the next call."""

    replicas: dict[tuple[str, str], int] = field(default_factory=dict)
    patches: list[tuple[str, str, int]] = field(default_factory=list)
    fail: SandboxdError | None = None
    before_patch: object = None

    async def scale(self, *, namespace: str, name: str, replicas: int) -> int | None:
        if self.fail is not None:
            raise self.fail
        key = (namespace, name)
        if key not in self.replicas:
            return None
        previous = self.replicas[key]
        if previous != replicas:
            if callable(self.before_patch):
                await self.before_patch()
            self.replicas[key] = replicas
            self.patches.append((namespace, name, replicas))
        return previous
