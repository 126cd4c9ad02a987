"""The Kubernetes applier: server-side apply of a sandbox's objects, prune, retained and purging delete.

``apply`` is three steps:

1. **namespace, grants and inventory**: read the Namespace. If it exists, apply it (and the namespace grants,
   ``grants``) while listing the sandbox's live objects (label selector
   ``openova.io/sandbox=<id>,openova.io/managed-by=catalyst``, metadata only) of every namespaced kind in it; if
   not, the sandbox is new, nothing of it can exist, and only the Namespace and then its grants are applied. Either
   way the Namespace exists, and the grants are in force (checked once per namespace and process: the first
   pass waits until the authorizer lets this identity list Secrets there), before anything is listed or applied
   in it: the reconciler's account reads and writes a sandbox's Secrets through that namespace's grant only;
2. **apply** every other object, at most ``apply_concurrency`` at once: server-side apply with one field manager
   and ``force`` (this reconciler is the source of truth: a field another manager took, e.g. ``kubectl scale``
   setting ``spec.replicas``, is taken back on the next pass and the other manager's claim on it is dropped);
3. **prune** the inventoried objects that are no longer rendered, except PersistentVolumeClaims: a removed repo's
   volume keeps the owner's data until a purge.

**From the watch cache.** While the Observer runs, its feeds keep ``inventory.Inventory``. When every watched
kind is covered, a Namespace the cache does not hold is taken as new without a GET (a lagging cache costs only
that pass's prune); when it holds the sandbox's Namespace, the pass makes no Namespace GET and no LIST but one,
the sandbox's Secrets (metadata only: the reconciler may not list Secrets across the cluster), and applies only
the objects (the namespace grants included) the cache does not show **unchanged**: annotated
``inventory.APPLIED`` with the digest of the manifest, and still owning every field this process's last apply
owned. A steady-state resync of an unchanged sandbox thus costs one request; drift by another field manager (it
takes a field over) is applied again on the next pass. Every applied object carries the annotation.

``changed`` is whether any resourceVersion moved (inventory vs. apply response) or anything was pruned; the
pty-server StatefulSet in the apply response gives ``ready_replicas``. Every object is attempted even when one is
refused; then the first permanent error in manifest order (else the first retryable one) is raised, so a
refusal is never hidden behind a transient error, nor its cause behind a consequence. A second apply of the
same objects writes nothing (the server sees no change).

``delete``: **retain** deletes the kinds ``render.retained`` does not keep, in its three steps (workloads;
then Services, the route, Secrets and the ConfigMap; then the ServiceAccount, Role and RoleBinding: access last)
and keeps the Namespace, quota and PVCs, the data. **Purge** deletes every managed
object in the namespace, PVCs included, then the Namespace, and waits (bounded) until the Namespace is gone *or*
is terminating with nothing of the sandbox left that is not itself being deleted. Finishing a namespace (and
releasing a PVC's ``kubernetes.io/pvc-protection`` finalizer) is kube-controller-manager's job; a bare API server,
like the test harness, has none, and such a namespace stays ``Terminating`` forever. Nothing usable is left at that
point, and a re-create meets ``NamespaceTerminating``, which is retried (``errors``). Both deletes act only on
objects carrying the sandbox's labels, are idempotent (a 404 is "already gone"), and a purge refuses a Namespace
that is not this sandbox's.

Concurrency: the reconciler runs one pass at a time per sandbox; passes of different sandboxes share the
applier's connection pool. What it deliberately does not do: retry (the runtime does, with backoff), discover
kinds (``resources`` is a fixed table), or read Secret data (inventories are metadata only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, TypeVar, cast

import anyio

from sandboxd.adapters.kubernetes.client import api_client, load_configuration
from sandboxd.adapters.kubernetes.grants import ACCESS_REVIEWS, NamespaceGrant, access_review, allowed, parse_grants
from sandboxd.adapters.kubernetes.inventory import Inventory, Key, Live, annotated, digest, live_of
from sandboxd.adapters.kubernetes.resources import (
    BY_KIND,
    CLUSTER_WATCHED,
    NAMESPACE,
    NAMESPACED,
    PERSISTENT_VOLUME_CLAIM,
    PTY_SERVER,
    RESOURCES,
    SANDBOX_LABEL,
    STATEFUL_SET,
    Resource,
    resource_of,
    sandbox_selector,
)
from sandboxd.adapters.kubernetes.transport import KubeTransport, Object
from sandboxd.adapters.kubernetes.watching import TargetWatch, WatchTiming
from sandboxd.errors import ApplyRejected, ApplyUnavailable, PermanentError, SandboxdError
from sandboxd.models.status import ObjectRef
from sandboxd.naming import SandboxId, label_value
from sandboxd.reconcile.ports import ApplyResult
from sandboxd.render import labels
from sandboxd.render.model import Manifest, RenderedSandbox
from sandboxd.render.retained import REMOVAL_STEPS, WORKLOAD_KINDS, removal_step
from sandboxd.settings.service import ApplierSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
U = TypeVar("U")

#: What a purge waits to see gone: every namespaced kind but Secrets, which go with the Namespace.
PURGE_CHECKED: Final = tuple(r for r in NAMESPACED if r in CLUSTER_WATCHED)
#: Connections of the applier's pool: sandboxes reconciled at once × objects applied at once, roughly.
DEFAULT_CONNECTIONS: Final = 64
#: Connections of the watch pool: one long-lived watch per kind, and room to reconnect.
WATCH_CONNECTIONS: Final = 2 * len(RESOURCES)

SECRET: Final = BY_KIND["Secret"]
ROLE_BINDING: Final = BY_KIND["RoleBinding"]


@dataclass(frozen=True, slots=True)
class Target:
    """One object to apply: a rendered manifest or a namespace grant."""

    resource: Resource
    name: str
    namespace: str | None
    body: Mapping[str, Any]
    secret_values: tuple[str, ...] = ()

    @property
    def key(self) -> Key:
        return (self.resource.kind, self.namespace, self.name)

    @classmethod
    def of(cls, manifest: Manifest) -> Target:
        return cls(resource_of(manifest), manifest.name, manifest.namespace, manifest.body, _secret_values(manifest))


class KubernetesApplier:
    """Applies sandboxes to a cluster; implements ``sandboxd.reconcile.ports.Applier`` and ``Observer``."""

    def __init__(
        self,
        transport: KubeTransport,
        *,
        field_manager: str,
        apply_concurrency: int = 8,
        watch_transport: KubeTransport | None = None,
        watch_timing: WatchTiming | None = None,
        purge_timeout_s: float = 120.0,
        grants: tuple[NamespaceGrant, ...] = (),
        grant_timeout_s: float = 10.0,
    ) -> None:
        self.transport = transport
        self.grants = grants
        self.grant_timeout_s = grant_timeout_s
        #: Namespaces whose grants this process has seen in force: later passes re-apply them alongside the rest.
        self._granted: set[str] = set()
        self.field_manager = field_manager
        self.apply_concurrency = apply_concurrency
        self.watch_transport = watch_transport or transport
        self.purge_timeout_s = purge_timeout_s
        #: The watch cache the feeds keep (``inventory``); passes use it while every watched kind is covered.
        self.inventory = Inventory(field_manager)
        #: The feeds ``observe`` runs (``lists`` says which have listed: tests wait on it).
        self.target_watch = TargetWatch(self.watch_transport, timing=watch_timing, listener=self.inventory)

    @classmethod
    async def from_settings(
        cls,
        settings: ApplierSettings,
        *,
        connections: int = DEFAULT_CONNECTIONS,
        watch_timing: WatchTiming | None = None,
        purge_timeout_s: float = 120.0,
    ) -> KubernetesApplier:
        """An applier for the cluster ``settings`` name (``ConfigurationError`` now if there is none).

        ``SANDBOXD_KUBE_REQUEST_TIMEOUT_SECONDS`` bounds each request but a watch; no connection is opened until
        the first one.
        """
        configuration = await load_configuration(settings)
        request_timeout_s = settings.kube_request_timeout_s
        return cls(
            KubeTransport(api_client(configuration, connections=connections), request_timeout_s=request_timeout_s),
            watch_transport=KubeTransport(
                api_client(configuration, connections=WATCH_CONNECTIONS), request_timeout_s=request_timeout_s
            ),
            field_manager=settings.field_manager,
            apply_concurrency=settings.apply_concurrency,
            watch_timing=watch_timing,
            purge_timeout_s=purge_timeout_s,
            grants=parse_grants(settings.kube_namespace_grants),
        )

    # --- Applier ---------------------------------------------------------------------------------------------

    async def apply(self, sandbox: RenderedSandbox, *, generation: int) -> ApplyResult:
        namespace, rest = _plan(sandbox)
        covered = all(self.inventory.covers(resource) for resource in CLUSTER_WATCHED)
        cached = self.inventory.get(NAMESPACE, sandbox.namespace) if covered else None
        if cached is not None and not cached.deleting:
            return await self._apply_cached(sandbox, namespace, rest, cached)
        before: dict[Key, str] = {}
        live: list[Live] = []
        # A namespace the covering cache does not hold is taken as new (a lagging cache costs only this pass's prune).
        current = None if covered and cached is None else await self.transport.get(NAMESPACE.item(sandbox.namespace))
        if current is None:  # a new sandbox: nothing of it can exist yet, no inventory to take
            namespace_out = await self._apply_one(namespace)
            await self._grant(sandbox.namespace)
        else:
            before[_key(namespace)] = _resource_version(current)
            if sandbox.namespace not in self._granted:
                await self._grant(sandbox.namespace)
            namespace_out, live = await _both(
                partial(self._apply_namespace, namespace), partial(self._inventory, sandbox, NAMESPACED)
            )
        before.update({item.key: item.resource_version for item in live})
        applied = await _gather([partial(self._apply_one, m) for m in rest], self.apply_concurrency)
        after = {
            _key(m): _resource_version(out)
            for m, out in zip((namespace, *rest), [namespace_out, *applied], strict=True)
        }
        pruned = await self._prune(live, rendered=set(after))
        return ApplyResult(
            applied=tuple(_ref(m) for m in sandbox.manifests),
            changed=bool(pruned) or any(before.get(key) != version for key, version in after.items()),
            ready_replicas=_ready_of(rest, applied),
            pruned=tuple(item.ref() for item in pruned),
        )

    async def _apply_cached(
        self, sandbox: RenderedSandbox, namespace: Manifest, rest: Sequence[Manifest], current: Live
    ) -> ApplyResult:
        """A pass over an existing namespace, its inventory and "unchanged" answered by the watch cache."""
        if sandbox.namespace not in self._granted:
            await self._grant(sandbox.namespace)
        label = label_value(sandbox.sandbox_id)
        live = [current, *self.inventory.live(sandbox.namespace, NAMESPACED, sandbox=label)]
        live += await self._list(SECRET, sandbox)
        seen = {item.key: item for item in live}
        grants = [self._grant_target(g, sandbox.namespace) for g in self.grants]
        targets = [Target.of(namespace), *grants, *map(Target.of, rest)]
        todo = [(t, d) for t in targets if not self.inventory.unchanged(seen.get(t.key), d := digest(t.body))]
        written = await _gather([partial(self._write, t, d) for t, d in todo], self.apply_concurrency)
        after = {t.key: out for (t, _), out in zip(todo, written, strict=True)}
        moved = any(
            (old := seen.get(key)) is None or old.resource_version != _resource_version(out)
            for key, out in after.items()
        )
        pruned = await self._prune(live[1:], rendered={t.key for t in targets})
        pty_key: Key = (STATEFUL_SET.kind, sandbox.namespace, PTY_SERVER)
        ready: int | None = None
        if any(t.key == pty_key for t in targets):
            ready = _ready_replicas(after[pty_key]) if pty_key in after else seen[pty_key].ready
        return ApplyResult(
            applied=tuple(_ref(m) for m in sandbox.manifests),
            changed=bool(pruned) or moved,
            ready_replicas=ready,
            pruned=tuple(item.ref() for item in pruned),
        )

    async def delete(self, sandbox: RenderedSandbox, *, purge: bool) -> None:
        if purge:
            await self._purge(sandbox)
        else:
            await self._retain(sandbox)

    async def ready_replicas(self, sandbox: RenderedSandbox) -> int | None:
        """Ready pods of the sandbox's pty-server StatefulSet; 0 when there is none."""
        current = await self.transport.get(STATEFUL_SET.item(PTY_SERVER, sandbox.namespace))
        return 0 if current is None else _ready_replicas(current)

    async def aclose(self) -> None:
        await self.transport.aclose()
        if self.watch_transport is not self.transport:
            await self.watch_transport.aclose()

    # --- Observer --------------------------------------------------------------------------------------------

    async def observe(self, kick: Callable[[SandboxId], None]) -> None:
        """Kick a sandbox when its session pods' readiness changes or one of its objects is deleted."""
        await self.target_watch.run(kick)

    # --- Reachable -------------------------------------------------------------------------------------------

    async def check_reachable(self) -> None:
        """Return when the API server answers ``GET /version``; ``ApplyUnavailable`` saying why when it does not."""
        try:
            await self.transport.get("/version")
        except ApplyUnavailable:
            raise
        except SandboxdError as exc:
            raise ApplyUnavailable(exc.message) from exc

    # --- namespace grants ------------------------------------------------------------------------------------

    async def _apply_grants(self, namespace: str) -> None:
        targets = [self._grant_target(g, namespace) for g in self.grants]
        await _gather([partial(self._write, t, digest(t.body)) for t in targets], self.apply_concurrency)

    @staticmethod
    def _grant_target(grant: NamespaceGrant, namespace: str) -> Target:
        return Target(ROLE_BINDING, grant.cluster_role, namespace, grant.binding(namespace))

    async def _grant(self, namespace: str) -> None:
        """Apply the grants in ``namespace`` and wait (bounded) until the authorizer applies them to this identity."""
        if not self.grants:
            return
        await self._apply_grants(namespace)
        deadline = time.monotonic() + self.grant_timeout_s
        pause = 0.02
        while not allowed(await self.transport.create(ACCESS_REVIEWS, access_review(namespace))):
            if time.monotonic() >= deadline:
                raise ApplyUnavailable(
                    f"namespace {namespace}: this identity still may not list Secrets there "
                    f"{self.grant_timeout_s:g}s after its grants were applied; "
                    "check SANDBOXD_KUBE_NAMESPACE_GRANTS and the ClusterRoles it names"
                )
            await anyio.sleep(pause)
            pause = min(1.0, pause * 2)
        self._granted.add(namespace)

    async def _apply_namespace(self, namespace: Manifest) -> Object:
        """The Namespace, and its grants again (a deleted grant comes back; an unchanged one writes nothing)."""
        out, _ = await _both(partial(self._apply_one, namespace), partial(self._apply_grants, namespace.name))
        return out

    # --- apply and prune -------------------------------------------------------------------------------------

    async def _apply_one(self, manifest: Manifest) -> Object:
        return await self._write(Target.of(manifest), digest(manifest.body))

    async def _write(self, target: Target, manifest_digest: str) -> Object:
        """Server-side apply ``target`` annotated with its digest; what the server answered, confirmed as ours."""
        out = await self.transport.apply(
            target.resource.item(target.name, target.namespace),
            annotated(target.body, manifest_digest),
            field_manager=self.field_manager,
            secret_values=target.secret_values,
        )
        self.inventory.confirm(live_of(target.resource, out, field_manager=self.field_manager))
        return out

    async def _list(self, resource: Resource, sandbox: RenderedSandbox) -> list[Live]:
        found = await self.transport.list(
            resource.collection(sandbox.namespace),
            label_selector=sandbox_selector(sandbox.sandbox_id),
            metadata_only=True,
        )
        return [live_of(resource, item, field_manager=self.field_manager) for item in found.get("items") or []]

    async def _inventory(self, sandbox: RenderedSandbox, resources: Sequence[Resource]) -> list[Live]:
        found = await _gather([partial(self._list, r, sandbox) for r in resources], self.apply_concurrency)
        return [item for items in found for item in items]

    async def _prune(self, live: Sequence[Live], *, rendered: Collection[Key]) -> list[Live]:
        stale = [
            item
            for item in live
            if item.key not in rendered and item.resource.kind != PERSISTENT_VOLUME_CLAIM.kind and not item.deleting
        ]
        gone = await self._delete_all(stale)
        for item in gone:
            log.info("pruned %s %s/%s: no longer rendered", item.resource.kind, item.namespace, item.name)
        return gone

    async def _delete_all(self, items: Sequence[Live]) -> list[Live]:
        """Delete ``items`` (bounded); the ones this call deleted (not those already gone)."""
        deleted = await _gather([partial(self.transport.delete, item.path) for item in items], self.apply_concurrency)
        return [item for item, was_there in zip(items, deleted, strict=True) if was_there]

    # --- delete ----------------------------------------------------------------------------------------------

    async def _retain(self, sandbox: RenderedSandbox) -> None:
        removed = [r for r in NAMESPACED if removal_step(r.kind) is not None]
        live = [item for item in await self._inventory(sandbox, removed) if not item.deleting]
        for step in range(REMOVAL_STEPS):  # workloads, what they use, then access
            await self._delete_all([item for item in live if removal_step(item.resource.kind) == step])
        log.info("deleted sandbox %s, retaining its namespace %s and data", sandbox.sandbox_id, sandbox.namespace)

    async def _purge(self, sandbox: RenderedSandbox) -> None:
        path = NAMESPACE.item(sandbox.namespace)
        current = await self.transport.get(path)
        if current is None:
            return
        _require_owned(current, sandbox)
        live = [item for item in await self._inventory(sandbox, NAMESPACED) if not item.deleting]
        await self._delete_all([item for item in live if item.resource.kind in WORKLOAD_KINDS])
        await self._delete_all([item for item in live if item.resource.kind not in WORKLOAD_KINDS])
        if not _deleting(current):
            await self.transport.delete(path)
        await self._await_purged(sandbox)

    async def _await_purged(self, sandbox: RenderedSandbox) -> None:
        """Until the Namespace is gone, or terminating with nothing of the sandbox left that is not going."""
        deadline = time.monotonic() + self.purge_timeout_s
        pause = 0.05
        while True:
            current = await self.transport.get(NAMESPACE.item(sandbox.namespace))
            if current is None:
                log.info("purged sandbox %s: namespace %s is gone", sandbox.sandbox_id, sandbox.namespace)
                return
            # Kinds listable without the namespace's grant: the namespace controller may have deleted it already.
            left = [item for item in await self._inventory(sandbox, PURGE_CHECKED) if not item.deleting]
            if _deleting(current) and not left:
                log.info(
                    "purged sandbox %s: namespace %s is terminating with nothing of it left",
                    sandbox.sandbox_id,
                    sandbox.namespace,
                )
                return
            if time.monotonic() >= deadline:
                raise ApplyUnavailable(
                    f"namespace {sandbox.namespace} not purged after {self.purge_timeout_s:g}s: "
                    f"{len(left)} objects of the sandbox left"
                    + ("" if _deleting(current) else "; the namespace is not terminating")
                )
            await anyio.sleep(pause)
            pause = min(2.0, pause * 2)


