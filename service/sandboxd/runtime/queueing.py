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
  that raises is reported as a failure like any other, never raised out of a worker: an error of the tree (a
  broker outage) logged once per run of failures without a traceback (``loops.FailureLog``), anything else
  (``UnexpectedError``, a bug) with its traceback every time.
  After a retried failure the queue holds no more passes for the key: the deliveries are nak'd with the
  per-key growing delay, and a kick without deliveries (resync, watch) is re-submitted after the same delay.
- Catch-up: while intake is behind (a fetch brought, or left in the stream, ``Backlog.threshold`` events or
  more: a burst), a worker waits before it starts a key, at most ``hold_cap_s`` after the key became ready,
  so the burst's later events for that key join the same pass. The wait is woken by the backlog easing, the
  settle period ending or the cap (``Backlog.wait``), not polled. With no backlog (normal load) keys start at
  once.
- ``close()`` hands back (nak, no delay) everything not started, lets running passes finish within the grace,
  then cancels them and hands back what they held.
- Time is injected (``runtime.clock.Clock``): the hold, the retry kicks, the heartbeat and the grace are all
  measured and slept on that clock, so tests advance a ``ManualClock`` instead of sleeping.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from sandboxd.errors import SandboxdError
from sandboxd.naming import SandboxId
from sandboxd.reconcile import reconciler
from sandboxd.reconcile.ports import Delivery
from sandboxd.runtime.clock import SYSTEM, Clock
from sandboxd.runtime.disposition import DONE, SHUTTING_DOWN, Disposition, Happened, Outcome
from sandboxd.runtime.loops import FailureLog
from sandboxd.telemetry.metrics import Instruments

log = logging.getLogger(__name__)

#: ``handler(key, after_intake)``: one pass for ``key``; ``after_intake`` is true when the pass settles events
#: this process's intake just recorded (it may start from the desired state the store remembers).
Handler = Callable[[SandboxId, bool], Awaitable[reconciler.Outcome]]


def reported(result: reconciler.Outcome, *, failures: int) -> Outcome:
    """A pass's result as the disposition's outcome (``failures``: this key's failed passes, this one included)."""
    if result.result is reconciler.Result.DONE:
        return DONE
    error = result.error or RuntimeError(f"pass ended {result.result.value} without an error")
    return Outcome.failed(error, where="reconcile", failures=failures)


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
    failures: int = 0


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
    ) -> None:
        self._handler = handler
        self._clock = clock
        self._on_unexpected = on_unexpected
        self._failures = FailureLog("reconcile")
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

    @property
    def closing(self) -> bool:
        """``close()`` was called: ``submit`` refuses work from now on."""
        return self._closing

    # --- intake side -----------------------------------------------------------------------------------

    def submit(self, key: SandboxId, delivery: Delivery | None = None) -> None:
        if self._closing:
            raise RuntimeError("queue is closing")
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
                state.failures = 0
                await self._disposition.settle(batch, outcome)
                continue
            self.stats.retries += 1
            held, state.pending = [*batch, *state.pending], []
            settled = await self._disposition.settle(held, outcome)
            if not held and settled.delay is not None:
                self._kick_later(key, settled.delay)
            return

    async def _one_pass(self, key: SandboxId, state: _Key) -> Outcome:
        """Run the handler once and report what happened; whatever it raises is this key's failure only."""
        try:
            result = await self._handler(key, bool(state.in_flight))
        except Exception as exc:  # one sandbox's bug never stops a worker
            if isinstance(exc, SandboxdError):  # expected (a broker outage): one line per run, no traceback
                self._failures.failed(exc, of=key)
            else:
                log.error("reconcile of %s raised %s", key, exc.__class__.__name__, exc_info=exc)
            if self._on_unexpected is not None:
                self._on_unexpected(exc)
            state.failures += 1
            return Outcome.failed(exc, where="reconcile", failures=state.failures)
        if result.result is reconciler.Result.RETRY:
            state.failures += 1
        if result.result is reconciler.Result.DONE:
            self._failures.succeeded()
            state.kicked = state.kicked or result.again
        return reported(result, failures=state.failures)

    async def _catch_up(self, state: _Key) -> None:
        """Let intake catch up with a backlog before this key's pass, within the cap (woken, never polling)."""
        while self._backlog.behind and not self._closing:
            left = state.ready_at + self._hold_cap_s - self._clock.now()
            if left <= 0:
                return
            await self._backlog.wait(left)

    def _kick_later(self, key: SandboxId, delay: float) -> None:
        async def later() -> None:
            await self._clock.sleep(delay)
            if not self._closing:
                self.submit(key)

        if self._tg is not None:
            self._tg.start_soon(later, name=f"retry-{key}")

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
