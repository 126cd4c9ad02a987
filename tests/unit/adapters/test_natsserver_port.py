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


def test_a_port_left_in_time_wait_by_a_killed_server_counts_as_free() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()  # the server's side closes first: its end of the connection stays in TIME-WAIT
            assert client.recv(1) == b""
    # Only the TIME-WAIT connection holds the port now, which nats-server (SO_REUSEADDR) can listen over.
    assert preferred_port(port) == port
