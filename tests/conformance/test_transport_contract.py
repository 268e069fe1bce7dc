"""The asyncio Transport/Protocol contract, as kernel TCP honours it and udptcp must too.

Every test runs on four loops (see conftest.py): ``tcp-asyncio``, ``tcp-uvloop``,
``udptcp-asyncio``, ``udptcp-uvloop``.
"""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest
import uvloop
from conformance_helpers import (
    HOST,
    is_udptcp,
    pair,
    serving,
    settle,
    wait_until,
)
from support.protocols import Recorder

# ---------------------------------------------------------------------- callbacks


async def test_callbacks_come_in_order_and_a_clean_close_reports_none() -> None:
    async with pair() as p:
        p.st.write(b"hello")
        p.st.write_eof()
        # The client's eof_received returns None: its transport closes itself, which
        # ends the server side too (its eof_received returns None as well).
        assert await asyncio.wait_for(p.client.lost, 5) is None
        assert await asyncio.wait_for(p.accepted.lost, 5) is None
        assert bytes(p.client.data) == b"hello"
        assert p.client.calls == [
            "connection_made",
            "data_received",
            "eof_received",
            "connection_lost",
        ]
        assert p.accepted.calls == ["connection_made", "eof_received", "connection_lost"]
        assert p.client.lost_calls == [None] and p.accepted.lost_calls == [None]


async def test_a_falsy_eof_received_closes_the_transport() -> None:
    async with pair() as p:
        p.st.write_eof()
        await asyncio.wait_for(p.client.eof, 5)
        assert p.ct.is_closing()
        assert await asyncio.wait_for(p.client.lost, 5) is None


async def test_a_truthy_eof_received_keeps_the_connection_half_open() -> None:
    async with pair(client=lambda: Recorder(keep_open=True)) as p:
        p.st.write_eof()
        await asyncio.wait_for(p.client.eof, 5)
        await settle()
        assert not p.ct.is_closing() and not p.client.lost.done()
        p.ct.write(b"still talking")
        assert await p.accepted.received(13) == b"still talking"
        p.ct.close()
        assert await asyncio.wait_for(p.client.lost, 5) is None
        assert await asyncio.wait_for(p.accepted.lost, 5) is None
        assert p.client.calls[-2:] == ["eof_received", "connection_lost"]


async def test_connection_lost_is_called_exactly_once() -> None:
    async with pair() as p:
        p.ct.close()
        p.ct.close()
        p.ct.abort()
        assert await asyncio.wait_for(p.client.lost, 5) is None
        await asyncio.wait_for(p.accepted.lost, 5)
        await settle()
        assert p.client.lost_calls == [None]
        assert p.accepted.lost_calls == [None]


async def test_a_reset_reports_connection_reset_error_once() -> None:
    async with pair() as p:
        # Unread data in the aborting side's receive buffer: kernel TCP answers with RST
        # too (RFC 9293 §3.6, closing with unread data), so both transports reset.
        p.st.pause_reading()
        p.ct.write(b"never read")
        await settle()
        p.st.abort()
        exc = await asyncio.wait_for(p.client.lost, 5)
        assert isinstance(exc, ConnectionResetError)
        assert exc.errno == errno.ECONNRESET
        await settle()
        assert p.client.lost_calls == [exc]
        assert "eof_received" not in p.client.calls
        assert await asyncio.wait_for(p.accepted.lost, 5) is None


async def test_close_with_unread_data_resets_the_peer() -> None:
    async with pair() as p:
        p.ct.pause_reading()
        p.st.write(b"never read")
        await settle()
        p.ct.close()
        assert await asyncio.wait_for(p.client.lost, 5) is None
        assert isinstance(await asyncio.wait_for(p.accepted.lost, 5), ConnectionResetError)
        assert "eof_received" not in p.accepted.calls


async def test_data_arriving_after_close_resets_the_sender() -> None:
    async with pair(accepted=lambda: Recorder(keep_open=True)) as p:
        p.ct.close()
        await asyncio.wait_for(p.accepted.eof, 5)

        async def keep_writing() -> None:
            while not p.accepted.lost.done():
                p.st.write(b"late data")
                await asyncio.sleep(0.02)

        await asyncio.wait_for(keep_writing(), 1)
        assert isinstance(p.accepted.lost.result(), ConnectionError)
        assert bytes(p.client.data) == b""


async def test_connection_lost_follows_close_without_waiting_for_the_peer() -> None:
    async with pair(accepted=lambda: Recorder(keep_open=True)) as p:
        p.ct.close()
        await asyncio.wait_for(p.accepted.eof, 5)
        assert await asyncio.wait_for(p.client.lost, 0.5) is None