# --- helpers (pure) ------------------------------------------------------------------------------------------


def _plan(sandbox: RenderedSandbox) -> tuple[Manifest, tuple[Manifest, ...]]:
    """The Namespace and the rest; ``ApplyRejected`` before anything is written when the objects are not ours."""
    for manifest in sandbox.manifests:
        resource_of(manifest)
    if not sandbox.manifests or sandbox.manifests[0].kind != NAMESPACE.kind:
        raise ApplyRejected(f"sandbox {sandbox.sandbox_id}: the Namespace must be the first object")
    namespace, *rest = sandbox.manifests
    if namespace.name != sandbox.namespace or any(m.namespace != sandbox.namespace for m in rest):
        raise ApplyRejected(f"sandbox {sandbox.sandbox_id}: every object must be in namespace {sandbox.namespace}")
    return namespace, tuple(rest)


def _key(manifest: Manifest) -> Key:
    return (manifest.kind, manifest.namespace, manifest.name)


def _ref(manifest: Manifest) -> ObjectRef:
    return ObjectRef(
        api_version=manifest.api_version, kind=manifest.kind, name=manifest.name, namespace=manifest.namespace
    )


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _resource_version(obj: Mapping[str, Any]) -> str:
    return str(_metadata(obj).get("resourceVersion", ""))


