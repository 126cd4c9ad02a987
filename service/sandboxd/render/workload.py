"""The workload rules: how a desired state becomes whether session pods run, how many, and the idle timeout.

One place for them, so the renderer (the StatefulSet's replicas and idle-timeout annotation), the reconciler
(which ``Workload`` to render), the idle sweeper (when a sandbox goes idle) and the scaler (the replica count a
scale command patches) always agree.

- ``workload_of``: SUSPENDED when suspended; IDLE when the sweeper set ``idleSince`` and idle scaling is
  still enabled (an opted-out sandbox never stays idle); otherwise ACTIVE.
- ``replicas``: ``quota.concurrentSessions`` session pods when ACTIVE, else 0 (a deleted sandbox: 0).
- ``idle_timeout_minutes``: ``spec.idleScaling.timeoutMinutes`` when set, else the service default.

Pure: no I/O, no clock, no settings object (the default timeout is passed in).
"""

from __future__ import annotations

from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.models.spec import SandboxSpec
from sandboxd.render.model import Workload


def workload_of(desired: DesiredState) -> Workload:
    """Whether the sandbox's session pods should run now (a deleted one: as its lifecycle left it)."""
    if desired.lifecycle is Lifecycle.SUSPENDED:
        return Workload.SUSPENDED
    if desired.idle_since is not None and desired.spec.idle_scaling_enabled:
        return Workload.IDLE
    return Workload.ACTIVE


def replicas(spec: SandboxSpec, workload: Workload) -> int:
    """Session pods for ``workload``: ``concurrentSessions`` when ACTIVE, else none."""
    return spec.quota.concurrent_sessions if workload is Workload.ACTIVE else 0


def replicas_for(desired: DesiredState) -> int:
    """Session pods the desired state asks for (0 once deleted): what the renderer renders."""
    if desired.lifecycle is Lifecycle.DELETED:
        return 0
    return replicas(desired.spec, workload_of(desired))


def idle_timeout_minutes(spec: SandboxSpec, *, default_minutes: int) -> int:
    """The sandbox's own idle timeout if it set one, else the default (upstream: annotation over default)."""
    scaling = spec.idle_scaling
    if scaling is not None and scaling.timeout_minutes is not None:
        return scaling.timeout_minutes
    return default_minutes
