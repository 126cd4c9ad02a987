"""The token writer: each sandbox's LLM-gateway token minted, written into its Secret, rotated, and revoked.

One ``visit`` of a sandbox (upstream §5 step 3, with §10 G1-G3, G11, G13 and G16 fixed):

1. read its desired state and status. A token is **due** when there is none for this incarnation, when it
   expires within the lead (``SANDBOXD_TOKEN_ROTATION_LEAD_SECONDS``), when the channels or capabilities it was
   minted with changed (a new plan or ``spec.capabilities``: minted again at once, not at the next rotation),
   or when the Secret no longer holds the revision the status names (someone deleted or emptied it);
2. not due: nothing is written; the next visit is at ``rotate_at`` (a schedule of its own, G11);
3. due, but the Secret the renderer emits is not in the cluster yet: wait (no token is minted that has nowhere
   to go); the next visit is at the next check;
4. claim the mint: one compare-and-set write of a ``TokenClaim`` into status, refused when the token changed
   since it was read or another writer's claim still holds (that writer mints; this one looks again at the next
   check). Then mint (``TokenBridge``); write the token into the Secret the pods read (``TokenSecrets``: the
   cluster only, never Git, KV, logs or status, G16) with the new revision; then record the revision, expiry and
   fingerprint in status (``TokenIssued=True``, which ends the claim) and kick the sandbox's reconcile, which
   stamps the revision on the pod templates so the pods restart with the new token (G3);
5. a failure is ``TokenIssued=False`` with the error's reason (``TokenMintFailed``) and message and the time of
   the next attempt, which backs off exponentially (``SANDBOXD_TOKEN_RETRY_*``), never a fixed 30 s loop.

A sandbox whose desired state is gone (deleted) has its token revoked where the bridge supports it (G13) and
its token bookkeeping cleared.

Concurrency: ``sweep`` visits due sandboxes one at a time, from one task. Several writers (``sandboxd run``
replicas with the writer in the service, or a second ``sandboxd tokens``) visit the same sandboxes: the claim
(step 4) makes exactly one of them mint. A claim whose writer died lapses after twice the bridge's timeout
(``NEWAPI_TIMEOUT_SECONDS``), and another writer mints then. What it deliberately does not do: hold a token
beyond one visit, log one, or render anything (the reconciler does).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import SecretStr

from sandboxd import naming
from sandboxd.errors import SandboxdError, TokenMintFailed
from sandboxd.models.desired import DesiredState, Lifecycle
from sandboxd.models.status import (
    ConditionStatus,
    ConditionType,
    Phase,
    SandboxStatus,
    TokenClaim,
    TokenState,
    set_condition,
)
from sandboxd.naming import SandboxId
from sandboxd.reconcile import capabilities
from sandboxd.reconcile.ports import Clock, Store
from sandboxd.reconcile.statuses import StatusWriter
from sandboxd.settings.tokens import TokenSettings
from sandboxd.telemetry.metrics import Instruments, noop_instruments

log = logging.getLogger(__name__)

MINTED = "TokenMinted"


class _ClaimTaken(Exception):
    """Another writer minted, or is minting, for the sandbox: this one stands back (see ``TokenWriter._claim``).

    Control flow inside this module (raised in a status transition, caught by ``visit``), never raised out of it.
    """


@dataclass(frozen=True, slots=True)
class MintRequest:
    org_id: str
    user_id: str
    sandbox_id: SandboxId
    allowed_channels: tuple[str, ...]
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: SecretStr
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SecretView:
    """The token Secret as the writer sees it: its metadata, never its data."""

    #: The revision the writer last wrote into it; None when it holds no token of the writer's.
    revision: int | None


class TokenBridge(Protocol):
    """The NewAPI bridge; failures are ``TokenMintFailed``."""

    async def mint(self, request: MintRequest) -> MintedToken: ...

    async def revoke(self, sandbox_id: SandboxId) -> bool:
        """True once revoked (or nothing to revoke); False when the bridge cannot revoke."""
        ...

    async def aclose(self) -> None: ...


class TokenSecrets(Protocol):
    """The sandbox's token Secret in the cluster; failures are ``ApplyRejected`` / ``ApplyUnavailable``."""

    async def read(self, namespace: str) -> SecretView | None:
        """The Secret's metadata, or None when the renderer's Secret is not in the cluster yet."""
        ...

    async def write(self, namespace: str, *, token: SecretStr, revision: int, expires_at: datetime) -> None: ...

    async def aclose(self) -> None: ...