def _deleting(obj: Mapping[str, Any]) -> bool:
    return bool(_metadata(obj).get("deletionTimestamp"))


def _ready_replicas(stateful_set: Mapping[str, Any]) -> int:
    status = stateful_set.get("status")
    ready = status.get("readyReplicas") if isinstance(status, Mapping) else None
    return int(ready or 0)


def _ready_of(manifests: Sequence[Manifest], applied: Sequence[Object]) -> int | None:
    for manifest, out in zip(manifests, applied, strict=True):
        if manifest.kind == STATEFUL_SET.kind and manifest.name == PTY_SERVER:
            return _ready_replicas(out)
    return None


def _secret_values(manifest: Manifest) -> tuple[str, ...]:
    """What must never appear in a message about ``manifest``: a Secret's values (none are rendered today)."""
    if manifest.kind != "Secret":
        return ()
    values: list[str] = []
    for field in ("data", "stringData"):
        content = manifest.body.get(field)
        if isinstance(content, Mapping):
            values += [str(v) for v in content.values() if v]
    return tuple(values)


def _require_owned(namespace: Mapping[str, Any], sandbox: RenderedSandbox) -> None:
    found = _metadata(namespace).get("labels") or {}
    sandbox_label, manager = found.get(SANDBOX_LABEL), found.get(labels.MANAGED_BY)
    if manager != labels.MANAGER or sandbox_label != label_value(sandbox.sandbox_id):
        raise ApplyRejected(
            f"namespace {sandbox.namespace} is not sandbox {sandbox.sandbox_id}'s "
            f"(labels {SANDBOX_LABEL}={sandbox_label!r}, {labels.MANAGED_BY}={manager!r}); not purging it"
        )


