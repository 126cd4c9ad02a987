"""The keyed work queue: one reconcile at a time per sandbox, many sandboxes at once.

Ordering and concurrency:

- ``submit(key, delivery)`` never blocks. A key that is neither running nor waiting joins the back of a FIFO of
  ready keys; ``concurrency`` workers take keys from it.
- Kicks for a key that is waiting or running *coalesce*: their deliveries are held and all of them are settled
  by the next pass, which reads the newest desired state. So N events for a busy key cost one more pass.
- A delivery is acked only after a pass that *started after it arrived* has finished (its effect durable).
- Held deliveries are kept alive with ``in_progress`` every ``heartbeat_s``, so a long wait or a long
  reconcile is not redelivered elsewhere.
- Each pass's outcome goes to ``runtime.disposition``, which alone decides ack, nak or dead-letter. A pass
  that raises is reported as a failure like any other, never raised out of a worker.
- A sandbox's *run of failures* (``_Failing``: from its first failed pass to its next successful one) outlives
  the passes and the idle gaps between them, so the backoff keeps growing however the next pass comes: the count
  it grows with is the larger of the run's failed passes and the deliveries' own ``num_delivered`` (so it also
  grows across restarts and replicas while the event is redelivered). After a retried failure exactly one thing
  brings the next pass: the redelivery of a delivery it nak'd (with the growing delay), or else (a kick with no
  deliveries: resync, a watch, a token mint; or deliveries that ran out) a retry kick the queue schedules after
  the same delay. A kick that comes while that retry is scheduled joins it instead of running a pass at once, and
  a kick that came during the failed pass is absorbed by it; a new event still runs at once (it may be the fix).
- Logging: a sandbox's failures are logged once per run (again when the kind of error changes), one INFO line
  when it recovers: a WARNING with the error's message for an error of the tree, an ERROR with the traceback
  for anything else (a bug). An error of the tree *raised* out of a pass is a broker outage that fails every
  sandbox at once, and is logged once per run for the whole queue instead (``loops.FailureLog``).
- Catch-up: while intake is behind (a fetch brought, or left in the stream, ``Backlog.threshold`` events or
  more: a burst), a worker waits before it starts a key, at most ``hold_cap_s`` after the key became ready,
  so the burst's later events for that key join the same pass. The wait is woken by the backlog easing, the
  settle period ending or the cap (``Backlog.wait``), not polled. With no backlog (normal load) keys start at
  once.
- ``close()`` hands back (nak, no delay) everything not started, lets running passes finish within the grace,
  then cancels them and hands back what they held.
- Time is injected (``runtime.clock.Clock``): the hold, the retry kicks, the heartbeat and the grace are all
  measured and slept on that clock, so tests advance a ``ManualClock`` instead of sleeping.
- Memory: one ``_Key`` per sandbox with work waiting, running or held; one ``_Failing`` per sandbox whose last
  pass here failed, dropped at its next success, and at most ``failing_capacity`` of them (the least recently
  failed goes first: its backoff starts again from the base, and its next failure is said again).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from sandboxd.errors import SandboxdError
from sandboxd.lru import Lru
from sandboxd.naming import SandboxId
from sandboxd.reconcile import reconciler
from sandboxd.reconcile.ports import Delivery
from sandboxd.runtime.clock import SYSTEM, Clock
from sandboxd.runtime.disposition import DONE, SHUTTING_DOWN, Action, Disposition, Happened, Outcome, Settlement
from sandboxd.runtime.loops import FailureLog
from sandboxd.telemetry.metrics import Instruments

log = logging.getLogger(__name__)

#: ``handler(key, after_intake)``: one pass for ``key``; ``after_intake`` is true when the pass settles events
#: this process's intake just recorded (it may start from the desired state the store remembers).
Handler = Callable[[SandboxId, bool], Awaitable[reconciler.Outcome]]


@dataclass
class Backlog:
    """What the consume loop knows about the events not yet admitted; read by the queue's workers.

    Workers holding a key wait on it without polling: ``wait(limit_s)`` returns when intake stops being behind
    by count (a fetch or an admission brought ``waiting`` under the threshold, or the loop lost its room), when
    the settle period after the last burst-sized batch ends, or after ``limit_s``, whichever comes first.
    """

    waiting: int = 0  # events not yet admitted: the batch being admitted and those still in the stream
    #: Fewer waiting events than this is normal traffic arriving during a fetch, not a backlog worth waiting
    #: for: holding then would only add latency.
    threshold: int = 64
    #: During a burst, intake and the publishers race: the stream empties for a moment and fills again. Intake
    #: counts as behind until this long after it admitted the last burst-sized batch, so such a dip does not
    #: start every held sandbox only for its next events to need another pass.
    settle_s: float = 0.25
    clock: Clock = field(default=SYSTEM, repr=False)
    _pending: int = field(default=0, repr=False)
    _burst_admitted_at: float = field(default=-math.inf, repr=False)
    _room: bool = field(default=True, repr=False)
    #: Set (and replaced) when ``behind`` may have turned false other than by time passing.
    _eased: anyio.Event | None = field(default=None, repr=False)

    @property
    def room(self) -> bool:
        """The consume loop may still fetch (held deliveries below its limit)."""
        return self._room

    @room.setter
    def room(self, value: bool) -> None:
        self._room = value
        if not value:
            self._ease()

    def fetched(self, count: int, pending: int) -> None:
        """A fetch brought ``count`` events (intake admits them next) and left ``pending`` in the stream."""
        self.waiting, self._pending = count + pending, pending
        if self.waiting < self.threshold:
            self._ease()

    def admitted(self) -> None:
        """Intake has admitted the last fetch."""
        if self.waiting >= self.threshold:
            self._burst_admitted_at = self.clock.now()
        self.waiting = self._pending
        if self.waiting < self.threshold:
            self._ease()

    @property
    def behind(self) -> bool:
        settling = self.clock.now() - self._burst_admitted_at < self.settle_s
        return (self.waiting >= self.threshold or settling) and self.room

    async def wait(self, limit_s: float) -> None:
        """Until ``behind`` may have changed, at most ``limit_s`` (see the class docstring)."""
        if self.waiting < self.threshold:  # only the settle period holds: it ends by time alone
            limit_s = min(limit_s, self._burst_admitted_at + self.settle_s - self.clock.now())
        if self._eased is None:
            self._eased = anyio.Event()
        eased = self._eased

        async def timeout() -> None:
            await self.clock.sleep(max(0.0, limit_s))
            tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(timeout)
            await eased.wait()
            tg.cancel_scope.cancel()

    def _ease(self) -> None:
        if self._eased is not None:
            self._eased.set()
            self._eased = None


@dataclass
class _Key:
    pending: list[Delivery] = field(default_factory=list)
    ready_at: float = 0.0
    in_flight: list[Delivery] = field(default_factory=list)
    kicked: bool = False
    waiting: bool = False
    running: bool = False


@dataclass
class _Failing:
    """One sandbox's run of failures: from its first failed pass to its next successful one.

    Kept apart from ``_Key`` (dropped whenever the sandbox has no work) so the backoff and the log survive the
    gaps between the run's passes, however each pass was brought (a redelivery, a retry kick, a resync).
    """

    sandbox_id: SandboxId
    passes: int = 0  # failed passes in this run, for the log
    failures: int = 0  # what the backoff grows with: failed passes, or the deliveries' count when larger
    kind: str = ""  # the error class last logged
    retry: anyio.CancelScope | None = None  # the scheduled retry kick, if any

    def failed(self, error: BaseException, *, delivered: int, retried: bool, logged: bool = True) -> int:
        """Count one failed pass (``delivered``: the most any of its deliveries was delivered); the count the
        backoff grows with. ``logged`` False: the queue's outage log speaks for this one."""
        self.passes += 1
        self.failures = max(self.failures + 1, delivered)
        kind = error.__class__.__name__
        if logged and kind != self.kind:
            self.kind = kind
            if isinstance(error, SandboxdError):
                then = "retrying" if retried else "not retried"
                log.warning("reconcile of %s failed: %s; %s", self.sandbox_id, error.message, then)
            else:
                log.error("reconcile of %s raised %s", self.sandbox_id, kind, exc_info=error)
        return self.failures

    def recovered(self) -> None:
        self.cancel_retry()
        if self.kind:  # said only when its failures were (a broker outage's are the queue's to say)
            log.info("reconcile of %s recovered after %d failed attempts", self.sandbox_id, self.passes)

    def cancel_retry(self) -> None:
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None


