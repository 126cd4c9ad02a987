"""Activity reports and idle-scale commands: what pty-server says and what the scaler is told.

``ActivityReport`` is the shape of pty-server's ``GET /idle``; published on ``sandbox.activity.<id>``.
``ScaleCommand`` goes out on ``sandbox.scale.<id>``; its ``commandId`` is deterministic (sandbox, replicas,
and the decision it comes from) and sent as ``Nats-Msg-Id`` so service replicas deciding the same thing
publish it once.
"""

from __future__ import annotations

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
    namespace: str
    stateful_set: str
    replicas: int = Field(ge=0, le=10)
    reason: str = Field(description="Idle, Active, Suspended or Resumed.")
    issued_at: Timestamp
    idle_since: Timestamp | None = None
    generation: int = Field(default=0, ge=0, description="Desired-state generation the decision came from.")
