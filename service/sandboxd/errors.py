"""The one exception tree of sandboxd.

Every failure the service reasons about is one of these. Adapters translate library errors (nats, kubernetes,
git) into this tree at their boundary, always with ``raise ... from``; the runtime's disposition module reads
only this tree to decide ack / nak / term::

    SandboxdError
    ├── ConfigurationError          start-up: a missing or invalid setting (names the variable)
    ├── PermanentError              retrying cannot help: dead-letter, status Failed/Rejected, term
    │   ├── InvalidEvent            the event does not parse or validate
    │   ├── OwnershipConflict       a second sandbox for an owner, or two emails on one owner-uid
    │   ├── RenderError             the spec cannot be rendered into valid objects
    │   ├── ApplyRejected           the target refused an object (Kubernetes 400/403/404/422, git hook)
    │   └── BrokerRefused           JetStream refused a request (bad request, no such stream, over max payload)
    └── RetryableError              transient: nak with a growing delay
        ├── ApplyUnavailable        the target is unreachable, overloaded or conflicting (409/429/5xx)
        ├── StoreConflict           a compare-and-set lost a race; re-read and retry
        ├── BrokerUnavailable       NATS/JetStream did not answer in time, is reconnecting or electing a leader
        ├── TokenMintFailed         the NewAPI bridge refused or did not answer a token mint (retried with backoff)
        ├── AwaitingCreate          an event came before its sandbox's create was recorded (another replica has it)
        └── UnexpectedError         anything outside this tree, caught around one event or one loop iteration

An exception outside the tree is a bug or an unforeseen library failure. It never ends the process: the
runtime wraps it in ``UnexpectedError`` (its class name only: its text may quote anything) and retries the
one event it happened in, which is dead-lettered once its deliveries run out.
"""

from __future__ import annotations


class SandboxdError(Exception):
    """Base of every error sandboxd raises on purpose."""

    #: A short machine-readable word for status conditions and metrics (CamelCase, like Kubernetes reasons).
    reason: str = "Error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class ConfigurationError(SandboxdError):
    """A setting is missing or invalid; raised at start-up and names the environment variable."""

    reason = "ConfigurationInvalid"


class PermanentError(SandboxdError):
    """Retrying the same input cannot succeed."""

    reason = "PermanentFailure"


class InvalidEvent(PermanentError):
    """An event that does not parse, validate, or agree with its subject."""

    reason = "InvalidEvent"


class OwnershipConflict(PermanentError):
    """An owner already has a sandbox, or two owners map to one owner-uid."""

    reason = "OwnerConflict"


class RenderError(PermanentError):
    """The spec cannot be rendered into valid Kubernetes objects."""

    reason = "RenderFailed"


class ApplyRejected(PermanentError):
    """The apply target refused an object; the message is the target's own words."""

    reason = "ApplyRejected"


class BrokerRefused(PermanentError):
    """JetStream refused a request that asking again cannot fix (its own words, never the payload)."""

    reason = "BrokerRefused"


class RetryableError(SandboxdError):
    """A transient failure; ``delay`` (seconds) is a hint from the source, e.g. a Retry-After header."""

    reason = "Retrying"

    def __init__(self, message: str, *, reason: str | None = None, delay: float | None = None) -> None:
        super().__init__(message, reason=reason)
        self.delay = delay


class ApplyUnavailable(RetryableError):
    """The apply target is unreachable, overloaded, or reported a conflict worth retrying."""

    reason = "ApplyUnavailable"


class StoreConflict(RetryableError):
    """A compare-and-set write lost a race with another writer."""

    reason = "StoreConflict"


class BrokerUnavailable(RetryableError):
    """NATS or JetStream did not answer in time."""

    reason = "BrokerUnavailable"


class TokenMintFailed(RetryableError):
    """The NewAPI bridge did not mint a sandbox's LLM-gateway token (its status, or why it did not answer).

    Retryable even for a 401: an operator fixes the admin secret and the next attempt succeeds; the token writer
    retries with a growing delay, never in a fixed loop."""

    reason = "TokenMintFailed"


class AwaitingCreate(RetryableError):
    """An event reached intake before an earlier create of its sandbox was recorded: replicas share the consumer,
    so another one may hold the create right now. Retried until the create is recorded (then the event folds
    onto it, in stream order) or its deliveries run out."""

    reason = "AwaitingCreate"


class UnexpectedError(RetryableError):
    """An exception outside this tree, caught where one event (or one loop iteration) is handled."""

    reason = "UnexpectedError"

    @classmethod
    def wrapping(cls, error: BaseException, *, where: str) -> UnexpectedError:
        """Names the class only: the text of a foreign exception may quote a payload or a secret."""
        wrapped = cls(f"unexpected {error.__class__.__name__} in {where}")
        wrapped.__cause__ = error
        return wrapped
