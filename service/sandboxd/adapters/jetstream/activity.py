"""The idle lifecycle on JetStream: activity in, desired states watched, scale commands out and in.

- ``ActivityFeed``: an ordered (ephemeral, unacknowledged) consumer over SANDBOX_ACTIVITY that starts with the
  last report per subject and then follows new ones, filling an ``ActivityBook``. The stream keeps only the
  newest report per sandbox, so a restart replays one message per sandbox. A report counts as received when the
  stream stored it (its timestamp, the same on a replay), which caps its ``lastActivityAt``.
- ``DesiredFeed``: a watch over the desired-state bucket, the sweeper's view of every sandbox (no KV read per
  sandbox per sweep).
- ``JetStreamCommands`` / ``JetStreamActivity``: publish scale commands (``Nats-Msg-Id`` = command id) and
  probed activity reports (``Nats-Msg-Id`` = sandbox id and report, so replicas probing the same answer store
  it once).
- ``bind_scale_commands`` and ``scale_dead_letters``: what the sibling scaler consumes and where it puts a
  command it cannot carry out.

Ordering: nats-py runs one subscription's callbacks one at a time, in stream order; the watch is drained by one
task. Both recover from a server restart on their own (ordered consumers recreate themselves after missed
heartbeats); what they hold meanwhile is at worst a little old, which the sweeper tolerates.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Protocol

import anyio
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.kv import KV_DEL, KV_PURGE
from pydantic import ValidationError

from sandboxd import naming
from sandboxd.adapters.jetstream import headers
from sandboxd.adapters.jetstream.deliveries import EventSource
from sandboxd.adapters.jetstream.errors import boundary
from sandboxd.adapters.jetstream.publishing import JetStreamDeadLetters, publish, publish_scale
from sandboxd.adapters.jetstream.watching import ReplayEnd
from sandboxd.errors import BrokerUnavailable
from sandboxd.models.activity import ActivityReport, ScaleCommand
from sandboxd.models.bounds import quote
from sandboxd.models.desired import DesiredState
from sandboxd.models.sharing import Sharing
from sandboxd.naming import SandboxId
from sandboxd.reconcile.activity import ActivityBook
from sandboxd.reconcile.ports import Versioned

log = logging.getLogger(__name__)

ACTIVITY_PREFIX = naming.activity_subject("")

#: How often, and how far apart, the feed asks again for a consumer that reset itself while starting.
RESET_ASKS = 25
RESET_PAUSE_S = 0.2
#: The least time between two warnings about malformed activity reports, s.
IGNORED_WARNING_EVERY_S = 60.0


def parse_activity(subject: str, data: bytes) -> tuple[SandboxId, ActivityReport] | None:
    """``sandbox.activity.<id>`` and its JSON body → (id, report); ``None`` for anything malformed."""
    sandbox_id = subject.removeprefix(ACTIVITY_PREFIX)
    if sandbox_id == subject or not naming.is_sandbox_id(sandbox_id):
        return None
    try:
        report = ActivityReport.model_validate_json(data)
    except ValidationError:
        return None
    if report.sandbox_id is not None and report.sandbox_id != sandbox_id:
        return None
    return SandboxId(sandbox_id), report  # checked above (is_sandbox_id)


class ActivityFeed:
    """Keeps an ``ActivityBook`` up to date from SANDBOX_ACTIVITY; ``book.ready`` once the replay is done."""

    def __init__(self, js: JetStreamContext, book: ActivityBook) -> None:
        self._js = js
        self.book = book
        self.ignored = 0
        self._warned_at: float | None = None
        self._warned_count = 0
        self._last_ignored = ""
        self._sub: JetStreamContext.PushSubscription | None = None

    async def start(self) -> None:
        """Subscribe (``BrokerUnavailable`` when JetStream cannot answer now: the caller retries; a failed start
        leaves no subscription behind)."""
        with boundary(f"following {naming.ACTIVITY_STREAM}"):
            self._sub = await self._js.subscribe(
                naming.ACTIVITY_SUBJECTS,
                stream=naming.ACTIVITY_STREAM,
                cb=self._on_message,
                ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
            )
        try:
            pending = await self._replay_pending(self._sub)
        except BaseException:
            await self.close()
            raise
        if pending == 0 and self._sub.delivered == 0:
            self.book.ready = True  # nothing to replay

    @staticmethod
    async def _replay_pending(sub: JetStreamContext.PushSubscription) -> int | None:
        """Reports the replay still has to deliver. An ordered consumer that missed its heartbeats (a starved
        process) resets itself and is re-created under a new name in the background, so the name asked about
        can be gone for a moment: ask again (``BrokerUnavailable`` if it stays gone)."""
        with boundary(f"following {naming.ACTIVITY_STREAM}"):
            for _ in range(RESET_ASKS):
                try:
                    return (await sub.consumer_info()).num_pending
                except nats.js.errors.NotFoundError:
                    await anyio.sleep(RESET_PAUSE_S)
        raise BrokerUnavailable(f"following {naming.ACTIVITY_STREAM}: its consumer is still being re-created")

    async def _on_message(self, msg: Msg) -> None:
        try:
            parsed = parse_activity(msg.subject, msg.data)
            if parsed is not None:
                self.book.record(*parsed, received_at=msg.metadata.timestamp)
        except Exception as exc:  # noqa: BLE001 - one odd report never stops the feed
            log.warning("activity report on %s: unexpected %s", quote(msg.subject), exc.__class__.__name__)
            parsed = None
        if parsed is None:
            self._ignore(msg.subject)
        else:
            self._say_ignored()  # the ones held back, once their minute has passed
        if not self.book.ready and msg.metadata.num_pending == 0:
            self.book.ready = True

    def _ignore(self, subject: str) -> None:
        """Count a report that does not parse; say so at WARNING, at most once a minute (a broken reporter
        publishes every few seconds): the first at once, the rest in the next warning (``_say_ignored``)."""
        self.ignored += 1
        self._last_ignored = subject
        self._say_ignored()

    def _say_ignored(self, *, now: float | None = None) -> None:
        """Warn of the reports ignored since the last warning, if any and if a minute has passed (or ``now`` is
        ``inf``: on close)."""
        since = self.ignored - self._warned_count
        now = time.monotonic() if now is None else now
        if not since or (self._warned_at is not None and now - self._warned_at < IGNORED_WARNING_EVERY_S):
            return
        self._warned_at, self._warned_count = now, self.ignored
        log.warning(
            "ignored %d malformed activity report(s), the last on %s: not {lastActivityAt, activeSessions} "
            "(sandboxId, if given, must match the subject's id)",
            since,
            quote(self._last_ignored),
        )

    async def close(self) -> None:
        self._say_ignored(now=float("inf"))
        if self._sub is not None:
            with contextlib.suppress(Exception):  # closing on a closed connection is not an error
                await self._sub.unsubscribe()


class Records(Protocol):
    """Where the feed gets parsed records (``KvStore``: it shares the ones the service's store already parsed)."""

    def held(self, key: str, revision: int) -> Versioned[DesiredState] | None: ...

    def decode(self, key: str, data: bytes, revision: int, *, remember: bool = ...) -> Versioned[DesiredState]: ...


class DesiredFeed:
    """``reconcile.ports.DesiredView`` over a watch of the desired-state bucket.

    The service's own store wrote most of these revisions: the feed keeps the very record the store parsed when
    it still holds it, and otherwise keeps the entry as it came and parses it when a sweep first looks at it
    (``snapshot``), so a sandbox updated many times between two sweeps is parsed at most once. Every record it
    keeps has its parts shared with equal ones (``models.sharing``): one per sandbox is most of a replica's
    memory at scale, and most of each equals other sandboxes'.
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        records: Records,
        bucket: str = naming.DESIRED_BUCKET,
    ) -> None:
        self._js = js
        self._bucket = bucket
        self._parsed = records
        self._sharing = Sharing()
        self._records: dict[str, Versioned[DesiredState]] = {}
        self._unparsed: dict[str, tuple[bytes, int]] = {}  # newer than the parsed record of the same key
        self._ready = False
        self.ignored = 0

    @property
    def ready(self) -> bool:
        return self._ready

    def snapshot(self) -> Iterable[Versioned[DesiredState]]:
        for key, (data, revision) in self._unparsed.items():
            try:
                self._records[key] = self._shared(self._parsed.decode(key, data, revision, remember=False))
            except ValidationError:
                self.ignored += 1
                self._records.pop(key, None)
                log.warning("desired state %s does not parse; the sweeper leaves it alone", key)
        self._unparsed.clear()
        return list(self._records.values())

    def note(self, record: Versioned[DesiredState]) -> None:
        key = record.value.sandbox_id
        if self._revision(key) <= record.revision:
            self._records[key] = self._shared(record)
            self._unparsed.pop(key, None)

    def __len__(self) -> int:
        return len(self._records.keys() | self._unparsed.keys())

    async def run(self) -> None:
        """Follow the bucket until cancelled (start it in a task group; ``ready`` turns true after the replay).

        Returns only when the watch ends (its connection closed); the caller starts it again. An entry that
        cannot be taken in is skipped and counted, never the end of the watch.
        """
        with boundary(f"watching KV bucket {self._bucket}"):
            kv = await self._js.key_value(self._bucket)
            watcher = await kv.watchall()
        replay = ReplayEnd(watcher)
        try:
            async for entry in watcher:
                if entry is not None:
                    try:
                        self._apply(entry.key, entry.value, entry.revision, entry.operation)
                    except Exception as exc:  # noqa: BLE001 - one odd entry never stops the watch
                        self.ignored += 1
                        log.warning("desired-state watch: entry %s: unexpected %s", entry.key, exc.__class__.__name__)
                with boundary(f"watching KV bucket {self._bucket}"):
                    if await replay.ends(entry):
                        self._ready = True
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py leaves it unannotated

    def _shared(self, record: Versioned[DesiredState]) -> Versioned[DesiredState]:
        self._sharing.share(record.value)
        return record

    def _revision(self, key: str) -> int:
        unparsed, record = self._unparsed.get(key), self._records.get(key)
        return unparsed[1] if unparsed is not None else record.revision if record is not None else 0

    def _apply(self, key: str, value: bytes | None, revision: int | None, operation: str | None) -> None:
        if operation in (KV_DEL, KV_PURGE):
            self._records.pop(key, None)
            self._unparsed.pop(key, None)
            return
        if value is None or revision is None or self._revision(key) > revision:
            return  # nothing to keep, or this process already noted something newer
        record = self._parsed.held(key, int(revision))
        if record is not None:
            self._records[key] = self._shared(record)
            self._unparsed.pop(key, None)
        else:
            self._unparsed[key] = (value, int(revision))


class JetStreamCommands:
    """``reconcile.ports.CommandPublisher`` on SANDBOX_SCALE."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def publish(self, command: ScaleCommand) -> None:
        await publish_scale(self._js, command)


class JetStreamActivity:
    """``reconcile.ports.ActivityPublisher`` on SANDBOX_ACTIVITY."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def publish(self, sandbox_id: str, report: ActivityReport) -> None:
        at = report.last_activity_at.isoformat()
        msg_id = f"activity:{sandbox_id}:{at}:{report.active_sessions}"
        await publish(self._js, naming.activity_subject(sandbox_id), report.to_json(), {headers.MSG_ID: msg_id})


async def bind_scale_commands(js: JetStreamContext) -> EventSource:
    """Deliveries of the durable scaler consumer (created by the topology; never re-created here)."""
    return await EventSource.bind(js, stream=naming.SCALE_STREAM, durable=naming.SCALE_CONSUMER)


def scale_dead_letters(js: JetStreamContext) -> JetStreamDeadLetters:
    """Dead letters for scale commands: SANDBOX_DLQ, the same headers as dead events."""
    return JetStreamDeadLetters(js, stream=naming.SCALE_STREAM)
