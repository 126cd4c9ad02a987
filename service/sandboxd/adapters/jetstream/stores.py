"""JetStream KV buckets as ``sandboxd.reconcile.ports.Store``: pydantic JSON values, compare-and-set writes.

Each store remembers the last record it wrote or read per key (bounded). A revision names one exact value in
a bucket, so a get that returns a remembered revision is not parsed again, and ``recent`` lets callers skip
the read before a compare-and-set (a stale memory costs one failed write and a read, never a wrong write). The
memory never goes back to an older revision than it holds.

A get returns the current record: a bucket with more than one replica is read from its stream's leader, never
from a follower that may lag (``open_bucket``).

A put may ask the server to remove the record after a while (``expire_after_s``, per-message TTL): the status
projection's Deleted and Rejected records go that way, with no sweep over the keys.

Gets, creates and compare-and-set writes take the lean request path (``replies``: one shared inbox, a counter
token, a timer) instead of nats-py's ``KeyValue`` methods, and parse the answers themselves: a direct get of the
key's last message (``$JS.API.DIRECT.GET.<stream>.<subject>``; with more replicas than one, nats-py's get from
the leader), or a publish with ``Nats-Expected-Last-Subject-Sequence`` whose answer is the stream's JSON ack. The
answers mean what nats-py makes of them: a delete or purge marker, or the empty marker an expired record leaves,
is no record; a create onto such a marker writes over it; a lost race is JetStream's "wrong last sequence" (10071,
or 10164 from a cluster's leader), and every error goes through ``errors.boundary``, which makes that a
``StoreConflict``. Deletes and key listings stay nats-py's.
"""

from __future__ import annotations

import contextlib
import json
from typing import Final, Generic, TypeVar

import anyio
from nats.errors import NoRespondersError
from nats.js import JetStreamContext, api
from nats.js.client import KV_PRE_TEMPLATE, KV_STREAM_TEMPLATE
from nats.js.errors import (
    APIError,
    KeyNotFoundError,
    NoStreamResponseError,
    NotFoundError,
)
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue

from sandboxd.adapters.jetstream.errors import boundary
from sandboxd.adapters.jetstream.replies import replies_for
from sandboxd.adapters.jetstream.watching import ReplayEnd
from sandboxd.errors import BrokerUnavailable, StoreConflict
from sandboxd.lru import Lru
from sandboxd.models.base import Contract
from sandboxd.reconcile.ports import Versioned

M = TypeVar("M", bound=Contract)

#: The KV operations that leave a marker where a record was.
MARKERS: Final = frozenset({KV_DEL, KV_PURGE})


async def open_bucket(js: JetStreamContext, bucket: str) -> KeyValue:
    """The bucket, or ``BrokerUnavailable`` saying to run ``sandboxd init`` (retryable: it may come).

    Its gets are direct (answered by any replica) only when it has one replica, which is then its leader. With
    more, a direct get may be answered by a follower that lags behind the leader, for as long as it lags, and
    every read here decides something (the revision a compare-and-set expects, whether a newer desired state
    came while a pass applied): so at R3 a get asks the stream's leader (``$JS.API.STREAM.MSG.GET``)."""
    stream = KV_STREAM_TEMPLATE.format(bucket=bucket)
    with boundary(f"opening KV bucket {bucket}"):
        try:
            info = await js.stream_info(stream)
        except NotFoundError as exc:
            raise BrokerUnavailable(f"no KV bucket {bucket} on the server yet; run `sandboxd init`") from exc
    direct = bool(info.config.allow_direct) and (info.config.num_replicas or 1) == 1
    return KeyValue(name=bucket, stream=stream, pre=KV_PRE_TEMPLATE.format(bucket=bucket), js=js, direct=direct)


