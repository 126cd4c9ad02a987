"""The shipped NATS authorization over TLS, with a CA generated in the test; client certificates when asked.

The server is the shipped configuration plus nats-server's TLS flags (what a ``tls {}`` block says), so every
connection is TLS. A role
with ``NATS_TLS_CA`` connects and does its job over TLS; a client that does not trust the CA is refused at the
handshake (``BrokerUnavailable``, one line, no credentials in it). With ``--tlsverify`` the server also wants
a client certificate signed by the CA: ``NATS_TLS_CERT``/``NATS_TLS_KEY`` give it, and without one the
connection is refused though the password is right.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from sandboxd.adapters.jetstream.connection import connect
from sandboxd.adapters.jetstream.topology import ensure_topology
from sandboxd.errors import BrokerUnavailable
from sandboxd.settings import TopologySettings
from support.spine import Client, unique_id

from .certificates import Authority
from .roles import SecuredNats, secured_nats

pytestmark = [pytest.mark.nats, pytest.mark.anyio]


def tls_args(authority: Authority, *, verify_clients: bool) -> list[str]:
    server = authority.server()
    args = ["--tls", "--tlscert", str(server.cert), "--tlskey", str(server.key)]
    return [*args, "--tlsverify", "--tlscacert", str(authority.ca)] if verify_clients else args


async def publishes_and_reads_status(secured: SecuredNats, *, admin: dict[str, str], publisher: dict[str, str]) -> None:
    """The admin provisions, the publisher publishes a create and reads the (still empty) status, all over TLS.

    ``admin`` and ``publisher``: each role's TLS settings (``tls_ca``, and ``tls_cert``/``tls_key`` if any).
    """
    async with secured.session("admin", timeout=5.0, **admin) as session:
        await ensure_topology(session.js, TopologySettings())
    async with secured.session("publisher", timeout=5.0, **publisher) as session:
        sandbox_id, client = unique_id("tls"), Client(session.nc, session.js)
        assert await client.create(sandbox_id, f"{sandbox_id}@acme.com") >= 1
        assert await client.status(sandbox_id) is None  # nobody reconciles here; the read itself is allowed


async def test_roles_work_over_tls_and_a_client_without_the_ca_is_refused(tmp_path: Path) -> None:
    authority = Authority(tmp_path / "pki")
    with secured_nats(tmp_path / "nats", extra_args=tls_args(authority, verify_clients=False)) as secured:
        trusting = {"tls_ca": str(authority.ca)}
        await publishes_and_reads_status(secured, admin=trusting, publisher=trusting)
        untrusting = secured.settings("publisher")  # the system roots, which never signed the test CA
        with pytest.raises(BrokerUnavailable) as refused:
            await connect(untrusting, allow_reconnect=False)
        assert secured.passwords["publisher"] not in str(refused.value)
        assert isinstance(refused.value.__cause__, ssl.SSLCertVerificationError)


async def test_client_certificates_are_required_when_the_server_verifies_them(tmp_path: Path) -> None:
    authority = Authority(tmp_path / "pki")
    ca = str(authority.ca)
    publisher, admin = authority.client("sandbox-publisher"), authority.client("sandboxd-admin")
    with secured_nats(tmp_path / "nats", extra_args=tls_args(authority, verify_clients=True)) as secured:
        await publishes_and_reads_status(
            secured,
            admin={"tls_ca": ca, "tls_cert": str(admin.cert), "tls_key": str(admin.key)},
            publisher={"tls_ca": ca, "tls_cert": str(publisher.cert), "tls_key": str(publisher.key)},
        )
        without_certificate = secured.settings("publisher", tls_ca=ca)
        with pytest.raises(BrokerUnavailable):  # the server ends the handshake: "client didn't provide a certificate"
            await connect(without_certificate, allow_reconnect=False)
        assert "didn't provide a certificate" in secured.log.read_text()
