"""JetStream KV buckets as ``sandboxd.reconcile.ports.Store``: pydantic JSON values, compare-and-set writes.

Each store remembers the last record it wrote or read per key (bounded). A revision names one exact value in
a bucket, so a get that returns a remembered revision is not parsed again, and ``recent`` lets callers skip
the read before a compare-and-set (a stale memory costs one failed write and a read, never a wrong write).

A put may ask the server to remove the record after a while (``expire_after_s``, per-message TTL): the status
projection's Deleted and Rejected records go that way, with no sweep over the keys.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from sandboxd.adapters.jetstream.errors import boundary
from sandboxd.errors import BrokerUnavailable, StoreConflict
from sandboxd.lru import Lru
from sandboxd.models.base import Contract
from sandboxd.reconcile.ports import Versioned

M = TypeVar("M", bound=Contract)


async def open_bucket(js: JetStreamContext, bucket: str) -> KeyValue:
    """The bucket, or ``BrokerUnavailable`` saying to run ``sandboxd init`` (retryable: it may come)."""
    with boundary(f"opening KV bucket {bucket}"):
        try:
            return await js.key_value(bucket)
        except BucketNotFoundError as exc:
            raise BrokerUnavailable(f"no KV bucket {bucket} on the server yet; run `sandboxd init`") from exc


class KvStore(Generic[M]):
    """One bucket holding one record type (``bucket`` names it in errors; ``open`` fills it in)."""

    def __init__(self, kv: KeyValue, model: type[M], *, bucket: str = "KV", remember: int = 1024) -> None:
        self._kv = kv
        self._model = model
        self._memo: Lru[str, Versioned[M]] = Lru(remember)
        self.bucket = bucket

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, model: type[M], *, remember: int = 1024) -> KvStore[M]:
        return cls(await open_bucket(js, bucket), model, bucket=bucket, remember=remember)

    async def get(self, key: str) -> Versioned[M] | None:
        with boundary(f"KV get {self.bucket}/{key}"):
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:  # deleted and purged keys too (KeyDeletedError is one)
                self._memo.drop(key)
                return None
        # An empty value is the marker the server leaves where an expired record was (nats-py returns it as is).
        if not entry.value or entry.revision is None:
            self._memo.drop(key)
            return None
        return self.decode(key, entry.value, int(entry.revision))

    def recent(self, key: str) -> Versioned[M] | None:
        return self._memo.get(key)

    def decode(self, key: str, data: bytes, revision: int, *, remember: bool = True) -> Versioned[M]:
        """The record an entry of this bucket holds, parsed once per revision this store remembers."""
        record = self.held(key, revision)
        if record is None:
            record = Versioned(self._model.model_validate_json(data), revision)
            if remember:
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
            if ttl_s is not None:
                return await self._put_expiring(key, data, revision=revision, ttl_s=ttl_s)
            if revision is None:
                return int(await self._kv.create(key, data))
            return int(await self._kv.update(key, data, last=revision))

    async def _expired_marker(self, key: str) -> int | None:
        """The revision of the marker the server left where an expired record was, if the key holds one (a
        create writes over it; nats-py's own create only knows the markers clients write)."""
        with boundary(f"KV get {self.bucket}/{key}"):
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                return None
        return int(entry.revision) if not entry.value and entry.revision is not None else None

    async def _put_expiring(self, key: str, data: bytes, *, revision: int | None, ttl_s: float) -> int:
        """Compare-and-set a record the server removes after ``ttl_s`` (``Nats-TTL``, nats-server 2.11+).

        It rolls up the key's history: were older revisions kept, the key would show the previous record again
        once this one expired. A later write without a TTL (a re-create) outlives it."""
        headers = {
            api.Header.ROLLUP.value: "sub",
            api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(revision or 0),
        }
        # nats-py's KeyValue.update takes no TTL; its subject prefix and JetStream context are the bucket's own.
        ack = await self._kv._js.publish(f"{self._kv._pre}{key}", data, headers=headers, msg_ttl=max(1, ttl_s))
        return int(ack.seq)

    async def delete(self, key: str, *, revision: int | None = None) -> None:
        self._memo.drop(key)
        with boundary(f"KV delete {self.bucket}/{key}"):
            await self._kv.delete(key, last=revision)

    async def keys(self) -> list[str]:
        with boundary(f"KV keys {self.bucket}"):
            try:
                return sorted(await self._kv.keys())
            except NoKeysError:
                return []
