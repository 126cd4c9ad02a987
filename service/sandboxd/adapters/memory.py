"""In-memory stand-ins for the ports: the fakes of the conformance suites, unit tests and benchmarks.

``MemoryStore`` has the JetStream KV compare-and-set semantics (revisions grow across keys, ``create`` fails
when the key exists, ``update`` needs the exact revision). ``MemoryApplier`` records what it was asked to do and
can be told to fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio

from sandboxd.errors import StoreConflict
from sandboxd.models.status import ObjectRef
from sandboxd.reconcile.ports import ApplyResult, Versioned
from sandboxd.render.model import RenderedSandbox

T = TypeVar("T")


@dataclass
class _Bucket(Generic[T]):
    data: dict[str, Versioned[T]] = field(default_factory=dict)
    revision: int = 0
    #: Per key, the ``expire_after_s`` its last put asked for (the fake keeps records; tests read this).
    expiring: dict[str, float | None] = field(default_factory=dict)


class MemoryStore(Generic[T]):
    """One process's view of a bucket. ``replica()`` is another process's view of the same bucket: it shares
    the records but remembers (``recent``) only what it wrote or read itself, as ``KvStore`` does."""

    def __init__(self, bucket: _Bucket[T] | None = None) -> None:
        self._bucket: _Bucket[T] = bucket or _Bucket()
        self._seen: dict[str, Versioned[T]] = {}

    def replica(self) -> MemoryStore[T]:
        return MemoryStore(self._bucket)

    async def get(self, key: str) -> Versioned[T] | None:
        record = self._bucket.data.get(key)
        self._remember(key, record)
        return record

    def recent(self, key: str) -> Versioned[T] | None:
        return self._seen.get(key)

    async def put(self, key: str, value: T, *, revision: int | None, expire_after_s: float | None = None) -> int:
        current = self._bucket.data.get(key)
        if (current.revision if current else None) != revision:
            self._remember(key, None)
            raise StoreConflict(f"{key}: expected revision {revision}")
        self._bucket.revision += 1
        record = self._bucket.data[key] = Versioned(value, self._bucket.revision)
        self._bucket.expiring[key] = expire_after_s
        self._remember(key, record)
        return record.revision

    async def delete(self, key: str, *, revision: int | None = None) -> None:
        current = self._bucket.data.get(key)
        self._remember(key, None)
        if revision is not None and (current is None or current.revision != revision):
            raise StoreConflict(f"{key}: expected revision {revision}")
        self._bucket.data.pop(key, None)

    async def keys(self) -> list[str]:
        return sorted(self._bucket.data)

    def expires_after(self, key: str) -> float | None:
        """The retention the last put of ``key`` asked for (``None``: kept until replaced or deleted)."""
        return self._bucket.expiring.get(key)

    def _remember(self, key: str, record: Versioned[T] | None) -> None:
        if record is None:
            self._seen.pop(key, None)
        else:
            self._seen[key] = record


@dataclass
class MemoryApplier:
    """Holds the last applied runtime per sandbox; ``fail`` (if set) is consulted before every call."""

    delay_s: float = 0.0
    ready: bool = True
    fail: Callable[[RenderedSandbox], Exception | None] | None = None
    applied: dict[str, RenderedSandbox] = field(default_factory=dict)
    deleted: dict[str, bool] = field(default_factory=dict)
    calls: int = 0

    async def apply(self, sandbox: RenderedSandbox, *, generation: int) -> ApplyResult:
        self.calls += 1
        if self.delay_s:
            await anyio.sleep(self.delay_s)
        self._maybe_fail(sandbox)
        changed = self.applied.get(sandbox.sandbox_id) != sandbox
        self.applied[sandbox.sandbox_id] = sandbox
        refs = tuple(
            ObjectRef(api_version=m.api_version, kind=m.kind, name=m.name, namespace=m.namespace)
            for m in sandbox.manifests
        )
        return ApplyResult(applied=refs, changed=changed, ready_replicas=sandbox.replicas if self.ready else 0)

    async def delete(self, sandbox: RenderedSandbox, *, purge: bool) -> None:
        self.calls += 1
        self._maybe_fail(sandbox)
        self.applied.pop(sandbox.sandbox_id, None)
        self.deleted[sandbox.sandbox_id] = purge

    async def ready_replicas(self, sandbox: RenderedSandbox) -> int | None:
        return sandbox.replicas if self.ready else 0

    async def aclose(self) -> None:
        return None

    def _maybe_fail(self, sandbox: RenderedSandbox) -> None:
        error = self.fail(sandbox) if self.fail else None
        if error is not None:
            raise error
