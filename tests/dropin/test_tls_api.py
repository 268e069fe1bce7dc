"""TLS through udptcp's own functions, on the plain loops (no drop-in).

``udptcp.create_connection(ssl=...)``, ``udptcp.create_server(ssl=...)``, the streams
functions and ``start_tls``: certificates and verification behave exactly as over kernel
TCP, because the TLS protocol is asyncio's own.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest
import uvloop
from support.certs import HOST, HOSTNAME_MISMATCH, Certs
from support.protocols import Echo, Recorder

import udptcp


async def test_tls_echo_over_udptcp(certs: Certs) -> None:
    server = await udptcp.create_server(Echo, HOST, 0, ssl=certs.server_context())
    async with server:
        port = server.sockets[0].getsockname()[1]
        transport, client = await udptcp.create_connection(
            Recorder, HOST, port, ssl=certs.client_context(), server_hostname="localhost"
        )
        # The TLS transport is asyncio's; underneath it is a udptcp connection.
        assert not isinstance(transport, udptcp.Transport)
        assert transport.get_extra_info("ssl_object") is not None
        assert transport.get_extra_info("vports") is not None  # udptcp's own extra info
        payload = bytes(range(256)) * 1024
        transport.write(payload)
        assert await client.received(len(payload)) == payload
        transport.close()
        assert await asyncio.wait_for(client.lost, 5) is None


async def test_wrong_hostname_fails_exactly_as_over_kernel_tcp(certs: Certs) -> None:
    loop = asyncio.get_running_loop()
    errors: list[BaseException] = []

    udp_server = await udptcp.create_server(Echo, HOST, 0, ssl=certs.server_context())
    tcp_server = await loop.create_server(Echo, HOST, 0, ssl=certs.server_context())
    async with udp_server, tcp_server:
        for connect, server in (
            (udptcp.create_connection, udp_server),
            (loop.create_connection, tcp_server),
        ):
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(ssl.SSLError) as info:
                await connect(  # type: ignore[operator]
                    Recorder,
                    HOST,
                    port,
                    ssl=certs.client_context(),
                    server_hostname="wrong.example",
                )
            errors.append(info.value)
    over_udptcp, over_tcp = errors
    assert type(over_udptcp) is type(over_tcp) is ssl.SSLCertVerificationError
    assert over_udptcp.verify_code == over_tcp.verify_code == HOSTNAME_MISMATCH  # type: ignore[attr-defined]
    assert over_udptcp.verify_message == over_tcp.verify_message  # type: ignore[attr-defined]


async def test_ssl_true_uses_the_default_context_and_its_trust_store(certs: Certs) -> None:
    server = await udptcp.create_server(Echo, HOST, 0, ssl=certs.server_context())
    async with server:
        port = server.sockets[0].getsockname()[1]
        # The throwaway CA is in no default trust store: verification must fail.
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await udptcp.create_connection(Recorder, "localhost", port, ssl=True, family=2)
        assert info.value.verify_code == 20  # unable to get local issuer certificate


async def test_tls_streams_over_udptcp(certs: Certs) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    server = await udptcp.start_server(handle, HOST, 0, ssl=certs.server_context())
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await udptcp.open_connection(
            HOST, port, ssl=certs.client_context(), server_hostname="localhost"
        )
        writer.write(b"quiet please\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"QUIET PLEASE\n"
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)


async def test_start_tls_on_a_udptcp_transport(certs: Certs) -> None:
    loop = asyncio.get_running_loop()
    accepted: list[Echo] = []

    def factory() -> Echo:
        accepted.append(Echo())
        return accepted[-1]

    server = await udptcp.create_server(factory, HOST, 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        transport, client = await udptcp.create_connection(Recorder, HOST, port)
        while not accepted:
            await asyncio.sleep(0.002)
        server_side = accepted[0].transport
        if isinstance(loop, uvloop.Loop):
            # uvloop's start_tls takes only uvloop's transports (README); udptcp.start_tls
            # (and the drop-in loop's start_tls) work on any loop.
            with pytest.raises(TypeError, match="not supported by start_tls"):
                await loop.start_tls(transport, client, certs.client_context())
            start_tls = udptcp.start_tls
        else:
            start_tls = loop.start_tls  # type: ignore[assignment]
        server_task = asyncio.ensure_future(
            start_tls(server_side, accepted[0], certs.server_context(), server_side=True)
        )
        tls_transport = await start_tls(
            transport, client, certs.client_context(), server_hostname="localhost"
        )
        accepted[0].transport = await asyncio.wait_for(server_task, 5)
        tls_transport.write(b"upgraded")
        assert await client.received(8) == b"upgraded"
        assert tls_transport.get_extra_info("ssl_object") is not None
        tls_transport.close()
        assert await asyncio.wait_for(client.lost, 5) is None


async def test_tls_arguments_are_checked(certs: Certs) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((HOST, 9))
    try:
        with pytest.raises(ValueError, match="server_hostname when using ssl without a host"):
            await udptcp.create_connection(Recorder, sock=sock, ssl=certs.client_context())
    finally:
        sock.close()
    with pytest.raises(ValueError, match="only meaningful with ssl"):
        await udptcp.create_connection(Recorder, HOST, 9, server_hostname="x")
    with pytest.raises(ValueError, match="only meaningful with ssl"):
        await udptcp.create_server(Echo, HOST, 0, ssl_shutdown_timeout=1.0)
    with pytest.raises(TypeError, match="must be an SSLContext"):
        await udptcp.create_server(Echo, HOST, 0, ssl=True)
    with pytest.raises(ValueError, match="positive"):
        await udptcp.create_server(
            Echo, HOST, 0, ssl=certs.server_context(), ssl_handshake_timeout=-1
        )
    with pytest.raises(TypeError, match="SSLContext"):
        await udptcp.start_tls(None, None, "not a context")  # type: ignore[arg-type]
