"""The drop-in loop and sockets a program makes itself (``udptcp.aio.parked``).

aiohttp's client and python-socks connect a TCP socket with ``loop.sock_connect`` and pass
it as ``create_connection(sock=...)``; gunicorn-style servers bind a TCP socket before the
loop runs and pass it as ``create_server(sock=...)``. These tests build drop-in loops on
both bases and check that such traffic goes over udptcp, that the kernel socket is never
connected, and that nothing is left open.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import tempfile

import aiohappyeyeballs
import pytest
from support.protocols import Echo, Recorder
from test_dropin_loop import BASES, run

import udptcp
from udptcp.aio.endpoint import open_endpoints

WAIT = 10.0


async def echo_server(host: str | list[str] = "127.0.0.1") -> tuple[asyncio.AbstractServer, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, host, 0)
    assert isinstance(server, udptcp.Server)
    return server, server.sockets[0].getsockname()[1]


def tcp_socket(family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


def not_connected(sock: socket.socket) -> bool:
    try:
        sock.getpeername()
    except OSError:
        return True
    return False


@BASES
def test_sock_connect_then_create_connection_goes_over_udptcp(base: str | None) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        server, port = await echo_server()
        async with server:
            sock = tcp_socket()
            await loop.sock_connect(sock, ("127.0.0.1", port))
            assert not_connected(sock)  # the kernel socket was never connected
            # The socket API works on it meanwhile (python-socks speaks SOCKS this way).
            await loop.sock_sendall(sock, b"hello")
            assert await asyncio.wait_for(loop.sock_recv(sock, 5), WAIT) == b"hello"
            await loop.sock_sendall(sock, b"early")
            buf = bytearray(3)
            assert await asyncio.wait_for(loop.sock_recv_into(sock, buf), WAIT) == 3
            assert buf == b"ear"
            # The rest of the echo arrives before the adoption, unread: the new protocol
            # gets it first, then what follows.
            await asyncio.sleep(0.05)
            transport, proto = await loop.create_connection(Recorder, sock=sock)
            assert isinstance(transport, udptcp.Transport)
            assert sock.fileno() == -1  # the transport owns the connection now
            transport.write(b" and later")
            assert await proto.received(len(b"ly and later"), WAIT) == b"ly and later"
            transport.close()
            assert await asyncio.wait_for(proto.lost, WAIT) is None

    run(body, base=base)


@BASES
def test_streams_adopt_it_with_tls(base: str | None, certs: object) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write((await reader.readline()).upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(
            handle,
            "127.0.0.1",
            0,
            ssl=certs.server_context(),  # type: ignore[attr-defined]
        )
        async with server:
            port = server.sockets[0].getsockname()[1]
            sock = tcp_socket()
            await loop.sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(
                sock=sock,
                ssl=certs.client_context(),  # type: ignore[attr-defined]
                server_hostname="localhost",
            )
            assert writer.get_extra_info("peercert") is not None
            writer.write(b"over tls\n")
            assert await asyncio.wait_for(reader.readline(), WAIT) == b"OVER TLS\n"
            writer.close()
            await writer.wait_closed()

    run(body, base=base)


@BASES
def test_sock_connect_is_refused_as_over_tcp_and_leaves_nothing_open(base: str | None) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        server, port = await echo_server()
        server.close()
        await server.wait_closed()
        sock = tcp_socket()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), WAIT)
        sock.close()
        await asyncio.sleep(0)
        assert open_endpoints() == []

    run(body, base=base)


@BASES
def test_a_socket_never_passed_on_closes_its_connection(base: str | None) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        accepted: list[Recorder] = []

        def factory() -> Recorder:
            accepted.append(Recorder())
            return accepted[-1]

        server = await loop.create_server(factory, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            sock = tcp_socket()
            await loop.sock_connect(sock, ("127.0.0.1", port))
            while not accepted:
                await asyncio.sleep(0.01)
            del sock  # dropped, as a kernel socket would be closed: FIN, not RST
            gc.collect()
            assert await asyncio.wait_for(accepted[0].lost, WAIT) is None
            assert accepted[0].eof.done()

    run(body, base=base)


@BASES
def test_aiohappyeyeballs_race_keeps_one_connection(base: str | None) -> None:
    """Two addresses that both answer, no delay between the attempts: the race's loser is
    closed and its udptcp connection with it; the winner is adopted."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        accepted: list[Recorder] = []

        def factory() -> Recorder:
            accepted.append(Recorder())
            return accepted[-1]

        server = await loop.create_server(factory, ["127.0.0.1", "::1"], 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            infos = [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            ]
            sock = await aiohappyeyeballs.start_connection(infos, happy_eyeballs_delay=0.0)
            assert not_connected(sock)
            transport, proto = await loop.create_connection(Recorder, sock=sock)
            assert isinstance(transport, udptcp.Transport)
            transport.write(b"winner")
            while not any(r.data == b"winner" for r in accepted):
                await asyncio.sleep(0.01)
            gc.collect()
            # Every other connection the race opened is closed (FIN), none is left half-used.
            for recorder in accepted:
                if recorder.data != b"winner":
                    assert await asyncio.wait_for(recorder.lost, WAIT) is None
            transport.close()

    run(body, base=base)


@BASES
def test_create_connection_runs_happy_eyeballs_over_udptcp(base: str | None) -> None:
    """asyncio's own happy_eyeballs_delay: the first address (::1) swallows the SYN and
    never answers; the second (127.0.0.1) starts after the delay and wins, long before the
    first attempt's SYN retries would have run out (tried in turn, that takes a minute)."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        server, port = await echo_server()
        silent = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        silent.bind(("::1", 0))
        silent_port = silent.getsockname()[1]
        infos = [
            (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", silent_port, 0, 0)),
            (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port)),
        ]

        async def getaddrinfo(*args: object, **kwargs: object) -> list[object]:
            return list(infos)  # "a name with two addresses" (virtual port: the given one)

        loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign,assignment]
        async with server:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(Recorder, "dual.test", port, happy_eyeballs_delay=0.05),
                WAIT,
            )
            assert isinstance(transport, udptcp.Transport)
            assert transport.get_extra_info("peername")[0] == "127.0.0.1"
            silent.setblocking(False)
            assert silent.recv(100)  # the first attempt did send its SYN there
            transport.close()
        silent.close()

    run(body, base=base)


@BASES
def test_a_pre_bound_tcp_socket_is_served_over_udptcp_when_opted_in(base: str | None) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        port = tcp.getsockname()[1]
        server = await loop.create_server(Echo, sock=tcp)
        async with server:
            assert isinstance(server, udptcp.Server)
            (udp,) = server.sockets
            assert udp.type == socket.SOCK_DGRAM and udp.getsockname() == ("127.0.0.1", port)
            assert tcp.getsockname() == ("127.0.0.1", port)  # held, as asyncio holds it
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"ping"
            writer.close()
        assert tcp.fileno() == -1  # closed with the server

    run(body, base=base, serve_tcp_sockets=True)


@BASES
def test_the_tcp_port_may_be_a_udp_port_a_client_of_ours_holds(base: str | None) -> None:
    """The kernel picks a TCP port without looking at UDP: when one of the loop's own
    client sockets holds that UDP port, both work (the client keeps its peer's datagrams)."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        server, port = await echo_server()
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            client_port = writer.get_extra_info("sockname")[1]
            tcp = socket.socket()
            try:
                tcp.bind(("127.0.0.1", client_port))
            except OSError:
                tcp.close()
                pytest.skip("that port is taken on TCP too")
            tcp.listen()
            second = await loop.create_server(Echo, sock=tcp)
            async with second:
                assert second.sockets[0].getsockname() == ("127.0.0.1", client_port)
                r2, w2 = await asyncio.open_connection("127.0.0.1", client_port)
                for r, w, text in ((reader, writer, b"old"), (r2, w2, b"new")):
                    w.write(text)
                    assert await asyncio.wait_for(r.readexactly(3), WAIT) == text
                w2.close()
            writer.close()

    run(body, base=base, serve_tcp_sockets=True)


def test_sendfile_falls_back_to_writes_on_the_asyncio_base() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        received: list[Recorder] = []

        def factory() -> Recorder:
            received.append(Recorder())
            return received[-1]

        server = await loop.create_server(factory, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            transport, _ = await loop.create_connection(Recorder, "127.0.0.1", port)
            content = bytes(range(256)) * 1000  # > the write buffer's high-water mark
            with tempfile.TemporaryFile() as f:
                f.write(content)
                f.flush()
                sent = await asyncio.wait_for(loop.sendfile(transport, f, 100), WAIT)
                assert sent == len(content) - 100
                assert f.tell() == len(content)
            transport.close()
            assert await asyncio.wait_for(received[0].lost, WAIT) is None
            assert received[0].data == content[100:]

    run(body)