def fingerprint(request: MintRequest) -> str:
    """What a token was minted with, as a short digest: channels and capabilities, in order."""
    text = "|".join((",".join(request.allowed_channels), ",".join(request.capabilities)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def mint_request(desired: DesiredState, channels: tuple[str, ...]) -> MintRequest:
    spec = desired.spec
    return MintRequest(
        org_id=spec.owner.org_ref.slug,
        user_id=spec.owner.email,
        sandbox_id=desired.sandbox_id,
        allowed_channels=channels,
        capabilities=capabilities.resolve(spec),
    )


def backoff_s(failures: int, *, base_s: float, cap_s: float) -> float:
    """Delay before attempt ``failures + 1``: base, 2 x base, 4 x base ... up to the cap."""
    return float(min(cap_s, base_s * 2 ** max(0, failures - 1)))


class TokenWriter:
    def __init__(
        self,
        *,
        desired: Store[DesiredState],
        status: StatusWriter,
        bridge: TokenBridge,
        secrets: TokenSecrets,
        settings: TokenSettings,
        clock: Clock,
        kick: Callable[[SandboxId], None] | None = None,
        metrics: Instruments | None = None,
        holder: str | None = None,
    ) -> None:
        self._desired = desired
        self.holder = holder or uuid.uuid4().hex[:12]  # names this writer's claims; unique per process
        self._metrics = metrics or noop_instruments()
        self._status = status
        self._bridge = bridge
        self._secrets = secrets
        self._settings = settings
        self._clock = clock
        self._kick = kick
        self._due: dict[SandboxId, datetime] = {}
        self._failures: dict[SandboxId, int] = {}

    def due_at(self, sandbox_id: SandboxId) -> datetime | None:
        """When the writer visits ``sandbox_id`` next (None: at the next sweep)."""
        return self._due.get(sandbox_id)

    async def sweep(self) -> int:
        """Visit every sandbox that is due, and retire those whose desired state is gone; how many were visited."""
        now = self._clock()
        present = set(naming.sandbox_ids(await self._desired.keys()))
        for gone in [s for s in self._due if s not in present]:
            await self.retire(gone)
        visited = 0
        for sandbox_id in sorted(present):
            if self._due.get(sandbox_id, now) <= now:
                await self.visit(sandbox_id)
                visited += 1
        return visited

    async def visit(self, sandbox_id: SandboxId) -> None:
        stored = await self._desired.get(naming.desired_key(sandbox_id))
        if stored is None or stored.value.lifecycle is Lifecycle.DELETED:
            await self.retire(sandbox_id)
            return
        desired = stored.value
        now = self._clock()
        request = mint_request(desired, self._settings.channel_list)
        status = await self._status.read(sandbox_id)
        token = _current(status, desired)
        namespace = naming.namespace_for(desired.owner_uid)
        try:
            secret = await self._secrets.read(namespace)
            if secret is None:  # the renderer's Secret is not applied yet: nowhere to put a token
                self._due[sandbox_id] = now + timedelta(seconds=self._settings.check_interval_s)
                return
            if token is not None and not self._due_now(token, request, secret, now):
                self._due[sandbox_id] = token.rotate_at
                self._failures.pop(sandbox_id, None)
                return
            try:
                await self._claim(desired, token, now)
            except _ClaimTaken:  # the other writer's token (or its failure) is in status at the next check
                self._due[sandbox_id] = now + timedelta(seconds=self._settings.check_interval_s)
                return
            await self._mint(desired, request, namespace, token)
        except SandboxdError as exc:
            await self._failed(desired, exc)

    def _due_now(self, token: TokenState, request: MintRequest, secret: SecretView, now: datetime) -> bool:
        return token.rotate_at <= now or token.fingerprint != fingerprint(request) or secret.revision != token.revision

    async def _claim(self, desired: DesiredState, seen: TokenState | None, now: datetime) -> None:
        """Write this writer's claim on the next revision, or raise ``_ClaimTaken``.

        The status writer's compare-and-set re-reads and decides again when another write came first, so of two
        writers claiming at once one wins and the other finds the winner's claim (or its token) and stands back.
        """
        until = now + timedelta(seconds=2 * self._settings.timeout_s)
        claim = TokenClaim(holder=self.holder, revision=(seen.revision if seen is not None else 0) + 1, until=until)

        def claimed(previous: SandboxStatus | None) -> SandboxStatus:
            if previous is not None and _current(previous, desired) != seen:
                raise _ClaimTaken  # a token was minted (or cleared) since this writer read the status
            held = previous.token_claim if previous is not None else None
            if held is not None and held.holder != self.holder and held.until > now:
                raise _ClaimTaken
            return _base(previous, desired, now).model_copy(update={"token_claim": claim})

        await self._status.write(desired.sandbox_id, claimed)

    async def _mint(
        self, desired: DesiredState, request: MintRequest, namespace: str, previous: TokenState | None
    ) -> None:
        minted = await self._bridge.mint(request)
        now = self._clock()
        revision = (previous.revision if previous is not None else 0) + 1
        await self._secrets.write(namespace, token=minted.token, revision=revision, expires_at=minted.expires_at)
        lead = timedelta(seconds=self._settings.lead_s)
        # A token that lives shorter than the lead is rotated at half its life, not at once, every check.
        rotate_at = max(minted.expires_at - lead, now + (minted.expires_at - now) / 2)
        state = TokenState(
            revision=revision,
            incarnation=desired.incarnation,
            expires_at=minted.expires_at,
            rotated_at=now,
            rotate_at=rotate_at,
            fingerprint=fingerprint(request),
        )
        message = f"revision {revision}, expires {_iso(minted.expires_at)}, rotates {_iso(rotate_at)}"
        await self._status.write(desired.sandbox_id, _issued(desired, state, message, now, holder=self.holder))
        self._due[desired.sandbox_id] = rotate_at
        self._failures.pop(desired.sandbox_id, None)
        self._metrics.token_event("minted" if previous is None else "rotated")
        log.info("sandbox %s: LLM-gateway token %s", desired.sandbox_id, message)
        if self._kick is not None:
            self._kick(desired.sandbox_id)  # the reconcile stamps the revision: the pods restart with the token

    async def _failed(self, desired: DesiredState, error: SandboxdError) -> None:
        failures = self._failures.get(desired.sandbox_id, 0) + 1
        self._failures[desired.sandbox_id] = failures
        now = self._clock()
        delay = backoff_s(failures, base_s=self._settings.retry_base_s, cap_s=self._settings.retry_cap_s)
        retry_at = now + timedelta(seconds=delay)
        self._due[desired.sandbox_id] = retry_at
        message = f"{error.message} (attempt {failures}; next at {_iso(retry_at)})"
        self._metrics.token_event("failed")
        log.warning("sandbox %s: %s: %s", desired.sandbox_id, error.reason, message)
        await self._status.write(desired.sandbox_id, _refused(desired, error.reason, message, now, holder=self.holder))

    async def retire(self, sandbox_id: SandboxId) -> None:
        """The sandbox is deleted: revoke its token (where the bridge can) and clear the bookkeeping."""
        self._due.pop(sandbox_id, None)
        self._failures.pop(sandbox_id, None)
        status = await self._status.read(sandbox_id)
        if status is None or status.token is None:
            return
        if self._settings.revoke:
            try:
                revoked = await self._bridge.revoke(sandbox_id)
            except TokenMintFailed as exc:
                log.warning("sandbox %s: revoking its token failed: %s", sandbox_id, exc.message)
                return  # the bookkeeping stays: the next sweep that sees it tries again
            if revoked:
                self._metrics.token_event("revoked")
            else:
                log.info("sandbox %s: the bridge cannot revoke tokens; it lapses at its expiry", sandbox_id)
        await self._status.write(sandbox_id, _cleared)


def _current(status: SandboxStatus | None, desired: DesiredState) -> TokenState | None:
    """The token of this incarnation of the sandbox (an earlier life's token is never carried over)."""
    if status is None or status.token is None or status.token.incarnation != desired.incarnation:
        return None
    return status.token


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _issued(
    desired: DesiredState, state: TokenState, message: str, now: datetime, *, holder: str
) -> Callable[[SandboxStatus | None], SandboxStatus]:
    return _token_condition(desired, ConditionStatus.TRUE, MINTED, message, now, state=state, holder=holder)


def _refused(
    desired: DesiredState, reason: str, message: str, now: datetime, *, holder: str
) -> Callable[[SandboxStatus | None], SandboxStatus]:
    return _token_condition(desired, ConditionStatus.FALSE, reason, message, now, state=None, holder=holder)


def _token_condition(
    desired: DesiredState,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    *,
    state: TokenState | None,
    holder: str,
) -> Callable[[SandboxStatus | None], SandboxStatus]:
    """``TokenIssued`` set and ``holder``'s claim ended (another writer's, taken after this one's lapsed, stays);
    the token bookkeeping replaced by ``state`` when a token was minted (a failure keeps the last good token's: it
    still works until its expiry)."""

    def transition(previous: SandboxStatus | None) -> SandboxStatus:
        base = _base(previous, desired, now)
        conditions = set_condition(
            base.conditions,
            kind=ConditionType.TOKEN_ISSUED,
            status=status,
            reason=reason,
            message=message,
            now=now,
            generation=desired.generation,
        )
        changes: dict[str, object] = {"conditions": conditions, "updated_at": now}
        if base.token_claim is not None and base.token_claim.holder == holder:
            changes["token_claim"] = None
        if state is not None:
            changes["token"] = state
        return base.model_copy(update=changes)

    return transition


def _cleared(previous: SandboxStatus | None) -> SandboxStatus:
    assert previous is not None  # retire reads the record before clearing it
    kept = [c for c in previous.conditions if c.type is not ConditionType.TOKEN_ISSUED]
    return previous.model_copy(update={"token": None, "token_claim": None, "conditions": kept})


def _base(previous: SandboxStatus | None, desired: DesiredState, now: datetime) -> SandboxStatus:
    """The record the token writer adds to: the reconciler's, or a pending one if it has not written yet."""
    if previous is not None and previous.incarnation == desired.incarnation:
        return previous
    return SandboxStatus(
        sandbox_id=desired.sandbox_id, phase=Phase.PENDING, incarnation=desired.incarnation, updated_at=now
    )
