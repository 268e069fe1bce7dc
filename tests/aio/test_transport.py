"""The rest of the Transport contract: extra info, write rules, close timing, TIME-WAIT."""

from __future__ import annotations

import asyncio
import logging
import socket
import warnings

import pytest
import uvloop
from aio_helpers import FAST, accepted, recorders, serving
from support.protocols import Echo, Recorder

import udptcp
from udptcp.aio.connsocket import ConnectionSocket
from udptcp.aio.endpoint import Endpoint, open_endpoints
from udptcp.core.segment import Segment


async def test_get_extra_info() -> None:
    async with serving(Echo) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        assert transport.get_extra_info("peername") == ("127.0.0.1", port)
        sockname = transport.get_extra_info("sockname")
        assert sockname[0] == "127.0.0.1" and sockname[1] != port
        local_vport, remote_vport = transport.get_extra_info("vports")
        assert remote_vport == port and 49152 <= local_vport <= 65535
        assert transport.get_extra_info("no such key", "default") == "default"

        sock = transport.get_extra_info("socket")
        assert isinstance(sock, ConnectionSocket)
        assert sock is transport.get_extra_info("socket")
        assert (sock.family, sock.type, sock.proto) == (
            socket.AF_INET,
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
        )
        assert sock.getpeername() == ("127.0.0.1", port)
        assert sock.getsockname() == sockname
        assert sock.fileno() == -1
        # What libraries do in connection_made must not raise.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        assert transport.get_extra_info("udptcp_connection").nodelay is False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", 4), 30)
        sock.setsockopt(9999, 9999, b"\x01\x00\x00\x00")  # unknown: ignored quietly
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
        assert len(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR, 4)) == 4
        sock.settimeout(0)
        sock.close()  # must not touch the shared UDP socket
        transport.write(b"still open")
        assert await client.received(10) == b"still open"

        stats = transport.get_extra_info("udptcp_stats")
        for key in ("srtt", "rto", "retransmits", "bytes_sent", "bytes_received"):
            assert key in stats
        assert stats["bytes_sent"] == 10 and stats["bytes_received"] == 10
        assert "ESTABLISHED" in repr(transport)
        transport.close()
        await asyncio.wait_for(client.lost, 5)


async def test_write_rules() -> None:
    async with serving(Echo) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        with pytest.raises(TypeError, match="bytes-like"):
            transport.write("text")  # type: ignore[arg-type]
        transport.write(b"")  # nothing happens
        transport.write(bytearray(b"ab"))
        transport.write(memoryview(b"cd"))
        assert await client.received(4) == b"abcd"
        assert transport.get_write_buffer_size() == 0
        transport.close()
        assert transport.is_closing()
        assert not transport.is_reading()
        transport.write(b"ignored once closing")
        transport.write_eof()  # no-op once closing
        await asyncio.wait_for(client.lost, 5)
        assert client.data == b"abcd"


async def test_a_held_short_segment_goes_on_the_loops_next_turn() -> None:
    # Autocorking: a write's short last segment waits while earlier data is in flight, but
    # only until the event loop's next turn; nothing else (no ACK, no further write) is
    # needed to send it.
    made, factory = recorders()
    async with serving(factory) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        await client.made
        conn = transport.conn
        transport.write(b"a" * 100)  # nothing in flight: out at once
        assert transport.get_write_buffer_size() == 0 and not conn.tail_held
        transport.write(b"b" * 100)  # the first is in flight: held
        assert conn.tail_held and transport.get_write_buffer_size() == 100
        await asyncio.sleep(0)  # one turn of the loop
        assert transport.get_write_buffer_size() == 0 and not conn.tail_held
        receiver = await accepted(made)
        assert await receiver.received(200) == b"a" * 100 + b"b" * 100
        transport.close()
        await asyncio.wait_for(client.lost, 5)


@pytest.mark.parametrize("end", ["close", "write_eof"])
async def test_a_held_short_segment_goes_out_with_the_fin(end: str) -> None:
    made, factory = recorders()
    async with serving(factory) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        await client.made
        transport.write(b"a" * 100)
        transport.writelines([b"b" * 50, b"c" * 50])
        assert transport.conn.tail_held
        getattr(transport, end)()  # at once, in the same turn: data first, then the FIN
        assert transport.get_write_buffer_size() == 0 and not transport.conn.tail_held
        receiver = await accepted(made)
        await asyncio.wait_for(receiver.eof, 5)
        assert bytes(receiver.data) == b"a" * 100 + b"b" * 50 + b"c" * 50
        transport.abort()


