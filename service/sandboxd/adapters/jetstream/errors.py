"""nats-py's exceptions → the ``sandboxd.errors`` tree: the one translation table of the JetStream boundary.

Every module of this adapter (and the CLI) wraps its nats-py calls in ``boundary("what it was doing")``; a
caller handles only the few outcomes that mean something to it (a key that does not exist, a bucket not
created yet) and lets the table say the rest::

    nats-py                                                   sandboxd                    words
    TimeoutError (nats-py's and asyncio's), FlushTimeoutError BrokerUnavailable           did not answer in time
    NoRespondersError, ServiceUnavailableError without code   BrokerUnavailable           JetStream did not answer
    ConnectionClosed/Draining/Reconnecting, StaleConnection,  BrokerUnavailable           connection is down
      OutboundBufferLimitError
    NoStreamResponseError                                     BrokerUnavailable           no stream answered
    APIError 408/409/500/503, or error 10008/10009            BrokerUnavailable           leader election, busy
    APIError error 10039/10076                                BrokerUnavailable           JetStream is not enabled
    KeyWrongLastSequenceError, APIError error 10071/10164     StoreConflict               changed under us
    NotFoundError (a stream, consumer or bucket)              BrokerRefused               run `sandboxd init`
    MaxPayloadError, any other APIError or nats-py error      BrokerRefused               JetStream refused

The first connect has a table of its own (``connect_failure``): every row is ``BrokerUnavailable`` (a service
retries it with backoff, a command prints it), in words a reader can act on::

    'Authorization Violation' / AuthorizationError      authorization failed (wrong user/password, token, nkey or creds)
    ssl.SSLError, nats-py's TLS errors                   the TLS handshake failed
    ConnectionRefusedError, other OSError                nothing listens there / the network said why
    TimeoutError                                         no answer within the connect timeout
    any other nats-py error                              its class name

except for a failure here, before the server had a say: a file that cannot be read (a creds file, a TLS file)
or loaded (a CA bundle that is not PEM), a missing module (nkeys, for NKey and creds logins) or anything else
raised locally is a ``ConfigurationError`` naming what failed (never "is the server running"), so a service stops
instead of retrying forever (``local_failure``; the connection checks its files with it before connecting).

Anything that is not nats-py's passes through untouched: it is a bug or an unforeseen failure, and the runtime
treats it as an unexpected error of the one event (or loop iteration) it happened in.

The messages say what was being done and the server's own description; never a payload, never credentials.
What it deliberately does not do: retry. Whoever owns the work decides (``runtime.disposition`` for an event,
each loop for its iteration).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import nats.errors
from nats.js import errors as js_errors

from sandboxd.errors import BrokerRefused, BrokerUnavailable, ConfigurationError, SandboxdError, StoreConflict
from sandboxd.telemetry import logs

#: The connection is down or going down: it comes back by itself (the service reconnects forever).
CONNECTION_DOWN: Final = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
)
#: HTTP-like status codes of a JetStream API answer that mean "ask again later": request timeout, a 409 of a
#: pull request (leadership change, consumer moved), server error, service unavailable.
TRANSIENT_CODES: Final = frozenset({408, 409, 500, 503})
#: JetStream error codes (``err_code``) that mean the same: 10008 "JetStream system temporarily unavailable",
#: 10009 "JetStream cluster can not handle request" (no leader right now).
TRANSIENT_ERR_CODES: Final = frozenset({10008, 10009})
#: 10039 "JetStream not enabled for account", 10076 "JetStream not enabled".
NOT_ENABLED_ERR_CODES: Final = frozenset({10039, 10076})
#: "wrong last sequence": a compare-and-set lost its race. 10071 names the sequence it found; a clustered
#: stream's leader answers 10164 (the same words, no number) when the race is lost among writes in flight.
WRONG_LAST_SEQUENCE: Final = frozenset({10071, 10164})

NOT_ANSWERING: Final = (
    "JetStream did not answer: it is not enabled on this server, or its cluster has no leader yet "
    "(start nats-server with -js / jetstream {} and check that its peers are up)"
)


def translate(exc: BaseException, *, doing: str) -> SandboxdError | None:  # noqa: PLR0911 - the table, row by row
    """The tree's error for a nats-py exception raised while ``doing``; ``None`` when it is not nats-py's."""
    if isinstance(exc, SandboxdError):
        return exc
    if isinstance(exc, js_errors.KeyWrongLastSequenceError):
        return StoreConflict(f"{doing}: the record changed under us")
    if isinstance(exc, js_errors.APIError):
        return _api_error(exc, doing=doing)
    if isinstance(exc, nats.errors.NoRespondersError):
        return BrokerUnavailable(f"{doing}: {NOT_ANSWERING}")
    if isinstance(exc, TimeoutError):  # nats-py's TimeoutError is asyncio's, which is the builtin one
        return BrokerUnavailable(f"{doing}: NATS did not answer in time")
    if isinstance(exc, js_errors.NoStreamResponseError):
        return BrokerUnavailable(f"{doing}: no stream answered (a leader election, or a stream without quorum)")
    if isinstance(exc, CONNECTION_DOWN):
        return BrokerUnavailable(f"{doing}: the connection to NATS is down ({exc.__class__.__name__})")
    if isinstance(exc, nats.errors.MaxPayloadError):
        return BrokerRefused(f"{doing}: the message is larger than the server's max payload")
    if isinstance(exc, nats.errors.Error | js_errors.Error):
        return BrokerRefused(f"{doing}: NATS refused it ({exc.__class__.__name__})")
    return None


#: What the server says (``-ERR``) to credentials it does not accept, lower-cased.
AUTHORIZATION_REFUSED: Final = ("authorization violation", "authentication expired", "authentication revoked")
AUTHORIZATION_FAILED: Final = "authorization failed (wrong user/password, token, nkey or creds)"
CONNECT_HINT: Final = "is the server running, and is the URL right?"


def connect_failure(exc: BaseException, *, servers: str) -> BrokerUnavailable | ConfigurationError:
    """Why the first connect to ``servers`` failed, in plain words; never the credentials (URLs are scrubbed)."""
    said = str(exc).lower()
    if isinstance(exc, nats.errors.AuthorizationError) or any(word in said for word in AUTHORIZATION_REFUSED):
        why = AUTHORIZATION_FAILED
    elif isinstance(exc, ssl.SSLError | nats.errors.SecureConnRequiredError | nats.errors.SecureConnWantedError):
        why = f"the TLS handshake failed ({exc.__class__.__name__}: check the CA, the certificate and tls:// URLs)"
    elif isinstance(exc, ConnectionRefusedError):
        why = f"connection refused; {CONNECT_HINT}"
    elif isinstance(exc, TimeoutError):
        why = f"no answer in time; {CONNECT_HINT}"
    elif isinstance(exc, OSError) and exc.filename is not None:
        return local_failure(exc, servers=servers)
    elif isinstance(exc, OSError):
        why = f"{exc.strerror or exc.__class__.__name__}; {CONNECT_HINT}"
    elif isinstance(exc, nats.errors.Error):
        why = f"{exc.__class__.__name__}; {CONNECT_HINT}"
    else:
        return local_failure(exc, servers=servers)
    return BrokerUnavailable(f"cannot connect to NATS at {logs.without_credentials(servers)}: {why}")


def local_failure(exc: BaseException, *, servers: str, setting: str | None = None) -> ConfigurationError:
    """A connect that failed here, before the server had a say: a missing package, an unreadable creds or TLS file.

    Permanent (a service stops waiting instead of retrying forever); its class name and, for a missing module,
    the module's name, never its text (an NKey library's complaint could quote the seed). ``setting``: what
    named the file, when the caller knows it (its variable; for a TLS file that does not load, with the path).
    """
    named = f" ({setting})" if setting else ""
    if isinstance(exc, ImportError):
        what = f"the Python module {exc.name!r} is missing (NKey and creds logins need nats-py's nkeys extra)"
    elif isinstance(exc, OSError) and exc.filename is not None:
        what = f"cannot read {exc.filename}: {exc.strerror or exc.__class__.__name__}{named}"
    elif isinstance(exc, ssl.SSLError):  # loading a CA bundle, certificate or key (a handshake is connect_failure's)
        reason = exc.reason or "not PEM"  # OpenSSL's "PEM lib" has no reason: a file it could not parse
        what = f"cannot load {setting or 'the TLS files'}: {reason}"
    else:
        what = f"{exc.__class__.__name__} (check the NKey seed or the creds file)"
    return ConfigurationError(
        f"cannot connect to NATS at {logs.without_credentials(servers)}: a local failure, not the server: {what}"
    )


def _api_error(exc: js_errors.APIError, *, doing: str) -> SandboxdError:
    said = f"{exc.description} (code {exc.code}, error {exc.err_code})" if exc.description else ""
    if isinstance(exc, js_errors.ServiceUnavailableError) and exc.code is None:
        return BrokerUnavailable(f"{doing}: {NOT_ANSWERING}")  # nats-py's word for "no responders"
    if exc.err_code in NOT_ENABLED_ERR_CODES:
        return BrokerUnavailable(f"{doing}: JetStream is not enabled on this server or account: {said}")
    if exc.err_code in WRONG_LAST_SEQUENCE:
        return StoreConflict(f"{doing}: the record changed under us")
    if exc.code in TRANSIENT_CODES or exc.err_code in TRANSIENT_ERR_CODES:
        return BrokerUnavailable(f"{doing}: JetStream is busy or electing a leader: {said or exc.code}")
    if isinstance(exc, js_errors.NotFoundError):
        return BrokerRefused(
            f"{doing}: not found on the server ({said or 'no such stream, consumer or bucket'}); run `sandboxd init`"
        )
    return BrokerRefused(f"{doing}: JetStream refused it: {said or exc.__class__.__name__}")


def is_transient(exc: BaseException) -> bool:
    """Whether asking again later can succeed (for code that retries a nats-py call in place)."""
    return isinstance(translate(exc, doing=""), BrokerUnavailable)


@contextmanager
def boundary(doing: str) -> Iterator[None]:
    """Translate nats-py errors raised inside the block (``raise … from``); others pass through."""
    try:
        yield
    except SandboxdError:
        raise
    except Exception as exc:
        error = translate(exc, doing=doing)
        if error is None:
            raise
        raise error from exc
