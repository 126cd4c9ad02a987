"""Activity reports and idle-scale commands: what pty-server says and what the scaler is told.

``ActivityReport`` is the shape of pty-server's ``GET /idle``; published on ``sandbox.activity.<id>``.
``ScaleCommand`` goes out on ``sandbox.scale.<id>``; its ``commandId`` is deterministic (sandbox, replicas,
and the decision it comes from) and sent as ``Nats-Msg-Id`` so service replicas deciding the same thing
publish it once.

The scaler never acts on the ``namespace`` and ``statefulSet`` a command carries: it derives its target from the
sandbox's desired state (``reconcile.scaling.target_of``), and refuses (dead-letters) a command whose names differ
from that target. They stay in the contract so a command can be read on its own (``nats stream view``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sandboxd.models.base import Contract, Timestamp
from sandboxd.models.events import SandboxIdField


class ActivityReport(Contract):
    last_activity_at: Timestamp
    active_sessions: int = Field(ge=0)
    sandbox_id: SandboxIdField | None = Field(default=None, description="Optional; the subject names it.")


class ScaleCommand(Contract):
    command_id: str = Field(min_length=1, max_length=256)
    sandbox_id: SandboxIdField
    namespace: str = Field(
        max_length=63,
        description="The sandbox's namespace (sandbox-<owner-uid>); a command naming any other is refused.",
    )
    stateful_set: str = Field(
        max_length=63, description="Always pty-server, the sandbox's session workload; any other is refused."
    )
    replicas: int = Field(ge=0, le=10)
    reason: Literal["Idle", "Active", "Suspended", "Resumed"] = Field(
        description="Why: Idle, Active (woke up), Suspended or Resumed."
    )
    issued_at: Timestamp
    idle_since: Timestamp | None = None
    generation: int = Field(default=0, ge=0, description="Desired-state generation the decision came from.")