async def _both(first: Callable[[], Awaitable[T]], second: Callable[[], Awaitable[U]]) -> tuple[T, U]:
    """``first()`` and ``second()`` at once, with ``_gather``'s error rule."""
    results: dict[int, Any] = {}

    async def run(index: int, call: Callable[[], Awaitable[Any]]) -> None:
        results[index] = await call()

    await _gather([partial(run, 0, first), partial(run, 1, second)], 2)
    return results[0], results[1]


async def _gather(calls: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run every call, at most ``limit`` at once, and return their results in order.

    A failing call does not cancel the others (every object is attempted); afterwards the first
    ``PermanentError`` in call order is raised, else the first other ``SandboxdError``. Call order, not the
    order they failed in: objects come in dependency order (a Role before its RoleBinding), so the error
    raised is the cause (the Role refused) rather than a consequence that happened to answer first (the
    RoleBinding's missing Role).
    """
    results: list[T | None] = [None] * len(calls)
    errors: dict[int, SandboxdError] = {}
    slots = anyio.Semaphore(max(1, limit))

    async def run(index: int, call: Callable[[], Awaitable[T]]) -> None:
        async with slots:
            try:
                results[index] = await call()
            except SandboxdError as exc:
                errors[index] = exc

    async with anyio.create_task_group() as tg:
        for index, call in enumerate(calls):
            tg.start_soon(run, index, call)
    if errors:
        ordered = [errors[index] for index in sorted(errors)]
        raise next((e for e in ordered if isinstance(e, PermanentError)), ordered[0])
    return cast(list[T], results)  # every slot was filled: no call failed
