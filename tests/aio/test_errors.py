"""The exceptions asyncio users already catch: refused, reset, timed out, cancelled."""

from __future__ import annotations

import asyncio
import errno
import socket
import sys
import time
from typing import Any

import pytest
from aio_helpers import FAST, accepted, free_udp_port, recorders, serving
from support.protocols import Echo, Recorder

import udptcp
import udptcp.aio.endpoint
from udptcp.aio.endpoint import Endpoint, open_endpoints
from udptcp.core.segment import ACK, RST, Segment, decode, encode


async def test_abort_resets_the_peer() -> None:
    made, factory = recorders()
    async with serving(factory) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        transport.write(b"x")
        await (await accepted(made)).received(1)
        transport.abort()
        assert transport.is_closing()
        assert not client.lost.done()  # connection_lost comes soon, not inside abort()
        assert await asyncio.wait_for(client.lost, 5) is None
        error = await asyncio.wait_for(made[0].lost, 5)
        assert isinstance(error, ConnectionResetError)
        assert error.errno == errno.ECONNRESET
        # Kernel TCP says "Connection reset by peer"; udptcp adds who and why.
        peer = made[0].transport.get_extra_info("peername")
        assert str(error) == (
            f"[Errno {errno.ECONNRESET}] Connection with {peer!r}: "
            "Connection reset by peer (RST received)"
        )
        transport.abort()  # idempotent
        await asyncio.sleep(0.01)
        assert client.lost_calls == [None]


async def test_a_write_loop_that_never_yields_sees_the_reset() -> None:
    """A peer's RST waiting in the socket ends the connection before the next write()s
    return, as a kernel socket's next send fails, though the program never yields; the
    protocol still hears of it only from the loop (never inside write())."""
    made, factory = recorders()
    async with serving(factory) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        transport.write(b"x")
        peer = await accepted(made)
        await peer.received(1)
        peer.transport.abort()  # type: ignore[union-attr]  # the RST is in our socket now
        writes = 0
        while not transport.is_closing():
            transport.write(b"y")
            writes += 1
            assert writes < 1000, "the reset went unnoticed"
        # The write path reads at least every POLL_WRITES writes.
        assert writes <= udptcp.aio.endpoint.POLL_WRITES
        assert "connection_lost" not in client.calls  # not from inside write()
        assert isinstance(await asyncio.wait_for(client.lost, 5), ConnectionResetError)
        transport.write(b"ignored")  # as on asyncio's transports: dropped, no exception


async def test_a_write_loop_that_never_yields_sees_an_in_process_peer_close() -> None:
    """The peer is in this process and closed its end: a kernel would answer the data with
    RST by itself; udptcp's write path reads the peer's endpoint too, so the loop ends
    (aioftp's test_passive_closed_on_recall does this) long before the write buffer fills."""
    made, factory = recorders()
    async with serving(factory) as (server, port):
        transport, client = await udptcp.create_connection(
            lambda: Recorder(keep_open=True),  # half-open after EOF, as asyncio's streams
            "127.0.0.1",
            port,
        )
        peer = await accepted(made)
        peer.transport.close()  # type: ignore[union-attr]
        await asyncio.wait_for(client.eof, 5)
        writes = 0
        while not transport.is_closing():
            transport.write(b"-")
            writes += 1
            assert writes < 1000, "the in-process peer's reset went unnoticed"
        assert writes <= udptcp.aio.endpoint.POLL_WRITES
        assert isinstance(await asyncio.wait_for(client.lost, 5), ConnectionResetError)