@pytest.mark.udptcp_differs(
    "abort() always sends RST; asyncio's kernel transports just close the socket, which "
    "sends FIN unless unread data is left"
)
async def test_abort_without_unread_data_looks_like_a_close_to_the_peer() -> None:
    async with pair() as p:
        p.st.abort()
        assert await asyncio.wait_for(p.client.lost, 5) is None
        assert "eof_received" in p.client.calls


async def test_abort_reports_none_locally_and_discards_the_write_buffer() -> None:
    async with pair() as p:
        p.ct.write(b"x")
        p.ct.abort()
        assert p.ct.is_closing()
        p.ct.write(b"ignored")  # no exception after abort
        assert await asyncio.wait_for(p.client.lost, 5) is None
        assert p.client.calls == ["connection_made", "connection_lost"]
        await asyncio.wait_for(p.accepted.lost, 5)


async def test_an_exception_in_data_received_is_fatal_and_reported() -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))

    class Faulty(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            raise ValueError("protocol bug")

    async with pair(client=Faulty) as p:
        p.st.write(b"boom")
        exc = await asyncio.wait_for(p.client.lost, 5)
        assert isinstance(exc, ValueError)
        # (The message text is each loop's own; uvloop says "Fatal error on transport".)
        assert len(contexts) == 1 and "Fatal error" in str(contexts[0]["message"])
        assert contexts[0]["exception"] is exc
        assert p.ct.is_closing()
        await asyncio.wait_for(p.accepted.lost, 5)


async def test_an_exception_in_eof_received_is_fatal() -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))

    class Faulty(Recorder):
        def eof_received(self) -> bool:
            super().eof_received()
            raise ValueError("protocol bug")

    async with pair(client=Faulty) as p:
        p.st.write_eof()
        exc = await asyncio.wait_for(p.client.lost, 5)
        assert isinstance(exc, ValueError) and contexts[0]["exception"] is exc
        peer = await asyncio.wait_for(p.accepted.lost, 5)
        # A fatal error resets over udptcp, as abort() does (README: intended differences).
        assert isinstance(peer, ConnectionResetError) if is_udptcp() else peer is None


async def test_an_exception_in_connection_made_is_reported_and_the_connection_lives() -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))

    class Faulty(Recorder):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            raise ValueError("protocol bug")

    async with pair(client=Faulty) as p:
        await wait_until(lambda: contexts)
        assert isinstance(contexts[0]["exception"], ValueError)
        await settle()
        # (Whether it then reads differs: uvloop's TCP transport does not start reading.)
        assert not p.ct.is_closing() and not p.st.is_closing()
        assert p.client.lost_calls == [] and p.accepted.lost_calls == []


# ---------------------------------------------------------------------- protocols


