"""`sandboxd dev` prefers the well-known NATS port, so README's `export NATS_URL` works on a free machine."""

from __future__ import annotations

import socket

from sandboxd.adapters.natsserver import free_port, preferred_port


def test_a_free_port_is_kept() -> None:
    port = free_port()
    assert preferred_port(port) == port


def test_a_taken_port_falls_back_to_a_free_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert preferred_port(taken.getsockname()[1]) == 0
