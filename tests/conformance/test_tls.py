"""TLS over the loop's own methods: the same certificates, the same verdicts, TCP or udptcp.

Over udptcp the TLS protocol is asyncio's own (``asyncio.sslproto``), so a verification
failure must be the very exception kernel TCP gives: same type, same OpenSSL verify code.
"""

from __future__ import annotations

import asyncio
import ssl
import sys

import pytest
from conformance_helpers import HOST, serving
from support.certs import HOSTNAME_MISMATCH, Certs
from support.protocols import Echo, Recorder

#: X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: a certificate from an unknown CA.
UNKNOWN_ISSUER = 20


async def test_tls_echo_with_verification(certs: Certs) -> None:
    loop = asyncio.get_running_loop()
    async with serving(Echo, ssl=certs.server_context()) as (_, port):
        for server_hostname in ("localhost", None):  # None: verify the host, 127.0.0.1
            transport, client = await loop.create_connection(
                Recorder, HOST, port, ssl=certs.client_context(), server_hostname=server_hostname
            )
            assert client.calls == ["connection_made"]
            transport.write(b"secret" * 1000)
            assert await client.received(6000) == b"secret" * 1000
            sslobj = transport.get_extra_info("ssl_object")
            assert isinstance(sslobj, ssl.SSLObject) and sslobj.version() in ("TLSv1.2", "TLSv1.3")
            peercert = transport.get_extra_info("peercert")
            assert ("commonName", "localhost") in peercert["subject"][0]
            assert transport.get_extra_info("cipher") is not None
            assert transport.get_extra_info("peername") == (HOST, port)
            transport.close()
            assert await asyncio.wait_for(client.lost, 5) is None


@pytest.mark.parametrize(
    ("server_hostname", "trust_ca", "verify_code"),
    [("wrong.example", True, HOSTNAME_MISMATCH), ("localhost", False, UNKNOWN_ISSUER)],
    ids=["wrong-hostname", "unknown-ca"],
)
async def test_a_failed_verification_raises_the_same_error_as_tcp(
    certs: Certs, server_hostname: str, trust_ca: bool, verify_code: int
) -> None:
    loop = asyncio.get_running_loop()
    accepted: list[Recorder] = []

    def factory() -> Recorder:
        accepted.append(Recorder())
        return accepted[-1]

    context = certs.client_context() if trust_ca else ssl.create_default_context()
    async with serving(factory, ssl=certs.server_context()) as (_, port):
        made: list[Recorder] = []

        def client() -> Recorder:
            made.append(Recorder())
            return made[-1]

        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await loop.create_connection(
                client, HOST, port, ssl=context, server_hostname=server_hostname
            )
        assert type(info.value) is ssl.SSLCertVerificationError
        assert info.value.verify_code == verify_code
        await asyncio.sleep(0.05)
        # Neither application protocol ever saw a connection.
        assert all(rec.calls == [] for rec in made + accepted)


async def test_streams_over_tls(certs: Certs) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, HOST, 0, ssl=certs.server_context())
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=certs.client_context(), server_hostname="localhost"
        )
        writer.write(b"over tls\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"OVER TLS\n"
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="StreamWriter.start_tls is new in 3.11")
async def test_stream_writer_start_tls_upgrades_a_plain_connection(certs: Certs) -> None:
    upgraded: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(certs.server_context())
        upgraded.set_result(writer.get_extra_info("ssl_object") is not None)
        writer.write(b"secure " + await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(HOST, port)
        assert writer.get_extra_info("ssl_object") is None
        writer.write(b"STARTTLS\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"GO\n"
        await asyncio.wait_for(
            writer.start_tls(certs.client_context(), server_hostname="localhost"), 5
        )
        assert writer.get_extra_info("ssl_object") is not None
        writer.write(b"hello\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"secure hello\n"
        assert await asyncio.wait_for(upgraded, 5)
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)


async def test_loop_start_tls_with_a_wrong_hostname_fails_like_tcp(certs: Certs) -> None:
    loop = asyncio.get_running_loop()
    accepted: list[Recorder] = []

    def factory() -> Recorder:
        accepted.append(Recorder())
        return accepted[-1]

    async with serving(factory) as (_, port):
        transport, client = await loop.create_connection(Recorder, HOST, port)
        while not accepted or not accepted[0].made.done():
            await asyncio.sleep(0.002)
        server_side = accepted[0].transport
        assert server_side is not None
        server_task = asyncio.ensure_future(
            loop.start_tls(server_side, accepted[0], certs.server_context(), server_side=True)
        )
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await loop.start_tls(
                transport, client, certs.client_context(), server_hostname="wrong.example"
            )
        assert info.value.verify_code == HOSTNAME_MISMATCH
        with pytest.raises((ConnectionError, ssl.SSLError)):
            await asyncio.wait_for(server_task, 5)
        assert transport.is_closing()


async def test_ssl_handshake_timeout_aborts_a_silent_server(certs: Certs) -> None:
    loop = asyncio.get_running_loop()
    async with serving(Recorder) as (_, port):  # a plain server: never answers the hello
        with pytest.raises(ConnectionAbortedError):
            await loop.create_connection(
                Recorder,
                HOST,
                port,
                ssl=certs.client_context(),
                server_hostname="localhost",
                ssl_handshake_timeout=0.2,
            )


async def test_tls_arguments_are_checked_as_asyncio_checks_them(certs: Certs) -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(ValueError, match="server_hostname is only meaningful with ssl"):
        await loop.create_connection(Recorder, HOST, 1, server_hostname="x")
    with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful with ssl"):
        await loop.create_connection(Recorder, HOST, 1, ssl_handshake_timeout=1.0)
    with pytest.raises(TypeError, match="ssl argument must be an SSLContext or None"):
        await loop.create_server(Recorder, HOST, 0, ssl=True)
