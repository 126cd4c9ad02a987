"""Every derived name, subject, stream, bucket and key in one place.

Names that reach Kubernetes are always valid: DNS-1123 labels for namespaces and object names, valid label
values, and a short stable hash suffix whenever a name had to be cut, so a cut never silently merges two
inputs. Functions that may lose information return enough for the caller to detect it: an owner-uid carries the
normalised email it came from, and ``repo_slugs`` refuses two repos that map to one slug.

Pure string functions: no I/O, no clock, no settings.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, NewType

#: A sandbox id: a DNS-1123 label, validated. Made only where a raw string is checked: ``as_sandbox_id`` (a
#: subject's last token, a CLI argument, an object's sandbox label), ``sandbox_ids`` (KV keys) and the pydantic
#: models' ``SandboxIdField``.
SandboxId = NewType("SandboxId", str)

#: A DNS-1123 label: what namespaces, Services, container volume names and sandbox ids must be.
DNS_LABEL_MAX: Final = 63
DNS_LABEL_RE: Final = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
LABEL_VALUE_RE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
SANDBOX_ID_PATTERN: Final = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
#: ``SANDBOX_ID_PATTERN`` in words, for the reasons that refuse an id (docs/events.md).
SANDBOX_ID_RULE: Final = "1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
#: Compiled once: every render derives an owner-uid and one slug per repo through them.
_NOT_DNS_SAFE: Final = re.compile(r"[^a-z0-9-]")
_DASH_RUNS: Final = re.compile(r"-{2,}")
_REPO_SEPARATORS: Final = re.compile(r"[/_. ]")

NAMESPACE_PREFIX: Final = "sandbox-"
PVC_PREFIX: Final = "repo-"
HASH_LEN: Final = 6

# Streams, buckets and subjects (the AsyncAPI document in contracts/ names the same things).
EVENTS_STREAM: Final = "SANDBOX_EVENTS"
EVENTS_CONSUMER: Final = "sandboxd-reconciler"
DLQ_STREAM: Final = "SANDBOX_DLQ"
ADVISORY_STREAM: Final = "SANDBOX_ADVISORIES"
ADVISORY_CONSUMER: Final = "sandboxd-advisories"
ACTIVITY_STREAM: Final = "SANDBOX_ACTIVITY"
SCALE_STREAM: Final = "SANDBOX_SCALE"
SCALE_CONSUMER: Final = "sandboxd-scaler"
DESIRED_BUCKET: Final = "sandbox-desired"
STATUS_BUCKET: Final = "sandbox-status"
OWNERS_BUCKET: Final = "sandbox-owners"

VERBS: Final = ("create", "update", "delete", "suspend", "resume")
EVENT_SUBJECTS: Final = tuple(f"sandbox.{verb}.*" for verb in VERBS)
ACTIVITY_SUBJECTS: Final = "sandbox.activity.*"
SCALE_SUBJECTS: Final = "sandbox.scale.*"
DLQ_SUBJECTS: Final = "sandbox.dlq.>"


def short_hash(text: str, length: int = HASH_LEN) -> str:
    """A short, stable, lowercase hex digest used to keep cut names distinct."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _collapse(text: str) -> str:
    return _DASH_RUNS.sub("-", text).strip("-")


def cap_with_hash(name: str, limit: int, *, source: str) -> tuple[str, bool]:
    """Cut ``name`` to ``limit`` characters, ending in ``-<hash of source>`` when it had to cut."""
    if len(name) <= limit:
        return name, False
    head = name[: limit - HASH_LEN - 1].rstrip("-")
    return f"{head}-{short_hash(source)}", True


# --- owners -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OwnerUid:
    """The DNS-safe owner id and what it was derived from.

    Two different ``email`` values with one ``value`` are a collision the caller must refuse.
    """

    value: str
    email: str
    truncated: bool


OWNER_UID_MAX: Final = DNS_LABEL_MAX - len(NAMESPACE_PREFIX)


def normalise_email(email: str) -> str:
    """Trim and lowercase, as upstream does before deriving anything."""
    return email.strip().lower()


def owner_uid(email: str) -> OwnerUid:
    """``ceo@acme.com`` → ``ceo-at-acme-com`` (upstream rule), then made a valid, capped DNS label.

    Raises ``ValueError`` when nothing DNS-safe remains.
    """
    normal = normalise_email(email)
    text = normal.replace("@", "-at-").replace(".", "-").replace("+", "-plus-").replace("_", "-")
    text = _collapse(_NOT_DNS_SAFE.sub("", text))
    if not text:
        raise ValueError(f"email {email!r} does not yield a DNS-safe owner uid")
    value, cut = cap_with_hash(text, OWNER_UID_MAX, source=normal)
    return OwnerUid(value=value, email=normal, truncated=cut)


