"""What the cluster holds of the sandboxes, as the Observer's watches last saw it: the applier's watch cache.

The applier needs two things before it writes: the inventory of a sandbox's live objects (what pruning deletes)
and, for each rendered object, whether applying it would change anything. Both used to cost requests on every
pass (a Namespace GET and a metadata LIST per kind); here they are answered from the watch feeds
(``watching.TargetWatch``) that the Observer runs anyway, across all namespaces:

- every object of a watched kind carrying ``openova.io/managed-by`` is kept as a ``Live`` (metadata only: name,
  resourceVersion, deletion, the ``APPLIED`` annotation, the fields this reconciler's field manager owns, and for
  a StatefulSet its ready replicas), indexed by namespace;
- **unchanged** means: the object's ``APPLIED`` annotation is the digest of the manifest about to be applied,
  it is not being deleted, and the fields this field manager owns (its ``Apply`` entry in ``managedFields``) are
  exactly those its last apply in this process left it owning. Another manager changing one of those fields
  (``kubectl scale``, ``kubectl edit``, a forced apply) takes the field over, so the owned set shrinks and the
  object is applied again; the next resync thus corrects such drift. Fields nobody here renders (a controller's
  status, another manager's own annotation) are not drift. After a restart nothing is confirmed: every object is
  applied once (the server writes nothing), then the cache answers;
- a kind whose feed has not listed yet, or whose watch failed, is **not covered**: the applier then lists it
  as it always did. Secrets are never covered (the reconciler may not list them across the cluster): the
  applier lists them per namespace, metadata only.

What it deliberately does not do: talk to the API server, or decide what to apply (``applier``). Concurrency: the
feeds and the passes run on one event loop and every method here is synchronous, so no lock is needed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sandboxd.adapters.kubernetes.resources import SANDBOX_LABEL, STATEFUL_SET, Resource
from sandboxd.models.status import ObjectRef

#: The annotation the applier adds to every object it applies: the digest of the manifest as rendered.
APPLIED: Final = "sandboxd.openova.io/applied"

Key = tuple[str, str | None, str]  # kind, namespace, name


@dataclass(frozen=True, slots=True)
class Live:
    """An object as a list, a watch or an apply response last showed it (metadata only)."""

    resource: Resource
    name: str
    namespace: str | None
    resource_version: str
    deleting: bool
    #: The ``APPLIED`` annotation ("" when there is none).
    applied: str = ""
    #: A digest of the fields this field manager owns by ``Apply`` (0 when it owns none).
    owned: int = 0
    #: ``status.readyReplicas`` of a StatefulSet (0 for every other kind).
    ready: int = 0
    #: Its ``openova.io/sandbox`` label ("" for the namespace grants, which are no sandbox's).
    sandbox: str = ""

    @property
    def key(self) -> Key:
        return (self.resource.kind, self.namespace, self.name)

    @property
    def path(self) -> str:
        return self.resource.item(self.name, self.namespace)

    def ref(self) -> ObjectRef:
        return ObjectRef(
            api_version=self.resource.api_version, kind=self.resource.kind, name=self.name, namespace=self.namespace
        )


def digest(body: Mapping[str, Any]) -> str:
    """The ``APPLIED`` value of a manifest body: stable across processes and replicas."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=12).hexdigest()


def annotated(body: Mapping[str, Any], value: str) -> dict[str, Any]:
    """``body`` with the ``APPLIED`` annotation set to ``value`` (the other metadata untouched)."""
    metadata = dict(body.get("metadata") or {})
    metadata["annotations"] = {**(metadata.get("annotations") or {}), APPLIED: value}
    return {**body, "metadata": metadata}


def live_of(resource: Resource, obj: Mapping[str, Any], *, field_manager: str) -> Live:
    """The ``Live`` record of an object (full or metadata only)."""
    metadata = obj.get("metadata") or {}
    ready = 0
    if resource is STATEFUL_SET:
        ready = int((obj.get("status") or {}).get("readyReplicas") or 0)
    namespace = metadata.get("namespace")
    sandbox = (metadata.get("labels") or {}).get(SANDBOX_LABEL, "")
    return Live(
        resource=resource,
        name=sys.intern(str(metadata.get("name", ""))),
        namespace=None if namespace is None else sys.intern(str(namespace)),
        resource_version=str(metadata.get("resourceVersion", "")),
        deleting=bool(metadata.get("deletionTimestamp")),
        applied=str((metadata.get("annotations") or {}).get(APPLIED, "")),
        owned=_owned(metadata.get("managedFields") or (), field_manager),
        ready=ready,
        sandbox=sys.intern(str(sandbox)),
    )