async def test_writes_after_connection_lost_are_ignored_then_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(Echo) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        transport.abort()
        await asyncio.wait_for(client.lost, 5)
        with caplog.at_level(logging.WARNING, logger="udptcp"):
            for _ in range(4):
                transport.write(b"x")
            assert not caplog.records  # asyncio warns from the fifth write on
            transport.write(b"x")
            assert "closed transport" in caplog.records[0].getMessage()


async def test_connection_lost_is_called_exactly_once() -> None:
    made, factory = recorders()
    async with serving(factory) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        await accepted(made)
        # Both sides close at once, then abort on top of it.
        transport.close()
        assert made[0].transport is not None
        made[0].transport.close()
        transport.abort()
        made[0].transport.abort()
        transport.close()
        await asyncio.wait_for(asyncio.gather(client.lost, made[0].lost), 5)
        await asyncio.sleep(0.1)
    assert client.lost_calls == [None]
    assert made[0].lost_calls == [None]
    assert client.calls.count("connection_lost") == 1


async def test_falsy_eof_received_closes_the_transport() -> None:
    made, factory = recorders()  # Recorder.eof_received returns False
    async with serving(factory) as (server, port):
        transport, client = await udptcp.create_connection(
            lambda: Recorder(keep_open=True), "127.0.0.1", port
        )
        transport.write_eof()
        await asyncio.wait_for(client.eof, 5)  # the server closed in answer
        assert made[0].transport is not None and made[0].transport.is_closing()
        assert await asyncio.wait_for(made[0].lost, 5) is None
        assert await asyncio.wait_for(client.lost, 5) is None


async def test_active_closer_reports_connection_lost_on_time_wait() -> None:
    made, factory = recorders()
    async with serving(factory, config=FAST) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port, config=FAST)
        endpoint = transport.endpoint
        await accepted(made)
        transport.close()
        await asyncio.wait_for(made[0].eof, 5)
        assert made[0].transport is not None
        made[0].transport.close()
        assert await asyncio.wait_for(client.lost, 5) is None
        conn = transport.get_extra_info("udptcp_connection")
        assert conn.state is udptcp.State.TIME_WAIT
        # TIME-WAIT lives on inside the endpoint as a small record (not the connection),
        # and the endpoint keeps its socket until it ends.
        (key,) = endpoint.time_waits()
        assert key == transport.key and endpoint.connections() == []
        assert endpoint in open_endpoints() and not endpoint.is_closed
        await asyncio.sleep(4 * FAST.msl)
        assert endpoint.time_waits() == {} and endpoint.limits()["time_wait"] == 0
        assert endpoint.is_closed


async def test_trace_hook_sees_the_handshake() -> None:
    seen: list[tuple[str, str]] = []

    def trace(direction: str, addr: tuple[object, ...], seg: Segment) -> None:
        seen.append((direction, seg.flag_names()))

    async with serving(Echo) as (server, port):
        server.endpoints[0].trace = trace
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        await asyncio.sleep(0.02)
        assert seen[:3] == [("in", "SYN"), ("out", "SYN,ACK"), ("in", "ACK")]
        transport.close()
        await asyncio.wait_for(client.lost, 5)


async def test_closing_the_endpoint_drops_time_wait_silently() -> None:
    async with serving(Echo) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        transport.write_eof()
        await asyncio.wait_for(client.eof, 5)  # Echo closed back: we are the active closer
        await asyncio.wait_for(client.lost, 5)
        endpoint = transport.endpoint
        assert transport.get_extra_info("udptcp_connection").state is udptcp.State.TIME_WAIT
        sent = endpoint.stats["datagrams_out"]
        endpoint.close()
        assert endpoint.is_closed
        assert endpoint.stats["datagrams_out"] == sent  # no RST for a TIME-WAIT connection
        assert client.lost_calls == [None]


@pytest.mark.parametrize("run", ["asyncio.run", "uvloop.run"])
def test_loop_shutdown_closes_time_wait_endpoints(run: str) -> None:
    endpoints: list[Endpoint] = []

    async def main() -> None:
        async with serving(Echo) as (server, port):
            transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
            transport.write_eof()
            await asyncio.wait_for(client.lost, 5)
            assert transport.get_extra_info("udptcp_connection").state is udptcp.State.TIME_WAIT
            endpoints.append(transport.endpoint)

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        (uvloop.run if run == "uvloop.run" else asyncio.run)(main())
    assert endpoints[0].is_closed  # not left to the garbage collector


async def test_keepalive_socket_options_reach_the_connection() -> None:
    import socket

    made, factory = recorders()
    async with serving(factory) as (server, port):
        transport, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        sock = transport.get_extra_info("socket")
        conn = transport.get_extra_info("udptcp_connection")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
        assert not conn.keepalive and sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 7)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        assert conn.keepalive
        assert (conn.keepalive_idle, conn.keepalive_interval, conn.keepalive_count) == (7, 2, 3)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
        transport.close()
