"""Pydantic contracts: everything that crosses a process boundary (events, KV records, commands).

Frozen, unknown fields refused, camelCase on the wire. ``contracts/`` holds the JSON Schemas generated from
these models; a test fails when they drift.
"""

from sandboxd.models.activity import ActivityReport, ScaleCommand
from sandboxd.models.base import Contract, describe
from sandboxd.models.desired import DesiredState, Lifecycle, OwnerClaim
from sandboxd.models.events import (
    CreateEvent,
    DeleteEvent,
    ResumeEvent,
    SandboxEvent,
    SuspendEvent,
    UpdateEvent,
    parse_event,
)
from sandboxd.models.spec import Agent, SandboxSpec
from sandboxd.models.status import (
    Condition,
    ConditionStatus,
    ConditionType,
    ObjectRef,
    Phase,
    SandboxStatus,
    set_condition,
)

__all__ = [
    "ActivityReport",
    "Agent",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "Contract",
    "CreateEvent",
    "DeleteEvent",
    "DesiredState",
    "Lifecycle",
    "ObjectRef",
    "OwnerClaim",
    "Phase",
    "ResumeEvent",
    "SandboxEvent",
    "SandboxSpec",
    "SandboxStatus",
    "ScaleCommand",
    "SuspendEvent",
    "UpdateEvent",
    "describe",
    "parse_event",
    "set_condition",
]