@dataclass
class QueueStats:
    passes: int = 0
    retries: int = 0
    failures: int = 0


class KeyedQueue:
    def __init__(
        self,
        *,
        handler: Handler,
        disposition: Disposition,
        concurrency: int,
        heartbeat_s: float = 10.0,
        backlog: Backlog | None = None,
        hold_cap_s: float = 2.0,
        metrics: Instruments | None = None,
        on_unexpected: Callable[[BaseException], None] | None = None,
        clock: Clock = SYSTEM,
        failing_capacity: int = 50_000,
    ) -> None:
        self._handler = handler
        self._clock = clock
        self._on_unexpected = on_unexpected
        self._outage = FailureLog("reconcile")  # errors of the tree raised out of a pass: the broker's
        self._failing: Lru[SandboxId, _Failing] = Lru(failing_capacity)
        self._disposition = disposition
        self._concurrency = concurrency
        self._heartbeat_s = heartbeat_s
        self._backlog = backlog or Backlog(clock=clock)
        self._hold_cap_s = hold_cap_s
        self._keys: dict[SandboxId, _Key] = {}
        # Each key is in this FIFO at most once (only when neither waiting nor running), so it cannot grow
        # beyond the number of distinct sandboxes.
        self._ready_in, self._ready_out = anyio.create_memory_object_stream[SandboxId](max_buffer_size=math.inf)
        self._closing = False
        self._tg: TaskGroup | None = None
        self._pass_ended = anyio.Event()
        self.stats = QueueStats()
        if metrics is not None:
            metrics.watch_queue(depth=lambda: self.depth, held=lambda: self.held)

    # --- introspection ---------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Keys waiting for a worker."""
        return self._ready_out.statistics().current_buffer_used

    @property
    def held(self) -> int:
        """Deliveries held (waiting or in flight), i.e. not yet settled."""
        return sum(len(k.pending) + len(k.in_flight) for k in self._keys.values())

    def idle(self) -> bool:
        return not self._keys

    def failing(self, key: SandboxId) -> int:
        """The count ``key``'s backoff grows with now: 0 unless its last pass failed."""
        run = self._failing.peek(key)
        return run.failures if run is not None else 0

    @property
    def closing(self) -> bool:
        """``close()`` was called: ``submit`` refuses work from now on."""
        return self._closing

    # --- intake side -----------------------------------------------------------------------------------

    def submit(self, key: SandboxId, delivery: Delivery | None = None) -> None:
        if self._closing:
            raise RuntimeError("queue is closing")
        run = self._failing.peek(key)
        if delivery is None and key not in self._keys and run is not None and run.retry is not None:
            return  # backing off: the scheduled retry is this kick's pass
        state = self._keys.setdefault(key, _Key())
        if delivery is None:
            state.kicked = True
        else:
            state.pending.append(delivery)
        if not state.running and not state.waiting:
            self._enqueue(key, state)

    def _enqueue(self, key: SandboxId, state: _Key) -> None:
        state.waiting = True
        state.ready_at = self._clock.now()
        self._ready_in.send_nowait(key)

    # --- workers ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the workers and the heartbeat until ``close()``; returns once everything is settled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._heartbeat, name="queue-heartbeat")
            async with anyio.create_task_group() as workers:
                for index in range(self._concurrency):
                    workers.start_soon(self._worker, name=f"queue-worker-{index}")
            tg.cancel_scope.cancel()

    async def _worker(self) -> None:
        async for key in self._ready_out.clone():
            state = self._keys[key]
            await self._catch_up(state)
            state.waiting, state.running = False, True
            try:
                await self._passes(key, state)
            finally:
                state.running = False
                self._pass_ended.set()
                if (state.pending or state.kicked) and not self._closing:
                    self._enqueue(key, state)
                elif not (state.in_flight or state.pending or state.kicked):
                    self._keys.pop(key, None)

    async def _passes(self, key: SandboxId, state: _Key) -> None:
        while (state.pending or state.kicked) and not self._closing:
            state.in_flight, state.pending, state.kicked = state.pending, [], False
            outcome = await self._one_pass(key, state)
            self.stats.passes += 1
            batch, state.in_flight = state.in_flight, []
            if not outcome.retried:
                if outcome.happened is not Happened.DONE:
                    self.stats.failures += 1
                    self._gave_up(key)
                await self._disposition.settle(batch, outcome)
                continue
            self.stats.retries += 1
            # Everything that waited for this pass waits for the retry: nak'd with the delay, or kicked after it.
            held, state.pending = [*batch, *state.pending], []
            settled = await self._disposition.settle(held, outcome)
            state.kicked = False  # a kick during the pass or its settling: the retry is its pass
            self._retry(key, settled)
            return

    async def _one_pass(self, key: SandboxId, state: _Key) -> Outcome:
        """Run the handler once and report what happened; whatever it raises is this key's failure only."""
        try:
            result = await self._handler(key, bool(state.in_flight))
        except Exception as exc:  # noqa: BLE001 - one sandbox's bug never stops a worker (logged by its run)
            outage = isinstance(exc, SandboxdError)  # expected (a broker outage): one line for the whole queue
            if outage:
                self._outage.failed(exc, of=key)
            if self._on_unexpected is not None:
                self._on_unexpected(exc)
            return self._failed(key, state, exc, retried=True, logged=not outage)
        if result.result is reconciler.Result.DONE:
            self._outage.succeeded()
            if (run := self._failing.peek(key)) is not None:
                self._failing.drop(key)
                run.recovered()
            state.kicked = state.kicked or result.again
            return DONE
        error = result.error or RuntimeError(f"pass ended {result.result.value} without an error")
        return self._failed(key, state, error, retried=result.result is reconciler.Result.RETRY)

    def _failed(
        self, key: SandboxId, state: _Key, error: BaseException, *, retried: bool, logged: bool = True
    ) -> Outcome:
        run = self._run_of(key)
        delivered = max((d.num_delivered for d in state.in_flight), default=0)
        failures = run.failed(error, delivered=delivered, retried=retried, logged=logged)
        return Outcome.failed(error, where="reconcile", failures=failures)

    def _run_of(self, key: SandboxId) -> _Failing:
        """``key``'s run of failures, a new one if it has none (or it was evicted)."""
        run = self._failing.get(key)
        if run is None:
            run = _Failing(key)
            self._failing.put(key, run)
        return run

    def _retry(self, key: SandboxId, settled: Settlement) -> None:
        """After a retried failure: the redelivery of a nak'd delivery brings the next pass, or a retry kick."""
        run = self._run_of(key)
        run.cancel_retry()
        if settled.delay is None or any(d.action is Action.NAK for d in settled.decisions) or self._tg is None:
            return
        scope = run.retry = anyio.CancelScope()

        async def later(delay: float) -> None:
            with scope:
                await self._clock.sleep(delay)
                run.retry = None
                if not self._closing:
                    self.submit(key)

        self._tg.start_soon(later, settled.delay, name=f"retry-{key}")

    def _gave_up(self, key: SandboxId) -> None:
        """A permanent failure (the status says Failed): nothing is retried until a new event or a resync; the
        run goes on (said once) until a pass succeeds."""
        run = self._failing.peek(key)
        if run is not None:
            run.cancel_retry()

    async def _catch_up(self, state: _Key) -> None:
        """Let intake catch up with a backlog before this key's pass, within the cap (woken, never polling)."""
        while self._backlog.behind and not self._closing:
            left = state.ready_at + self._hold_cap_s - self._clock.now()
            if left <= 0:
                return
            await self._backlog.wait(left)

    async def _heartbeat(self) -> None:
        while True:
            await self._clock.sleep(self._heartbeat_s)
            for state in list(self._keys.values()):
                for delivery in [*state.pending, *state.in_flight]:
                    try:
                        await delivery.in_progress()
                    except Exception:  # noqa: BLE001 - a missed heartbeat only risks a redelivery
                        log.debug("in_progress failed")

    # --- shutdown --------------------------------------------------------------------------------------

    async def close(self, grace_s: float) -> None:
        """Stop taking work; hand back what has not started; give running passes ``grace_s`` to finish."""
        self._closing = True
        self._ready_in.close()  # workers finish their current key, then stop
        while True:
            try:
                key = self._ready_out.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            state = self._keys.get(key)
            if state is not None:
                await self._disposition.settle(state.pending, SHUTTING_DOWN)
                state.pending, state.waiting = [], False
        await self._drain(grace_s)
        leftovers = [d for k in self._keys.values() for d in (*k.pending, *k.in_flight)]
        await self._disposition.settle(leftovers, SHUTTING_DOWN)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _drain(self, grace_s: float) -> None:
        """Wait until no key is running, at most ``grace_s`` on the queue's clock."""

        async def deadline() -> None:
            await self._clock.sleep(grace_s)
            drained.cancel_scope.cancel()

        async with anyio.create_task_group() as drained:
            drained.start_soon(deadline, name="queue-grace")
            while any(k.running for k in self._keys.values()):
                self._pass_ended = anyio.Event()
                await self._pass_ended.wait()
            drained.cancel_scope.cancel()