async def test_no_listener_on_the_virtual_port_is_refused_promptly() -> None:
    async with serving(Echo, vport=7000) as (server, port):
        start = time.monotonic()
        with pytest.raises(ConnectionRefusedError) as refused:
            await udptcp.create_connection(Recorder, "127.0.0.1", port, vport=7001)
        assert time.monotonic() - start < 1.0
        # As asyncio's "Connect call failed ('127.0.0.1', 9)", with the reason added.
        assert refused.value.errno == errno.ECONNREFUSED
        assert str(refused.value).startswith(
            f"[Errno {errno.ECONNREFUSED}] Connect call failed ('127.0.0.1', {port}): "
        )
        assert "RST answered the SYN" in str(refused.value)
        # The listening virtual port itself works.
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port, vport=7000)
        assert transport.get_extra_info("vports")[1] == 7000
        transport.close()
        await asyncio.wait_for(client.lost, 5)


async def test_nothing_bound_on_the_udp_port_is_refused_by_icmp() -> None:
    port = free_udp_port()
    start = time.monotonic()
    with pytest.raises(ConnectionRefusedError) as refused:
        await udptcp.create_connection(Recorder, "127.0.0.1", port)
    assert time.monotonic() - start < 1.0
    assert refused.value.errno == errno.ECONNREFUSED
    assert f"Connect call failed ('127.0.0.1', {port}): " in str(refused.value)
    assert "ICMP port unreachable" in str(refused.value)
    assert open_endpoints() == []  # the client socket was released


@pytest.mark.skipif(sys.version_info < (3, 11), reason="ExceptionGroup is Python 3.11+")
async def test_all_errors_wraps_even_a_single_address_error_in_a_group() -> None:
    # As asyncio's create_connection(all_errors=True): an ExceptionGroup of every
    # address's error, one address or many.
    port = free_udp_port()
    with pytest.raises(ExceptionGroup) as group:  # noqa: F821 (3.11+)
        await udptcp.create_connection(Recorder, "127.0.0.1", port, all_errors=True)
    (refused,) = group.value.exceptions
    assert isinstance(refused, ConnectionRefusedError)
    assert f"Connect call failed ('127.0.0.1', {port}): " in str(refused)
    assert open_endpoints() == []


async def test_silent_peer_times_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))  # bound, never read: SYNs vanish
        port = hole.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(TimeoutError) as timed_out:
            await udptcp.create_connection(Recorder, "127.0.0.1", port, config=FAST)
        # Three SYNs, backed off: 0.05 + 0.1 + 0.2 s.
        assert 0.3 <= time.monotonic() - start < 2.0
        assert timed_out.value.errno == errno.ETIMEDOUT  # as kernel TCP's connect()
        assert f"Connect call failed ('127.0.0.1', {port}): " in str(timed_out.value)
        assert "no answer to 3 SYNs" in str(timed_out.value)
        assert open_endpoints() == []


async def test_cancelled_connect_leaves_nothing_behind() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        port = hole.getsockname()[1]
        task = asyncio.create_task(udptcp.create_connection(Recorder, "127.0.0.1", port))
        await asyncio.sleep(0.05)
        assert len(open_endpoints()) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert open_endpoints() == []


async def test_protocol_factory_error_fails_create_connection() -> None:
    def broken() -> asyncio.Protocol:
        raise ZeroDivisionError("factory")

    async with serving(Echo) as (server, port):
        with pytest.raises(ZeroDivisionError):
            await udptcp.create_connection(broken, "127.0.0.1", port)
        await asyncio.sleep(0.05)
        assert all(not ep.connections() for ep in server.endpoints)


class Exploding(Recorder):
    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if b"boom" in data:
            raise ValueError("protocol bug")


async def test_protocol_exception_resets_only_that_connection() -> None:
    handled: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: handled.append(ctx))
    made: list[Exploding] = []

    def factory() -> Exploding:
        made.append(Exploding())
        return made[-1]

    async with serving(factory) as (server, port):
        t1, c1 = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        t2, c2 = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        t1.write(b"boom")
        assert isinstance(await asyncio.wait_for(c1.lost, 5), ConnectionResetError)
        assert len(handled) == 1
        assert isinstance(handled[0]["exception"], ValueError)
        bad = next(p for p in made if b"boom" in p.data)
        assert isinstance(await asyncio.wait_for(bad.lost, 5), ValueError)
        # The other connection on the same endpoint is unharmed.
        t2.write(b"fine")
        good = next(p for p in made if p is not bad)
        await good.received(4)
        t2.close()
        await asyncio.wait_for(c2.lost, 5)