class KvStore(Generic[M]):
    """One bucket holding one record type (``bucket`` names it in errors; ``open`` fills it in)."""

    def __init__(self, kv: KeyValue, model: type[M], *, bucket: str = "KV", remember: int = 1024) -> None:
        self._kv = kv
        self._model = model
        self._memo: Lru[str, Versioned[M]] = Lru(remember)
        self.bucket = bucket
        # nats-py's KeyValue does not expose what a request needs: its subject prefix, stream and JetStream
        # context (whose connection, API prefix and timeout the lean path uses as nats-py would).
        js: JetStreamContext = kv._js
        self._replies = replies_for(js._nc)
        self._timeout: float = js._timeout
        self._pre: str = kv._pre
        self._direct_get = f"{js._prefix}.DIRECT.GET.{kv._stream}.{kv._pre}" if kv._direct else None

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, model: type[M], *, remember: int = 1024) -> KvStore[M]:
        return cls(await open_bucket(js, bucket), model, bucket=bucket, remember=remember)

    async def get(self, key: str) -> Versioned[M] | None:
        with boundary(f"KV get {self.bucket}/{key}"):
            last = await self._last(key)
        # A marker (deleted, purged, or where an expired record was: nats-py returns that one as is) is no record.
        if last is None or last[1] is None:
            self._memo.drop(key)
            return None
        return self.decode(key, last[1], last[0])

    async def _last(self, key: str) -> tuple[int, bytes | None] | None:
        """The revision and value of the key's last message (value ``None``: a marker); ``None``: never written
        or purged away. Raises nats-py's errors (the caller's boundary translates them)."""
        if self._direct_get is None:  # a bucket made without direct gets: nats-py's way
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError as gone:  # deleted and purged keys too (KeyDeletedError is one)
                revision = getattr(gone.entry, "revision", None)
                return (int(revision), None) if revision is not None else None
            return (int(entry.revision or 0), entry.value or None)
        reply = await self._replies.request(self._direct_get + key, b"", timeout=self._timeout)
        headers = reply.headers or {}
        if not reply.data and "Status" in headers:
            if headers["Status"] == "404":
                return None
            raise APIError.from_msg(reply)
        revision = int(headers["Nats-Sequence"])
        return (revision, None) if not reply.data or headers.get(KV_OP) in MARKERS else (revision, reply.data)

    def recent(self, key: str) -> Versioned[M] | None:
        return self._memo.get(key)

    def decode(self, key: str, data: bytes, revision: int, *, remember: bool = True) -> Versioned[M]:
        """The record an entry of this bucket holds, parsed once per revision this store remembers."""
        record = self.held(key, revision)
        if record is None:
            record = Versioned(self._model.model_validate_json(data), revision)
            known = self._memo.peek(key)
            if remember and (known is None or known.revision < revision):  # never back to an older revision
                self._memo.put(key, record)
        return record

    def held(self, key: str, revision: int) -> Versioned[M] | None:
        """The parsed record of exactly this revision, if this store still holds it (no I/O, no parsing)."""
        known = self._memo.peek(key)
        return known if known is not None and known.revision == revision else None

    async def put(self, key: str, value: M, *, revision: int | None, expire_after_s: float | None = None) -> int:
        data = value.to_json()
        try:
            try:
                written = await self._write(key, data, revision=revision, ttl_s=expire_after_s)
            except StoreConflict:
                marker = await self._expired_marker(key) if revision is None else None
                if marker is None:
                    raise
                written = await self._write(key, data, revision=marker, ttl_s=expire_after_s)
        except StoreConflict:
            self._memo.drop(key)
            raise
        known = self._memo.peek(key)
        if known is None or known.revision < written:  # two writes of one key may finish out of order
            self._memo.put(key, Versioned(value, written))
        return written

    async def _write(self, key: str, data: bytes, *, revision: int | None, ttl_s: float | None) -> int:
        with boundary(f"KV put {self.bucket}/{key}"):
            headers = {api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(revision or 0)}
            if ttl_s is not None:
                # It rolls up the key's history: were older revisions kept, the key would show the previous
                # record again once this one expired. A later write without a TTL (a re-create) outlives it.
                headers[api.Header.ROLLUP.value] = "sub"
                headers[api.Header.MSG_TTL.value] = str(int(max(1, ttl_s)))
            return await self._publish(key, data, headers)

    async def _publish(self, key: str, data: bytes, headers: dict[str, str]) -> int:
        """Publish one record to the bucket (a JetStream publish, the lean way) and return its revision."""
        try:
            reply = await self._replies.request(self._pre + key, data, timeout=self._timeout, headers=headers)
        except NoRespondersError as exc:
            raise NoStreamResponseError from exc
        answer = json.loads(reply.data)
        error = answer.get("error")
        if error is not None:  # nats-py raises the class the code names; the boundary reads its err_code
            APIError.from_error(error)
        return int(answer["seq"])

    async def _expired_marker(self, key: str) -> int | None:
        """The revision of the marker where a record was (deleted, purged, or expired), if the key's last message
        is one: a create writes over it, as nats-py's own create does for the markers clients write."""
        with boundary(f"KV get {self.bucket}/{key}"):
            last = await self._last(key)
        return last[0] if last is not None and last[1] is None else None

    async def delete(self, key: str, *, revision: int | None = None) -> None:
        self._memo.drop(key)
        with boundary(f"KV delete {self.bucket}/{key}"):
            await self._kv.delete(key, last=revision)

    async def keys(self) -> list[str]:
        """The keys that hold a value (a watch of the latest entry per key, headers only, read to its replay's end
        as ``watching.ReplayEnd`` decides it: nats-py's own ``keys()`` can stop before the first key arrives)."""
        keys: set[str] = set()
        with boundary(f"KV keys {self.bucket}"):
            watcher = await self._kv.watchall(meta_only=True)
            try:
                replay = ReplayEnd(watcher)
                while not replay.over:
                    entry = await watcher.updates(timeout=self._timeout)  # type: ignore[no-untyped-call]
                    if entry is not None and entry.operation in (KV_DEL, KV_PURGE):
                        keys.discard(entry.key)
                    elif entry is not None:
                        keys.add(entry.key)
                    await replay.ends(entry)
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await watcher.stop()  # type: ignore[no-untyped-call]
        return sorted(keys)
