"""JetStream KV buckets as ``sandboxd.reconcile.ports.Store``: pydantic JSON values, compare-and-set writes."""

from __future__ import annotations

from typing import Generic, TypeVar

import nats.errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from sandboxd.errors import BrokerUnavailable, StoreConflict
from sandboxd.models.base import Contract
from sandboxd.reconcile.ports import Versioned

M = TypeVar("M", bound=Contract)

_TRANSIENT = (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError)


class KvStore(Generic[M]):
    """One bucket holding one record type."""

    def __init__(self, kv: KeyValue, model: type[M]) -> None:
        self._kv = kv
        self._model = model

    @property
    def bucket(self) -> str:
        return str(self._kv._name)

    async def get(self, key: str) -> Versioned[M] | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        except _TRANSIENT as exc:
            raise BrokerUnavailable(f"KV get {self.bucket}/{key} failed: {exc.__class__.__name__}") from exc
        if entry.value is None or entry.revision is None:
            return None
        return Versioned(self._model.model_validate_json(entry.value), int(entry.revision))

    async def put(self, key: str, value: M, *, revision: int | None) -> int:
        data = value.to_json()
        try:
            if revision is None:
                return int(await self._kv.create(key, data))
            return int(await self._kv.update(key, data, last=revision))
        except KeyWrongLastSequenceError as exc:
            raise StoreConflict(f"{self.bucket}/{key} changed under us (expected revision {revision})") from exc
        except _TRANSIENT as exc:
            raise BrokerUnavailable(f"KV put {self.bucket}/{key} failed: {exc.__class__.__name__}") from exc

    async def delete(self, key: str, *, revision: int | None = None) -> None:
        try:
            await self._kv.delete(key, last=revision)
        except KeyWrongLastSequenceError as exc:
            raise StoreConflict(f"{self.bucket}/{key} changed under us (expected revision {revision})") from exc
        except _TRANSIENT as exc:
            raise BrokerUnavailable(f"KV delete {self.bucket}/{key} failed: {exc.__class__.__name__}") from exc

    async def keys(self) -> list[str]:
        try:
            return sorted(await self._kv.keys())
        except NoKeysError:
            return []
        except _TRANSIENT as exc:
            raise BrokerUnavailable(f"KV keys {self.bucket} failed: {exc.__class__.__name__}") from exc
