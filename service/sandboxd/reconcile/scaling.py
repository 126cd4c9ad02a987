"""Scale commands: what one may do, how the sweeper builds one, and the scaler's use case that carries it out.

- A scale command only ever touches its sandbox's own pty-server: the target is derived from the desired state
  (``target_of``: ``sandbox-<owner-uid>``/``pty-server``), never taken from the message; a command naming
  anything else is refused (``TARGET_REFUSED``: dead-lettered, counted) before anything is read or written.
- Each command has a deterministic id (``<id>:<generation>:<action>``) that every replica deciding the same thing
  computes alike, so the broker deduplicates it.
- The replica count is ``render.workload.replicas_for`` the desired state: what the renderer renders.

``execute_scale`` talks to the ``Store`` and ``ScaleTarget`` ports only; the scaler process (``app.scaler``)
consumes the commands and settles them through ``runtime.disposition``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from sandboxd import naming
from sandboxd.errors import InvalidEvent, StoreConflict
from sandboxd.models.activity import ScaleCommand
from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.naming import SandboxId
from sandboxd.reconcile.idle import Action
from sandboxd.reconcile.ports import ScaleTarget, Store
from sandboxd.render.components import PTY_SERVER
from sandboxd.render.workload import replicas_for

#: ``InvalidEvent.reason`` of a scale command naming a workload that is not its sandbox's pty-server.
TARGET_REFUSED: Final = "ScaleTargetRefused"

#: ``ScaleCommand.reason`` for each action (the contract's words).
REASONS: Final = {Action.IDLE: "Idle", Action.WAKE: "Active", Action.SUSPEND: "Suspended", Action.RESUME: "Resumed"}


def command_id(sandbox_id: SandboxId, generation: int, action: Action) -> str:
    """Deterministic: replicas that decide the same thing from the same record publish one command."""
    return f"{sandbox_id}:{generation}:{action.value}"


@dataclass(frozen=True, slots=True)
class Target:
    """The one workload a sandbox's scale commands may touch."""

    namespace: str
    name: str


def target_of(desired: DesiredState) -> Target:
    """The sandbox's own pty-server, from its owner-uid (``naming``), never from a message."""
    return Target(naming.namespace_for(desired.owner_uid), PTY_SERVER)


def refuse_foreign(command: ScaleCommand, target: Target | None = None) -> None:
    """``InvalidEvent`` (reason ``TARGET_REFUSED``) unless ``command`` names its sandbox's pty-server.

    Without ``target`` (no desired state to derive it from) only the shape is checked: a ``sandbox-`` namespace
    and ``pty-server``. Names from the message are quoted only after ``!r``: they are untrusted input.
    """
    named = Target(command.namespace, command.stateful_set)
    if target is None:
        fits = named.name == PTY_SERVER and named.namespace.startswith(naming.NAMESPACE_PREFIX)
    else:
        fits = named == target
    if not fits:
        expected = "" if target is None else f" (its own is {target.namespace}/{target.name})"
        raise InvalidEvent(
            f"scale command {command.command_id!r} for sandbox {command.sandbox_id} names "
            f"{named.namespace!r}/{named.name!r}, not the sandbox's pty-server{expected}; refused",
            reason=TARGET_REFUSED,
        )


def scale_command(desired: DesiredState, action: Action, *, now: datetime) -> ScaleCommand:
    """The command for ``action`` on ``desired`` (the state *after* the decision)."""
    target = target_of(desired)
    return ScaleCommand(
        command_id=command_id(desired.sandbox_id, desired.generation, action),
        sandbox_id=desired.sandbox_id,
        namespace=target.namespace,
        stateful_set=target.name,
        replicas=replicas_for(desired),
        reason=REASONS[action],
        issued_at=now,
        idle_since=desired.idle_since,
        generation=desired.generation,
    )


class ScaleOutcome(StrEnum):
    SCALED = "scaled"  # the replica count changed
    UNCHANGED = "unchanged"  # it already had that count (a duplicate, or the reconcile was first)
    STALE = "stale"  # a newer desired state supersedes the command (its own reconcile or command handles it)
    GONE = "gone"  # the sandbox or its StatefulSet does not exist (deleted, or not applied yet)


@dataclass(frozen=True, slots=True)
class ScaleResult:
    outcome: ScaleOutcome
    replicas: int | None = None
    previous: int | None = None


MAX_RECHECKS: Final = 3


async def execute_scale(
    command: ScaleCommand, *, desired: Store[DesiredState], target: ScaleTarget, max_rechecks: int = MAX_RECHECKS
) -> ScaleResult:
    """Carry out one command if it is still current, then make sure no newer decision was overtaken.

    The replica count comes from the desired state the command names (so it is what the renderer renders). A
    command older than the desired state is skipped, and so is one issued before the desired state was
    accepted (it was meant for an earlier sandbox of the same id); one ahead of what could be read is retried.
    After patching, the desired state is read again: when a newer generation appeared meanwhile (a resume
    reconciled while this patch was in flight), the count it asks for is patched too, so a late command never
    leaves the workload at the wrong size.

    The workload is the sandbox's own pty-server (``target_of`` the desired state); a command naming any other
    raises ``InvalidEvent`` (``TARGET_REFUSED``) and nothing is scaled.
    """
    refuse_foreign(command)
    key = naming.desired_key(command.sandbox_id)
    stored = await desired.get(key)
    if stored is None or stored.value.lifecycle is Lifecycle.DELETED:
        return ScaleResult(ScaleOutcome.GONE)
    workload = target_of(stored.value)
    refuse_foreign(command, workload)
    if stored.value.generation > command.generation:
        return ScaleResult(ScaleOutcome.STALE)
    if stored.value.generation < command.generation and command.issued_at < stored.value.accepted_at:
        return ScaleResult(ScaleOutcome.STALE)  # from a sandbox of the same id that was deleted since
    if stored.value.generation < command.generation:
        raise StoreConflict(
            f"desired state of {command.sandbox_id} is at generation {stored.value.generation}, behind the "
            f"command's {command.generation}; retrying once it has caught up"
        )
    replicas = replicas_for(stored.value)
    previous = await target.scale(namespace=workload.namespace, name=workload.name, replicas=replicas)
    if previous is None:
        return ScaleResult(ScaleOutcome.GONE, replicas)
    applied, generation = replicas, stored.value.generation
    for _ in range(max_rechecks):
        again = await desired.get(key)
        if again is None or again.value.generation == generation or again.value.lifecycle is Lifecycle.DELETED:
            break
        generation = again.value.generation
        wanted = replicas_for(again.value)
        if wanted != applied:
            await target.scale(namespace=workload.namespace, name=workload.name, replicas=wanted)
            applied = wanted
    outcome = ScaleOutcome.UNCHANGED if previous == replicas else ScaleOutcome.SCALED
    return ScaleResult(outcome, replicas, previous)