async def test_malformed_datagrams_are_counted_and_dropped() -> None:
    async with serving(Echo) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            junk.sendto(b"short", ("127.0.0.1", port))
            junk.sendto(b"\x00" * 19 + b"\x01" * 21, ("127.0.0.1", port))
        transport.write(b"still fine")
        assert await client.received(10) == b"still fine"
        stats = server.endpoints[0].stats
        assert stats["malformed:short"] == 1
        assert stats["malformed:checksum"] == 1
        assert stats["malformed"] == 2
        transport.close()
        await asyncio.wait_for(client.lost, 5)


async def test_an_empty_datagram_between_segments_stalls_nothing() -> None:
    # A wake-up asks the socket (FIONREAD) whether more than its first datagram waits; an
    # empty datagram answers 0 like an empty queue. It and what follows it must still be
    # read, in order, on the next wake-up.
    async with serving(Echo) as (server, port):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            transport.write(b"one ")  # sent at once: the server has not read it yet
            junk.sendto(b"", ("127.0.0.1", port))
            transport.write(b"two")
        assert await client.received(7) == b"one two"
        stats = server.endpoints[0].stats
        assert stats["malformed:short"] == 1
        transport.close()
        await asyncio.wait_for(client.lost, 5)


async def test_unknown_segment_is_answered_with_rst() -> None:
    async with serving(Echo) as (server, port):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.setblocking(False)
            raw.connect(("127.0.0.1", port))
            raw.send(encode(Segment(1234, port, 100, 5000, ACK, 1000)))
            loop = asyncio.get_running_loop()
            reply = decode(await asyncio.wait_for(loop.sock_recv(raw, 100), 2))
        assert reply.flags == RST
        assert (reply.src_port, reply.dst_port, reply.seq) == (port, 1234, 5000)


async def test_ssl_arguments_are_checked_as_asyncio_checks_them() -> None:
    # TLS itself is tested in tests/dropin/test_tls_api.py and tests/conformance/test_tls.py.
    with pytest.raises(TypeError, match="must be an SSLContext"):
        await udptcp.create_server(Echo, "127.0.0.1", 0, ssl=True)
    with pytest.raises(ValueError, match="only meaningful with ssl"):
        await udptcp.create_connection(Recorder, "127.0.0.1", 9, server_hostname="x")


async def test_bad_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError):
        await udptcp.create_connection(Recorder)
    with pytest.raises(ValueError):
        await udptcp.create_connection(Recorder, "127.0.0.1", 9, vport=0)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        with pytest.raises(ValueError):
            await udptcp.create_server(Echo, sock=tcp)


OUT_OF_RANGE = [70000, 65536, -1, "70000"]


@pytest.mark.parametrize("port", OUT_OF_RANGE, ids=repr)
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_port_outside_0_65535_overflows_as_on_asyncio(host: str, port: Any) -> None:
    # asyncio's default loop raises these for a numeric host (the socket module's errors);
    # getaddrinfo would otherwise take 70000 modulo 65536 and listen on 4464.
    with pytest.raises(OverflowError, match=r"^bind\(\): port must be 0-65535\.$"):
        await udptcp.create_server(Echo, host, port)
    with pytest.raises(OverflowError, match=r"^bind\(\): port must be 0-65535\.$"):
        await udptcp.start_server(lambda r, w: None, host, port)
    with pytest.raises(OverflowError, match=r"^connect\(\): port must be 0-65535\.$"):
        await udptcp.create_connection(Recorder, host, port)
    with pytest.raises(OverflowError, match=r"^connect\(\): port must be 0-65535\.$"):
        await udptcp.open_connection(host, port)
    with pytest.raises(OverflowError, match=r"^bind\(\): port must be 0-65535\.$"):
        await udptcp.create_connection(Recorder, host, 9, local_addr=(host, port))
    assert open_endpoints() == []