def _owned(entries: Iterable[Mapping[str, Any]], field_manager: str) -> int:
    for entry in entries:
        if entry.get("manager") == field_manager and entry.get("operation") == "Apply" and not entry.get("subresource"):
            # The server writes fieldsV1 in one canonical order, so its repr is stable within this process.
            return hash(repr(entry.get("fieldsV1")))
    return 0


def _home(resource: Resource, live: Live) -> str:
    """The namespace an object belongs to: its own, or for a Namespace, itself."""
    return live.namespace if resource.namespaced and live.namespace is not None else live.name


class Inventory:
    """The watch cache; fed through ``relisted`` / ``changed`` / ``lost`` (``watching.Listener``)."""

    def __init__(self, field_manager: str) -> None:
        self.field_manager = field_manager
        #: namespace → (kind, name) → what the feeds last saw.
        self._seen: dict[str, dict[tuple[str, str], Live]] = {}
        #: namespace → (kind, name) → the owned-fields digest this process's last apply left.
        self._confirmed: dict[str, dict[tuple[str, str], int]] = {}
        self._covered: set[str] = set()

    # --- the feeds' side (watching.Listener) --------------------------------------------------------------------

    def relisted(self, resource: Resource, items: Sequence[Mapping[str, Any]]) -> None:
        for entries in self._seen.values():
            for slot in [slot for slot in entries if slot[0] == resource.kind]:
                del entries[slot]
        for item in items:
            self._put(live_of(resource, item, field_manager=self.field_manager))
        self._covered.add(resource.kind)

    def changed(self, resource: Resource, kind: str, obj: Mapping[str, Any]) -> None:
        live = live_of(resource, obj, field_manager=self.field_manager)
        if kind != "DELETED":
            self._put(live)
            return
        home = _home(resource, live)
        entries = self._seen.get(home)
        if entries is not None:
            entries.pop((resource.kind, live.name), None)
            if not entries:
                del self._seen[home]
        if resource.kind == "Namespace":
            self._confirmed.pop(live.name, None)

    def lost(self, resource: Resource) -> None:
        self._covered.discard(resource.kind)

    # --- the applier's side -----------------------------------------------------------------------------------

    def covers(self, resource: Resource) -> bool:
        return resource.kind in self._covered

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> Live | None:
        home = namespace if resource.namespaced and namespace is not None else name
        return self._seen.get(home, {}).get((resource.kind, name))

    def live(self, namespace: str, resources: Sequence[Resource], *, sandbox: str) -> list[Live]:
        """The objects of ``resources`` in ``namespace`` labelled as sandbox ``sandbox``'s (a label value)."""
        kinds = {r.kind for r in resources if r.namespaced}
        entries = self._seen.get(namespace, {}).items()
        return [live for (kind, _), live in entries if kind in kinds and live.sandbox == sandbox]

    def confirm(self, live: Live) -> None:
        """``live`` came back from this process's apply: the fields it owns now are the ones to keep owning."""
        self._confirmed.setdefault(_home(live.resource, live), {})[(live.resource.kind, live.name)] = live.owned

    def forget(self, namespace: str) -> None:
        """Nothing of ``namespace`` is confirmed any more (its sandbox was deleted)."""
        self._confirmed.pop(namespace, None)

    def unchanged(self, live: Live | None, manifest_digest: str) -> bool:
        """Whether applying the manifest of digest ``manifest_digest`` over ``live`` would change nothing."""
        if live is None or live.deleting or not live.owned or live.applied != manifest_digest:
            return False
        confirmed = self._confirmed.get(_home(live.resource, live), {})
        return confirmed.get((live.resource.kind, live.name)) == live.owned

    def _put(self, live: Live) -> None:
        self._seen.setdefault(_home(live.resource, live), {})[(live.resource.kind, live.name)] = live