def namespace_for(uid: str) -> str:
    """``sandbox-<owner-uid>``: always a valid namespace name because the uid is capped."""
    return f"{NAMESPACE_PREFIX}{uid}"


def route_prefix(uid: str) -> str:
    """The public path prefix of a sandbox's sessions."""
    return f"/sessions/{uid}/"


def gitops_folder(uid: str) -> str:
    """Where the GitOps applier writes a sandbox's files, as upstream (``sandbox/<owner-uid>``)."""
    return f"sandbox/{uid}"


def sandbox_id_for_owner(email: str = "", owner_id: str = "") -> SandboxId:
    """The id a publisher that knows only an owner should use (upstream ``sandboxCRName``).

    ``ceo@acme.com`` → ``sandbox-ceo-at-acme-com``; the owner id when the email is blank; ``sandbox-user``
    when both are blank. Cut to 63 characters with a hash suffix (upstream cut without one).
    """
    source = (email.strip() or owner_id.strip()).lower()
    text = source.replace("@", "-at-").replace(".", "-").replace("+", "-plus-").replace("_", "-")
    leaf = _collapse(_NOT_DNS_SAFE.sub("-", text)) or "user"
    name, _ = cap_with_hash(f"sandbox-{leaf}", DNS_LABEL_MAX, source=source)
    return SandboxId(name)


# --- repos --------------------------------------------------------------------------------------------------

REPO_SLUG_MAX: Final = DNS_LABEL_MAX - len(PVC_PREFIX)


def repo_slug(repo: str) -> str:
    """``acme/internal-tools`` → ``acme-internal-tools`` (upstream rule), capped so ``repo-<slug>`` is a label."""
    text = repo.strip().lower()
    text = _REPO_SEPARATORS.sub("-", text)
    text = _collapse(_NOT_DNS_SAFE.sub("", text))
    if not text:
        raise ValueError(f"repo {repo!r} does not yield a DNS-safe slug")
    value, _ = cap_with_hash(text, REPO_SLUG_MAX, source=repo.strip().lower())
    return value


def repo_slugs(repos: list[str]) -> dict[str, str]:
    """Slug → repo for every repo, sorted by repo; ``ValueError`` naming both repos when two share a slug."""
    out: dict[str, str] = {}
    for repo in sorted(r.strip() for r in repos):
        slug = repo_slug(repo)
        if slug in out:
            raise ValueError(f"repos {out[slug]!r} and {repo!r} map to the same slug {slug!r}")
        out[slug] = repo
    return out


def pvc_name(slug: str) -> str:
    return f"{PVC_PREFIX}{slug}"


# --- labels -------------------------------------------------------------------------------------------------


def label_value(text: str) -> str:
    """Any text made into a valid label value (≤ 63, alphanumeric ends), hashed when it had to change."""
    if LABEL_VALUE_RE.fullmatch(text) and len(text) <= DNS_LABEL_MAX:
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", text)
    cleaned = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)
    head = cleaned[: DNS_LABEL_MAX - HASH_LEN - 1].rstrip("-_.")
    return f"{head}-{short_hash(text)}" if head else short_hash(text)


# --- subjects and keys --------------------------------------------------------------------------------------


def event_subject(verb: str, sandbox_id: str) -> str:
    return f"sandbox.{verb}.{sandbox_id}"


def parse_event_subject(subject: str) -> tuple[str, str] | None:
    """``sandbox.<verb>.<id>`` → (verb, id); ``None`` for anything else."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[0] != "sandbox":
        return None
    return parts[1], parts[2]


def activity_subject(sandbox_id: str) -> str:
    return f"sandbox.activity.{sandbox_id}"


def scale_subject(sandbox_id: str) -> str:
    return f"sandbox.scale.{sandbox_id}"


def dlq_subject(original_subject: str) -> str:
    return f"sandbox.dlq.{original_subject}"


def status_key(sandbox_id: str) -> str:
    """Status KV key: the bare sandbox id, so any client can ``kv get sandbox-status <id>``."""
    return sandbox_id


def desired_key(sandbox_id: str) -> str:
    return sandbox_id


def owner_key(uid: str) -> str:
    return uid


def is_sandbox_id(text: str) -> bool:
    return bool(DNS_LABEL_RE.fullmatch(text))


def as_sandbox_id(text: str) -> SandboxId | None:
    """``text`` as a ``SandboxId`` when it is one (``is_sandbox_id``), else None."""
    return SandboxId(text) if is_sandbox_id(text) else None


def sandbox_ids(keys: Iterable[str]) -> list[SandboxId]:
    """The KV keys (of the desired or status bucket) that are sandbox ids, in order; a key written by hand
    that could not be one is left out (nothing may be named after it)."""
    return [SandboxId(key) for key in keys if is_sandbox_id(key)]