async def test_virtual_ports_outside_0_65535_overflow() -> None:
    with pytest.raises(OverflowError, match="vport: port must be 0-65535"):
        await udptcp.create_connection(Recorder, "127.0.0.1", 9, vport=70000)
    with pytest.raises(OverflowError, match="local_vport: port must be 0-65535"):
        await udptcp.create_connection(Recorder, "127.0.0.1", 9, local_vport=-1)
    with pytest.raises(OverflowError, match="vport: port must be 0-65535"):
        await udptcp.create_server(Echo, "127.0.0.1", 0, vport=65536)
    assert open_endpoints() == []


class UdpEcho(asyncio.DatagramProtocol):
    """A plain UDP echo service: not udptcp."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]
        self.received = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1
        self.transport.sendto(data, addr)


class UdpHello(UdpEcho):
    """A plain UDP service that answers every datagram with a greeting."""

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received += 1
        self.transport.sendto(b"hello", addr)


# Slow enough a SYN timeout (0.1 * (2**7 - 1) = 12.7 s) that failing fast shows.
PATIENT = udptcp.Config(rto_initial=0.1, syn_retries=6)


@pytest.mark.parametrize("service", [UdpEcho, UdpHello], ids=["echo", "hello"])
@pytest.mark.parametrize("same_vports", [False, True], ids=["vports", "same-vports"])
async def test_a_udp_service_that_is_not_udptcp_fails_the_connect_fast(
    service: type[UdpEcho], same_vports: bool
) -> None:
    loop = asyncio.get_running_loop()
    transport, udp = await loop.create_datagram_endpoint(service, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    # With equal virtual ports an echoed SYN reaches the very connection that sent it.
    extra = {"local_vport": port} if same_vports else {}
    try:
        start = time.monotonic()
        with pytest.raises(ConnectionRefusedError) as refused:
            await udptcp.create_connection(Recorder, "127.0.0.1", port, config=PATIENT, **extra)
        elapsed = time.monotonic() - start
    finally:
        transport.close()
    error = refused.value
    assert error.errno == errno.ECONNREFUSED
    assert str(error).startswith(
        f"[Errno {errno.ECONNREFUSED}] Connect call failed ('127.0.0.1', {port}): "
    )
    if service is UdpEcho:
        # The echo is recognised at once: the SYN came back as it was sent.
        assert "the SYN came back unchanged" in str(error)
        assert udp.received == 1
    else:
        # Two SYNs (the first and one retransmission) each got a non-segment answer.
        assert "answered 2 SYNs with datagrams that are not udptcp segments" in str(error)
        assert udp.received == 2
    assert elapsed < 5
    assert open_endpoints() == []


async def test_non_segments_from_another_address_do_not_fail_a_connect() -> None:
    # Anyone can send junk to a client's socket; only the address being connected to counts.
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.1", 0))

        class AnswersFromElsewhere(UdpEcho):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                self.received += 1
                other.sendto(b"hello", addr)

        transport, udp = await loop.create_datagram_endpoint(
            AnswersFromElsewhere, local_addr=("127.0.0.1", 0)
        )
        port = transport.get_extra_info("sockname")[1]
        client_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client_sock.bind(("127.0.0.1", 0))  # not connected: it hears every address
        endpoint = Endpoint.for_socket(loop, client_sock)
        try:
            with pytest.raises(TimeoutError):
                await udptcp.create_connection(
                    Recorder, "127.0.0.1", port, sock=client_sock, config=FAST
                )
        finally:
            transport.close()
        assert udp.received == 3  # every SYN was answered, from the wrong address
        assert endpoint.stats["malformed:short"] == 3
