"""One reconcile pass for one sandbox: read the newest desired state, render, apply, project status.

Level-triggered: the pass never looks at the event that caused it, only at the desired state it reads at the
start, so duplicate, reordered and coalesced kicks are harmless. A pass that applied while another replica
finished deleting the sandbox (the desired state is gone when it checks) removes what it put back. The caller
(the runtime's keyed queue) guarantees one pass at a time per sandbox. Errors are returned, not raised, as an
``Outcome`` the runtime's disposition turns into ack / nak / dead-letter; the status record already says what
happened. Each pass is a ``reconcile`` span, a child of the event that last changed the desired state (its
``traceparent``), with ``render``, ``apply``/``delete`` and ``write status`` below it, and one
``sandboxd.reconcile.duration`` sample.

Suspend and resume: the pass whose status write moves the record past an accepted suspend or resume (compare-
and-set: exactly one writer does) sends the scale command for it (``reconcile.idle.scale_after_event``, through
the ``CommandSink`` port, after the write) and notes the reason in that same write (``idleReason``:
``Suspended``, or cleared on resume). The command id is deterministic (``reconcile.scaling.command_id``), so
whatever is sent twice is one command; a resync or a redelivery finds the record past the event and sends
nothing. A command that fails to publish is kept by the sink and sent again; a process that dies between the
write and the send loses the command, never the change: the pass already applied the replica count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from opentelemetry.trace import Tracer

from sandboxd import naming
from sandboxd.errors import PermanentError, RetryableError, SandboxdError
from sandboxd.lru import Lru
from sandboxd.models.desired import DesiredState, Lifecycle, OwnerClaim
from sandboxd.models.status import ObjectRef, SandboxStatus
from sandboxd.naming import SandboxId
from sandboxd.reconcile import idle, scaling, statuses
from sandboxd.reconcile.idle import Action
from sandboxd.reconcile.ports import Applier, Clock, CommandSink, Store
from sandboxd.reconcile.statuses import StatusWriter, Transition
from sandboxd.render import RenderedSandbox, RenderRequest, Workload
from sandboxd.render.workload import workload_of
from sandboxd.settings import RuntimeSettings
from sandboxd.telemetry import logs, tracing
from sandboxd.telemetry.metrics import Instruments, noop_instruments

Renderer = Callable[[RenderRequest, RuntimeSettings], RenderedSandbox]
log = logging.getLogger(__name__)


class Result(StrEnum):
    DONE = "done"  # converged (or nothing to do)
    RETRY = "retry"  # transient failure: try again later
    FAILED = "failed"  # permanent failure, recorded in status


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    generation: int = 0
    error: SandboxdError | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: The desired state moved while this pass ran (another replica's intake): run one more pass, so a slow,
    #: older pass can never be the last word on what is applied.
    again: bool = False


def object_refs(rendered: RenderedSandbox) -> tuple[ObjectRef, ...]:
    return statuses.object_refs((m.api_version, m.kind, m.name, m.namespace) for m in rendered.manifests)


@dataclass(slots=True)
class _EventCommand:
    """The scale command one status write of a pass calls for, decided from the record that write replaces.

    ``noting`` wraps the pass's transition: each compare-and-set attempt decides again, so after the write
    ``action`` is the decision on the record actually replaced. ``enabled`` False (no sink): never a command."""

    desired: DesiredState
    enabled: bool
    action: Action | None = None

    def noting(self, transition: Transition) -> Transition:
        if not self.enabled:
            return transition

        def noted(previous: SandboxStatus | None) -> SandboxStatus:
            new = transition(previous)
            self.action = idle.scale_after_event(previous, self.desired)
            if self.action is None:
                return new
            reason = idle.idle_reason(self.desired)
            return statuses.activity_observed(
                new, sandbox_id=self.desired.sandbox_id, now=new.updated_at, reason=reason, set_reason=True
            )

        return noted


class _Stopwatch:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._mark = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round((now - self._mark) * 1000, 3)
        self._mark = now


class Reconciler:
    def __init__(
        self,
        *,
        desired: Store[DesiredState],
        owners: Store[OwnerClaim],
        status: StatusWriter,
        applier: Applier,
        settings: RuntimeSettings,
        render: Renderer,
        clock: Clock,
        tracer: Tracer | None = None,
        metrics: Instruments | None = None,
        token_revisions: bool = False,
        commands: CommandSink | None = None,
    ) -> None:
        """``token_revisions``: a token writer records LLM-gateway token revisions in status
        (``reconcile.tokens``); each pass reads the revision and stamps it on the pod templates (G3).
        ``commands``: where the scale command of a suspend or resume goes (None: no commands, no reason noted;
        the service passes none when its idle sweeper is off)."""
        self._desired = desired
        self._owners = owners
        self._status = status
        self._applier = applier
        self._settings = settings
        self._render = render
        self._clock = clock
        self._tracer = tracer
        self._metrics = metrics or noop_instruments()
        self._token_revisions = token_revisions
        self._commands = commands
        # Rendering is pure: the same (sandbox, incarnation, generation, workload) renders the same objects, so
        # resyncs and readiness kicks reuse the last result instead of rendering again. The incarnation keeps a
        # re-created sandbox from ever getting an earlier life's render, whatever its generation.
        self._rendered: Lru[tuple[str, int, int, Workload, int], RenderedSandbox] = Lru(256)

    async def reconcile(self, sandbox_id: SandboxId, after_intake: bool = False) -> Outcome:
        """One pass. ``after_intake``: the pass follows events this process's intake just recorded, so it starts
        from the desired state the store remembers instead of reading it (if another replica wrote a newer one
        meanwhile, the check after applying sees it and asks for another pass)."""
        started = time.perf_counter()
        try:
            outcome = await self._reconcile(sandbox_id, after_intake)
        except Exception:
            self._metrics.reconciled(time.perf_counter() - started, "error")
            raise
        self._metrics.reconciled(time.perf_counter() - started, str(outcome.result))
        return outcome

    async def _reconcile(self, sandbox_id: SandboxId, after_intake: bool) -> Outcome:
        watch = _Stopwatch()
        start_ns = time.time_ns() if self._tracer is not None else 0
        key = naming.desired_key(sandbox_id)
        stored = (self._desired.recent(key) if after_intake else None) or await self._desired.get(key)
        watch.lap("read")
        if stored is None:
            return Outcome(Result.DONE)
        desired = stored.value
        with (
            logs.bound(sandbox_id=sandbox_id, event_id=desired.event_id),
            tracing.reconciling(
                self._tracer,
                sandbox_id=sandbox_id,
                generation=desired.generation,
                traceparent=desired.traceparent,
                start_time_ns=start_ns,
            ) as span,
        ):
            outcome = await self._converge(desired, stored.revision, watch)
            if span is not None:
                span.set_attribute("sandboxd.reconcile.result", str(outcome.result))
                if outcome.error is not None:
                    tracing.fail(span, outcome.error.reason, outcome.error.message)
        return outcome

    async def _converge(self, desired: DesiredState, revision: int, watch: _Stopwatch) -> Outcome:
        try:
            token_revision = await self._token_revision(desired)
            with tracing.stage(self._tracer, "render"):
                rendered = self._render_cached(desired, token_revision)
            watch.lap("render")
            if desired.lifecycle is Lifecycle.DELETED:
                return await self._delete(desired, revision, rendered, watch)
            return await self._apply(desired, revision, rendered, watch)
        except (PermanentError, RetryableError) as exc:
            error: SandboxdError = exc
        retryable = isinstance(error, RetryableError)
        event = self._event_command(desired)
        with tracing.stage(self._tracer, "write status"):
            await self._status.write(
                desired.sandbox_id,
                event.noting(
                    lambda prev: statuses.failed(
                        prev, desired=desired, error=error, retryable=retryable, now=self._clock()
                    )
                ),
            )
        await self._send(event)
        return Outcome(Result.RETRY if retryable else Result.FAILED, desired.generation, error, watch.timings)

    async def _token_revision(self, desired: DesiredState) -> int:
        """The LLM-gateway token revision of this incarnation the token writer recorded; 0 when none."""
        if not self._token_revisions or desired.lifecycle is Lifecycle.DELETED:
            return 0
        status = await self._status.read(desired.sandbox_id)
        token = status.token if status is not None else None
        return token.revision if token is not None and token.incarnation == desired.incarnation else 0

    def _render_cached(self, desired: DesiredState, token_revision: int = 0) -> RenderedSandbox:
        workload = workload_of(desired)
        key = (desired.sandbox_id, desired.incarnation, desired.generation, workload, token_revision)
        rendered = self._rendered.get(key)
        if rendered is None:
            request = RenderRequest(
                sandbox_id=desired.sandbox_id,
                spec=desired.spec,
                workload=workload,
                token_revision=str(token_revision) if token_revision else None,
            )
            rendered = self._render(request, self._settings)
            self._rendered.put(key, rendered)
        return rendered

    async def _apply(
        self, desired: DesiredState, revision: int, rendered: RenderedSandbox, watch: _Stopwatch
    ) -> Outcome:
        with tracing.stage(self._tracer, "apply"):
            try:
                result = await self._applier.apply(rendered, generation=desired.generation)
            except SandboxdError as exc:
                self._metrics.apply_failed(exc.reason)
                raise
        watch.lap("apply")
        timings = dict(watch.timings)

        def transition(prev: SandboxStatus | None) -> SandboxStatus:
            return statuses.applied(
                prev,
                desired=desired,
                namespace=rendered.namespace,
                endpoint=rendered.endpoint,
                objects=result.applied or object_refs(rendered),
                replicas=rendered.replicas,
                ready=result.ready_replicas,
                timings_ms=timings,
                now=self._clock(),
            )

        event = self._event_command(desired)
        with tracing.stage(self._tracer, "write status"):
            await self._status.write(desired.sandbox_id, event.noting(transition))
        await self._send(event)
        watch.lap("status")
        latest = await self._desired.get(naming.desired_key(desired.sandbox_id))
        if latest is None:
            await self._take_back(rendered)
            return Outcome(Result.DONE, desired.generation, timings_ms=watch.timings)
        return Outcome(Result.DONE, desired.generation, timings_ms=watch.timings, again=latest.revision != revision)

    def _event_command(self, desired: DesiredState) -> _EventCommand:
        return _EventCommand(desired, enabled=self._commands is not None)

    async def _send(self, event: _EventCommand) -> None:
        """Send the scale command the status write called for, if any; a failed publish is the sink's to keep
        and send again, so it is logged and the pass goes on."""
        if event.action is None or self._commands is None:
            return
        command = scaling.scale_command(event.desired, event.action, now=self._clock())
        try:
            await self._commands.send(command)
        except SandboxdError as exc:
            log.warning(
                "sandbox %s: scale command %s not published, kept to send again: %s",
                command.sandbox_id,
                command.command_id,
                exc.message,
            )
            return
        log.info("sandbox %s: %s command %s published", command.sandbox_id, event.action, command.command_id)

    async def _take_back(self, rendered: RenderedSandbox) -> None:
        """The sandbox was deleted (its deletion done by another replica, the desired state removed) while this
        pass applied an older desired state: remove what this pass put back, as a retained delete (a late pass
        never deletes data). Best effort: if the target refuses now, the runtime stays until the next delete."""
        try:
            with tracing.stage(self._tracer, "delete"):
                await self._applier.delete(rendered, purge=False)
        except SandboxdError as exc:
            self._metrics.apply_failed(exc.reason)
            log.warning(
                "sandbox %s was deleted while a pass applied it; removing it again failed: %s",
                rendered.sandbox_id,
                exc.message,
            )
            return
        log.info("sandbox %s was deleted while a pass applied it; removed it again", rendered.sandbox_id)

    async def _delete(
        self, desired: DesiredState, revision: int, rendered: RenderedSandbox, watch: _Stopwatch
    ) -> Outcome:
        with tracing.stage(self._tracer, "delete"):
            try:
                await self._applier.delete(rendered, purge=desired.purge)
            except SandboxdError as exc:
                self._metrics.apply_failed(exc.reason)
                raise
        watch.lap("delete")
        timings = dict(watch.timings)
        with tracing.stage(self._tracer, "write status"):
            await self._status.write(
                desired.sandbox_id,
                lambda prev: statuses.deleted(prev, desired=desired, timings_ms=timings, now=self._clock()),
            )
        await self._release_owner(desired)
        try:
            # Only if no newer event arrived meanwhile (a create right after a delete must survive).
            await self._desired.delete(naming.desired_key(desired.sandbox_id), revision=revision)
        except RetryableError:  # a newer event arrived during the deletion: reconcile it
            return Outcome(Result.DONE, desired.generation, timings_ms=watch.timings, again=True)
        watch.lap("status")
        return Outcome(Result.DONE, desired.generation, timings_ms=watch.timings)

    async def _release_owner(self, desired: DesiredState) -> None:
        key = naming.owner_key(desired.owner_uid)
        claim = await self._owners.get(key)
        if claim is not None and claim.value.sandbox_id == desired.sandbox_id:
            try:
                await self._owners.delete(key, revision=claim.revision)
            except RetryableError:
                return
