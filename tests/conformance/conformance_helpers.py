"""Protocols, pairs and certificates for suites that run over kernel TCP and udptcp alike.

Everything here uses the loop's own ``create_connection`` / ``create_server``: on a plain
loop that is kernel TCP, on a drop-in loop udptcp. The tests cannot tell which, except
through :func:`is_udptcp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from udptcp.aio.loop import DropInMixin

HOST = "127.0.0.1"
#: X509_V_ERR_HOSTNAME_MISMATCH: what OpenSSL reports for a certificate of another name.
HOSTNAME_MISMATCH = 62


def is_udptcp() -> bool:
    """True when the running loop sends connections over udptcp."""
    return isinstance(asyncio.get_running_loop(), DropInMixin)


class Recorder(asyncio.Protocol):
    """Records every callback, in order; ``eof_received`` returns ``keep_open``."""

    def __init__(self, *, keep_open: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.keep_open = keep_open
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.calls: list[str] = []
        self.lost_calls: list[BaseException | None] = []
        self.made: asyncio.Future[None] = loop.create_future()
        self.eof: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self._wants: list[tuple[int, asyncio.Future[None]]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.calls.append("connection_made")
        self.transport = transport  # type: ignore[assignment]
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        assert isinstance(data, bytes), type(data)
        if not self.calls or self.calls[-1] != "data_received":
            self.calls.append("data_received")
        self.data += data
        for n, fut in self._wants:
            if len(self.data) >= n and not fut.done():
                fut.set_result(None)

    def eof_received(self) -> bool:
        self.calls.append("eof_received")
        self.eof.set_result(None)
        return self.keep_open

    def pause_writing(self) -> None:
        self.calls.append("pause_writing")

    def resume_writing(self) -> None:
        self.calls.append("resume_writing")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.calls.append("connection_lost")
        self.lost_calls.append(exc)
        if not self.lost.done():
            self.lost.set_result(exc)

    async def received(self, n: int, timeout: float = 10.0) -> bytes:
        """Wait until at least ``n`` bytes arrived; return them all."""
        if len(self.data) < n:
            fut = asyncio.get_running_loop().create_future()
            self._wants.append((n, fut))
            await asyncio.wait_for(fut, timeout)
        return bytes(self.data)


@dataclass
class Pair:
    """A connected client and server, both seen through their protocols."""

    server: asyncio.AbstractServer
    port: int
    client: Recorder
    accepted: Recorder

    @property
    def ct(self) -> asyncio.Transport:
        """The client's transport."""
        assert self.client.transport is not None
        return self.client.transport

    @property
    def st(self) -> asyncio.Transport:
        """The server side's transport."""
        assert self.accepted.transport is not None
        return self.accepted.transport


@contextlib.asynccontextmanager
async def serving(
    factory: Callable[[], asyncio.BaseProtocol], **kw: Any
) -> AsyncIterator[tuple[asyncio.AbstractServer, int]]:
    """``loop.create_server`` on an ephemeral port; closed (clients reset) afterwards."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, HOST, 0, **kw)
    try:
        yield server, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def pair(
    *,
    client: Callable[[], Recorder] = Recorder,
    accepted: Callable[[], Recorder] = Recorder,
    **client_kw: Any,
) -> AsyncIterator[Pair]:
    """A client connected to a one-connection server, both fully set up.

    Whatever is still open at the end is aborted, so a failing test cannot hang.
    """
    loop = asyncio.get_running_loop()
    made: list[Recorder] = []

    def factory() -> Recorder:
        made.append(accepted())
        return made[-1]

    async with serving(factory) as (server, port):
        _, proto = await loop.create_connection(client, HOST, port, **client_kw)
        await wait_until(lambda: made and made[0].made.done())
        p = Pair(server, port, proto, made[0])
        try:
            yield p
        finally:
            for rec in (p.client, p.accepted):
                if rec.transport is not None and not rec.lost.done():
                    rec.transport.abort()


async def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it is true."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)


async def settle(seconds: float = 0.05) -> None:
    """Give the network a moment (for checking that something does *not* happen)."""
    await asyncio.sleep(seconds)


# ---------------------------------------------------------------------- certificates


@dataclass
class Certs:
    """A throwaway CA and a certificate for ``localhost`` / 127.0.0.1 signed by it."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))


def make_certs(directory: Path) -> Certs:
    """Generate the CA and the server certificate into ``directory`` (no network)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "udptcp test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    certs = Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    certs.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certs
