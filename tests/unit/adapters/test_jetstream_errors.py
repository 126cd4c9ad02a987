"""The JetStream boundary's translation table (``adapters.jetstream.errors``), row by row."""

from __future__ import annotations

import nats.errors
import pytest
from nats.js import errors as js_errors

from sandboxd.adapters.jetstream.errors import boundary, is_transient, translate
from sandboxd.errors import BrokerRefused, BrokerUnavailable, StoreConflict

DOING = "publish to sandbox.create.a"


@pytest.mark.parametrize(
    ("raised", "kind", "words"),
    [
        (nats.errors.TimeoutError(), BrokerUnavailable, "did not answer in time"),
        (TimeoutError(), BrokerUnavailable, "did not answer in time"),  # asyncio's, what _fetch_n raises
        (nats.errors.NoRespondersError(), BrokerUnavailable, "JetStream did not answer: it is not enabled"),
        (js_errors.ServiceUnavailableError(), BrokerUnavailable, "JetStream did not answer: it is not enabled"),
        (js_errors.NoStreamResponseError(), BrokerUnavailable, "no stream answered (a leader election"),
        (nats.errors.ConnectionClosedError(), BrokerUnavailable, "connection to NATS is down"),
        (nats.errors.ConnectionReconnectingError(), BrokerUnavailable, "connection to NATS is down"),
        (
            js_errors.ServiceUnavailableError(
                code=503, err_code=10008, description="JetStream system temporarily unavailable"
            ),
            BrokerUnavailable,
            "electing a leader: JetStream system temporarily unavailable",
        ),
        (js_errors.APIError(code=409, description="Leadership Change"), BrokerUnavailable, "Leadership Change"),
        (js_errors.ServerError(code=500, err_code=10009, description="cannot handle request"), BrokerUnavailable, ""),
        (
            js_errors.APIError(code=503, err_code=10076, description="jetstream not enabled"),
            BrokerUnavailable,
            "not enabled",
        ),
        (js_errors.KeyWrongLastSequenceError("wrong last sequence: 4"), StoreConflict, "changed under us"),
        (js_errors.BadRequestError(code=400, err_code=10071, description="wrong last sequence: 4"), StoreConflict, ""),
        # a clustered stream's leader says it without the number: still a lost race, never a refusal
        (js_errors.BadRequestError(code=400, err_code=10164, description="wrong last sequence"), StoreConflict, ""),
        (
            js_errors.NotFoundError(code=404, err_code=10059, description="stream not found"),
            BrokerRefused,
            "sandboxd init",
        ),
        (
            js_errors.BadRequestError(code=400, err_code=10052, description="invalid stream config"),
            BrokerRefused,
            "refused",
        ),
        (nats.errors.MaxPayloadError(), BrokerRefused, "max payload"),
    ],
)
def test_every_row_of_the_table(raised: BaseException, kind: type[Exception], words: str) -> None:
    error = translate(raised, doing=DOING)
    assert type(error) is kind
    assert error.message.startswith(f"{DOING}: ") and words in error.message
    assert is_transient(raised) is (kind is BrokerUnavailable)
    assert "code=None" not in error.message


def test_what_is_not_nats_py_s_passes_through() -> None:
    assert translate(KeyError("x"), doing=DOING) is None
    with pytest.raises(KeyError), boundary(DOING):
        raise KeyError("x")


def test_the_boundary_raises_the_tree_s_error_from_the_library_s() -> None:
    with pytest.raises(BrokerUnavailable) as caught, boundary(DOING):
        raise js_errors.ServiceUnavailableError()
    assert isinstance(caught.value.__cause__, js_errors.ServiceUnavailableError)