class Buffered(asyncio.BufferedProtocol):
    """Reads through a deliberately small buffer."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.buffer = bytearray(1000)
        self.data = bytearray()
        self.hints: list[int] = []
        self.calls: list[str] = []
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.calls.append("connection_made")
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> bytearray:
        self.hints.append(sizehint)
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        assert 0 < nbytes <= len(self.buffer)
        self.data += self.buffer[:nbytes]

    def eof_received(self) -> None:
        self.calls.append("eof_received")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.calls.append("connection_lost")
        self.lost.set_result(exc)


async def test_buffered_protocol_gets_data_through_get_buffer() -> None:
    loop = asyncio.get_running_loop()
    payload = bytes(range(256)) * 400  # 100 KiB through a 1000-byte buffer
    accepted: list[Recorder] = []

    def factory() -> Recorder:
        accepted.append(Recorder())
        return accepted[-1]

    async with serving(factory) as (_, port):
        transport, proto = await loop.create_connection(Buffered, HOST, port)
        await wait_until(lambda: accepted and accepted[0].made.done())
        server_side = accepted[0].transport
        assert server_side is not None
        server_side.write(payload)
        server_side.write_eof()
        assert await asyncio.wait_for(proto.lost, 5) is None
        assert bytes(proto.data) == payload
        assert proto.calls == ["connection_made", "eof_received", "connection_lost"]
        assert proto.hints and all(isinstance(h, int) for h in proto.hints)


async def test_set_protocol_switches_where_data_goes() -> None:
    async with pair() as p:
        p.st.write(b"first")
        await p.client.received(5)
        second = Recorder()
        p.ct.set_protocol(second)
        assert p.ct.get_protocol() is second
        p.st.write(b"second")
        assert await second.received(6) == b"second"
        assert bytes(p.client.data) == b"first"


# ---------------------------------------------------------------------- writing


async def test_writelines_sends_every_buffer_in_order() -> None:
    async with pair() as p:
        p.ct.writelines([b"ab", bytearray(b"cd"), memoryview(b"ef")])
        p.ct.writelines(bytes([c]) for c in b"gh")
        assert await p.accepted.received(8) == b"abcdefgh"


async def test_write_eof_half_closes_and_the_peer_can_still_answer() -> None:
    async with pair(accepted=lambda: Recorder(keep_open=True)) as p:
        assert p.ct.can_write_eof()
        p.ct.write(b"request")
        p.ct.write_eof()
        p.ct.write_eof()  # a second one is a no-op
        await asyncio.wait_for(p.accepted.eof, 5)
        assert bytes(p.accepted.data) == b"request"
        with pytest.raises(RuntimeError):
            p.ct.write(b"too late")
        assert not p.ct.is_closing()
        p.st.write(b"response")
        p.st.close()
        assert await asyncio.wait_for(p.client.lost, 5) is None
        assert bytes(p.client.data) == b"response"
        assert p.client.calls == [
            "connection_made",
            "data_received",
            "eof_received",
            "connection_lost",
        ]


async def test_write_after_close_is_ignored() -> None:
    async with pair() as p:
        p.ct.write(b"before")
        p.ct.close()
        p.ct.write(b"after")  # no exception, and the bytes never leave
        await asyncio.wait_for(p.accepted.eof, 5)
        assert bytes(p.accepted.data) == b"before"
        assert await asyncio.wait_for(p.client.lost, 5) is None
        if isinstance(asyncio.get_running_loop(), uvloop.Loop) and not is_udptcp():
            # uvloop's own TCP transport differs from asyncio's here; udptcp follows
            # asyncio on both loops (README: intended differences).
            with pytest.raises(RuntimeError):
                p.ct.write(b"after connection_lost")
            return
        for _ in range(6):
            p.ct.write(b"after connection_lost")  # ignored, as asyncio ignores it


async def test_misuse_raises_asyncio_exceptions() -> None:
    async with pair() as p:
        with pytest.raises(TypeError):
            p.ct.write("text")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            p.ct.write(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            p.ct.writelines(["text"])  # type: ignore[list-item]
        with pytest.raises(ValueError):
            p.ct.set_write_buffer_limits(high=1, low=2)
        p.ct.write_eof()
        with pytest.raises(RuntimeError):
            p.ct.write(b"after write_eof")
        with pytest.raises(RuntimeError):
            p.ct.writelines([b"after write_eof"])


async def test_close_flushes_the_write_buffer_before_fin() -> None:
    payload = b"0123456789abcdef" * (1 << 17)  # 2 MiB, more than any buffer
    async with pair() as p:
        p.st.pause_reading()
        p.ct.write(payload)
        p.ct.close()
        assert p.ct.is_closing()
        await settle()
        assert not p.accepted.eof.done()
        p.st.resume_reading()
        await asyncio.wait_for(p.accepted.eof, 10)
        assert bytes(p.accepted.data) == payload
        assert await asyncio.wait_for(p.client.lost, 5) is None


async def test_write_buffer_limits_pause_and_resume_writing() -> None:
    async with pair() as p:
        assert p.ct.get_write_buffer_size() == 0
        low, high = p.ct.get_write_buffer_limits()
        assert 0 <= low <= high
        p.ct.set_write_buffer_limits(high=4096)
        assert p.ct.get_write_buffer_limits() == (1024, 4096)
        p.ct.set_write_buffer_limits(high=65536, low=16384)
        assert p.ct.get_write_buffer_limits() == (16384, 65536)

        p.st.pause_reading()  # the peer stops reading: buffers fill up
        chunk = b"z" * 65536
        sent = 0
        while "pause_writing" not in p.client.calls:
            assert sent < 256 << 20, "pause_writing never came"
            p.ct.write(chunk)
            sent += len(chunk)
            await asyncio.sleep(0)
        assert p.ct.get_write_buffer_size() > 16384
        assert p.client.calls.count("pause_writing") == 1
        p.st.resume_reading()
        await asyncio.wait_for(p.accepted.received(sent), 20)
        await wait_until(lambda: "resume_writing" in p.client.calls)
        assert p.ct.get_write_buffer_size() <= 16384
        assert p.client.calls.count("pause_writing") == 1
        assert len(p.accepted.data) == sent


# ---------------------------------------------------------------------- reading


async def test_pause_reading_holds_data_and_eof_until_resumed() -> None:
    async with pair() as p:
        assert p.ct.is_reading()
        p.ct.pause_reading()
        p.ct.pause_reading()  # idempotent
        assert not p.ct.is_reading()
        p.st.write(b"held back")
        p.st.write_eof()
        await settle(0.1)
        assert p.client.calls == ["connection_made"]
        p.ct.resume_reading()
        p.ct.resume_reading()
        assert p.ct.is_reading()
        await asyncio.wait_for(p.client.eof, 5)
        assert bytes(p.client.data) == b"held back"
        assert p.client.calls[:3] == ["connection_made", "data_received", "eof_received"]
        assert await asyncio.wait_for(p.client.lost, 5) is None
        assert not p.ct.is_reading()


async def test_is_closing_follows_close() -> None:
    async with pair() as p:
        assert not p.ct.is_closing() and not p.st.is_closing()
        p.ct.close()
        assert p.ct.is_closing()
        assert await asyncio.wait_for(p.client.lost, 5) is None
        await asyncio.wait_for(p.accepted.eof, 5)
        assert p.st.is_closing()  # its eof_received returned None


# ---------------------------------------------------------------------- extra info


async def test_get_extra_info_has_addresses_and_a_socket_taking_tcp_options() -> None:
    async with pair() as p:
        assert p.ct.get_extra_info("peername") == (HOST, p.port)
        sockname = p.ct.get_extra_info("sockname")
        assert sockname[0] == HOST and isinstance(sockname[1], int)
        assert p.st.get_extra_info("peername") == sockname
        assert p.st.get_extra_info("sockname") == (HOST, p.port)
        assert p.ct.get_extra_info("no such key") is None
        assert p.ct.get_extra_info("no such key", "default") == "default"
        for transport in (p.ct, p.st):
            sock = transport.get_extra_info("socket")
            assert (sock.family, sock.type) == (socket.AF_INET, socket.SOCK_STREAM)
            assert sock.getpeername() == transport.get_extra_info("peername")
            # udptcp hands out a per-connection stand-in, not the shared UDP socket (README).
            assert (sock.fileno() == -1) if is_udptcp() else (sock.fileno() >= 0)
            # What libraries do in connection_made must never raise.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        p.ct.write(b"ping")
        assert await p.accepted.received(4) == b"ping"


async def test_connect_to_a_closed_port_is_refused() -> None:
    loop = asyncio.get_running_loop()
    # A port with neither a TCP listener nor a UDP socket on it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
        t.bind((HOST, 0))
        port = t.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind((HOST, port))
            except OSError:
                pytest.skip("could not find a port free for both TCP and UDP")
    with pytest.raises(ConnectionRefusedError) as refused:
        await asyncio.wait_for(loop.create_connection(Recorder, HOST, port), 10)
    assert refused.value.errno == errno.ECONNREFUSED


# ---------------------------------------------------------------------- streams


async def test_streams_readline_readexactly_drain_and_wait_closed() -> None:
    done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        block = await reader.readexactly(5)
        rest = await reader.read()  # until EOF
        writer.write(line.upper() + block[::-1] + rest)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        done.set_result(line)

    server = await asyncio.start_server(handle, HOST, 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(HOST, port)
        assert writer.can_write_eof()
        assert writer.get_extra_info("peername") == (HOST, port)
        writer.write(b"hello line\n12345")
        writer.writelines([b"and ", b"the rest"])
        await writer.drain()
        writer.write_eof()
        assert await asyncio.wait_for(reader.readline(), 5) == b"HELLO LINE\n"
        assert await reader.readexactly(5) == b"54321"
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await reader.readexactly(100)
        assert info.value.partial == b"and the rest"
        assert reader.at_eof()
        assert await reader.read() == b""
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)
        assert writer.is_closing()
        assert await asyncio.wait_for(done, 5) == b"hello line\n"


async def test_streams_drain_waits_for_a_slow_reader() -> None:
    payload = bytes(range(256)) * 16384  # 4 MiB
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)  # start late: the client's drain() must wait
        got.set_result(await reader.readexactly(len(payload)))
        writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(HOST, port)
        for i in range(0, len(payload), 65536):
            writer.write(payload[i : i + 65536])
            await asyncio.wait_for(writer.drain(), 10)
        assert await asyncio.wait_for(got, 10) == payload
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await writer.wait_closed()


# ---------------------------------------------------------------------- servers


async def test_server_surface() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Recorder, HOST, 0, start_serving=False)
    assert not server.is_serving()
    assert server.get_loop() is loop
    sock = server.sockets[0]
    assert sock.getsockname()[0] == HOST
    # The listening socket is a UDP socket over udptcp (README: intended differences).
    expected = socket.SOCK_DGRAM if is_udptcp() else socket.SOCK_STREAM
    assert sock.type == expected
    async with server:
        await server.start_serving()
        assert server.is_serving()
        task = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0.01)
        transport, proto = await loop.create_connection(Recorder, HOST, sock.getsockname()[1])
        transport.close()
        await asyncio.wait_for(proto.lost, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
    await asyncio.wait_for(server.wait_closed(), 5)
