"""Bytes in, the same bytes out: echo, bulk transfer, half-close, BufferedProtocol, IPv6."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from typing import Any

import pytest
from aio_helpers import accepted, ipv6_available, recorders, serving, until
from support.protocols import Echo, Recorder

import udptcp


async def test_echo_round_trip_with_protocols() -> None:
    async with serving(Echo) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        await client.made
        transport.write(b"hello, ")
        transport.writelines([b"udp", bytearray(b"tcp"), memoryview(b"!")])
        assert await client.received(14) == b"hello, udptcp!"
        transport.close()
        assert await asyncio.wait_for(client.lost, 5) is None
        assert client.calls[0] == "connection_made"
        assert client.calls[-1] == "connection_lost"


async def test_echo_round_trip_with_streams() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await udptcp.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await udptcp.open_connection("127.0.0.1", port)
        for word in (b"one\n", b"two\n", b"three\n"):
            writer.write(word)
            await writer.drain()
            assert await asyncio.wait_for(reader.readline(), 5) == word.upper()
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)


async def test_one_megabyte_arrives_intact() -> None:
    payload = os.urandom(1 << 20)
    made, factory = recorders()
    async with serving(factory) as (server, port):
        reader, writer = await udptcp.open_connection("127.0.0.1", port)
        writer.write(payload)
        writer.write_eof()
        await writer.drain()
        receiver = await accepted(made)
        await asyncio.wait_for(receiver.eof, 20)
        assert hashlib.sha256(receiver.data).hexdigest() == hashlib.sha256(payload).hexdigest()
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)


async def test_any_bytes_like_object_is_sent_as_its_bytes() -> None:
    # A memoryview of 4-byte items: len() counts items, the stream must carry its bytes.
    from array import array

    pieces = [memoryview(array("I", range(n))) for n in (3, 2000, 70_000)]
    made, factory = recorders()
    async with serving(factory) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        await client.made
        for piece in pieces:
            transport.write(piece)
        transport.write(b"!")
        transport.write_eof()
        receiver = await accepted(made)
        await asyncio.wait_for(receiver.eof, 20)
        assert bytes(receiver.data) == b"".join(p.tobytes() for p in pieces) + b"!"
        transport.close()


async def test_write_eof_half_closes_while_the_other_direction_flows() -> None:
    made: list[Recorder] = []

    def factory() -> Recorder:
        made.append(Recorder(keep_open=True))  # stay half-open after the client's FIN
        return made[-1]

    async with serving(factory) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        assert transport.can_write_eof()
        transport.write(b"request")
        transport.write_eof()
        with pytest.raises(RuntimeError, match="write_eof"):
            transport.write(b"more")
        peer = await accepted(made)
        await asyncio.wait_for(peer.eof, 5)
        assert peer.data == b"request"
        assert not client.eof.done()
        # The server still talks after the client's FIN; the client still listens.
        assert peer.transport is not None
        for i in range(5):
            peer.transport.write(b"reply %d;" % i)
            await asyncio.sleep(0.01)
        assert await client.received(40) == b"".join(b"reply %d;" % i for i in range(5))
        assert not transport.is_closing()
        peer.transport.close()
        await asyncio.wait_for(client.eof, 5)
        assert await asyncio.wait_for(client.lost, 5) is None
        assert await asyncio.wait_for(peer.lost, 5) is None
        assert client.calls == [
            "connection_made",
            "data_received",
            "eof_received",
            "connection_lost",
        ]


class Buffered(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.buf = bytearray(1000)
        self.data = bytearray()
        self.sizes: list[int] = []
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint: int) -> bytearray:
        self.sizes.append(sizehint)
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        self.data += self.buf[:nbytes]

    def eof_received(self) -> None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


async def test_buffered_protocol_receives_data_in_chunks() -> None:
    payload = os.urandom(100_000)
    made: list[Buffered] = []

    def factory() -> Buffered:
        made.append(Buffered())
        return made[-1]

    async with serving(factory) as (server, port):
        transport, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        transport.write(payload)
        transport.write_eof()
        await until(lambda: made)
        assert await asyncio.wait_for(made[0].lost, 10) is None
        assert made[0].data == payload
        assert max(made[0].sizes) > 1000  # segments bigger than the buffer were split


async def test_set_protocol_switches_where_data_goes() -> None:
    async with serving(Echo) as (server, port):
        transport, first = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        transport.write(b"a")
        await first.received(1)
        second = Recorder()
        transport.set_protocol(second)
        assert transport.get_protocol() is second
        transport.write(b"b")
        assert await second.received(1) == b"b"
        assert first.data == b"a"
        transport.close()
        await asyncio.wait_for(second.lost, 5)
        assert first.lost_calls == []


async def test_hundred_concurrent_connections_each_echo_100kb() -> None:
    async def one(port: int) -> bool:
        payload = os.urandom(100_000)
        reader, writer = await udptcp.open_connection("127.0.0.1", port)
        writer.write(payload)
        writer.write_eof()
        echoed = await reader.readexactly(len(payload))
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        return echoed == payload

    async with serving(Echo) as (server, port):
        results = await asyncio.wait_for(asyncio.gather(*(one(port) for _ in range(100))), 30)
    assert all(results)


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback (::1) on this machine")
async def test_echo_over_ipv6_loopback() -> None:
    async with serving(Echo, "::1") as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "::1", port)
        payload = os.urandom(50_000)
        transport.write(payload)
        assert await client.received(len(payload)) == payload
        assert transport.get_extra_info("peername")[:2] == ("::1", port)
        # The IPv6 payload budget: 1452 - 20 bytes of header.
        assert transport.get_extra_info("udptcp_connection").mss == 1432
        transport.close()
        await asyncio.wait_for(client.lost, 5)


async def test_host_names_and_all_interfaces() -> None:
    server = await udptcp.create_server(Echo, None, 0)  # every interface, as asyncio does
    async with server:
        assert 1 <= len(server.sockets) <= 2
        v4 = [s.getsockname()[1] for s in server.sockets if s.family == socket.AF_INET]
        transport, client = await udptcp.create_connection(Recorder, "localhost", v4[0])
        transport.write(b"by name")
        assert await client.received(7) == b"by name"
        transport.close()
        await asyncio.wait_for(client.lost, 5)


async def test_stream_reader_pauses_and_resumes_many_times() -> None:
    # A small limit makes StreamReader pause and resume the transport over and over; it
    # relies on resume_reading() never delivering data synchronously.
    payload = os.urandom(2_000_000)
    async with serving(Echo) as (server, port):
        reader, writer = await udptcp.open_connection("127.0.0.1", port, limit=4096)
        writer.write(payload)
        writer.write_eof()
        echoed = await asyncio.wait_for(reader.readexactly(len(payload)), 20)
        assert echoed == payload
        assert await reader.read() == b""
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)


class CongestedSocket(socket.socket):
    """A UDP socket whose kernel buffer is 'full' for the next ``refuse`` sends."""

    refuse = 0

    def send(self, data: Any, flags: int = 0) -> int:
        if self.refuse:
            self.refuse -= 1
            raise BlockingIOError
        return super().send(data, flags)

    def sendto(self, data: Any, *args: Any) -> int:
        if self.refuse:
            self.refuse -= 1
            raise BlockingIOError
        return super().sendto(data, *args)

    def sendmsg(self, buffers: Any, *args: Any) -> int:  # GSO runs go out this way
        if self.refuse:
            self.refuse -= 1
            raise BlockingIOError
        return super().sendmsg(buffers, *args)


async def test_a_full_socket_buffer_queues_segments_instead_of_dropping_them() -> None:
    made, factory = recorders()
    async with serving(factory) as (server, port):
        sock = CongestedSocket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port, sock=sock)
        payload = os.urandom(200_000)
        sock.refuse = 3
        transport.write(payload)
        assert await (await accepted(made)).received(len(payload)) == payload
        endpoint = transport.endpoint
        assert endpoint.stats["send_queued"] >= 1
        assert endpoint.stats["send_errors"] == 0
        # Nothing was lost, so nothing had to be retransmitted.
        assert transport.get_extra_info("udptcp_stats")["retransmits"] == 0
        transport.close()
        await asyncio.wait_for(client.lost, 5)


async def test_path_mtu_probing_finds_large_segments_on_loopback() -> None:
    import hashlib

    config = udptcp.Config(pmtu_max=9000)
    made, factory = recorders()
    async with serving(factory, config=config) as (server, port):
        transport, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port, config=config)
        payload = os.urandom(3_000_000)
        transport.write(payload)
        await until(lambda: made and len(made[0].data) == len(payload), 20)
        assert hashlib.sha256(bytes(made[0].data)).digest() == hashlib.sha256(payload).digest()
        stats = transport.get_extra_info("udptcp_stats")
        # Loopback carries 9000-byte datagrams: the binary search ends within 64 bytes.
        assert stats["pmtu"] >= 9000 - 64 and stats["pmtu_probes"] > 0
        transport.close()
