"""One UDP socket shared by udptcp and other traffic, and sockets the caller passes in.

STUN and an application's own datagrams reach their handlers instead of being dropped as
malformed segments; a claimed address and a route divert whole peers; a socket passed with
``sock=`` gets udptcp's buffer sizes, is never closed by a failed or cancelled connect, and
can be left open (``own_socket=False``); a numeric peer address is registered before the
first await, so a SYN already waiting on the socket finds the connection, not a listener.
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct

import pytest
from aio_helpers import FAST
from support.protocols import Echo, Recorder

import udptcp
from udptcp.aio.endpoint import SOCKET_BUFFER, Endpoint, is_stun
from udptcp.core.segment import ACK, SYN, Segment, decode, encode

COOKIE = b"\x21\x12\xa4\x42"


def stun_binding_request(txid: bytes = b"0123456789ab") -> bytes:
    """A STUN Binding request with no attributes (RFC 8489 §5 header only)."""
    return struct.pack("!HH", 0x0001, 0) + COOKIE + txid


def udp_pair() -> tuple[socket.socket, socket.socket]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    return a, b


def wait_readable(sock: socket.socket, timeout: float = 5.0) -> None:
    """Block until a datagram waits on ``sock`` (no event loop runs meanwhile)."""
    readable, _, _ = select.select([sock], [], [], timeout)
    assert readable, "nothing arrived"


async def arrived(sock: socket.socket, timeout: float = 5.0) -> None:
    """Wait, with the loop running, until a datagram waits on ``sock``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not select.select([sock], [], [], 0)[0]:
        assert loop.time() < deadline, "nothing arrived"
        await asyncio.sleep(0.005)


def test_stun_is_told_apart_by_cookie_and_length() -> None:
    request = stun_binding_request()
    assert is_stun(request)
    assert not is_stun(request + b"\0\0\0\0")  # length field no longer matches
    assert not is_stun(b"\x40" + request[1:])  # top bits of a STUN type are zero
    assert not is_stun(request[:4] + b"\x21\x12\xa4\x43" + request[8:])
    # A SYN (checksummed TCP) is never taken for STUN.
    syn = encode(Segment(5000, 6000, 1234, 0, SYN, 65535))
    assert not is_stun(syn)


async def test_stun_and_application_datagrams_reach_handlers_beside_a_connection() -> None:
    server = await udptcp.create_server(Echo, "127.0.0.1", 0)
    endpoint = server.endpoints[0]
    got: list[tuple[bytes, tuple[str, int]]] = []

    def handler(data: bytes, addr: tuple[str, int]) -> bool:
        got.append((data, addr))
        return True

    remove = endpoint.add_datagram_handler(handler)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await udptcp.open_connection("127.0.0.1", port)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    other.sendto(stun_binding_request(), ("127.0.0.1", port))
    other.sendto(b"hello, app protocol", ("127.0.0.1", port))
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
    for _ in range(100):
        if len(got) == 2:
            break
        await asyncio.sleep(0.01)
    assert [d for d, _ in got] == [stun_binding_request(), b"hello, app protocol"]
    assert {a for _, a in got} == {other.getsockname()}
    stats = endpoint.statistics()
    assert stats["stun_in"] == 1 and stats.get("stun_unhandled", 0) == 0
    assert stats.get("malformed", 0) == 0
    # The application answers on the shared socket.
    endpoint.send_datagram(b"reply", other.getsockname())
    await arrived(other)
    assert other.recvfrom(100) == (b"reply", ("127.0.0.1", port))
    # Without a handler the same datagrams are counted, not lost silently.
    remove()
    other.sendto(stun_binding_request(), ("127.0.0.1", port))
    other.sendto(b"hello again", ("127.0.0.1", port))
    writer.write(b"pong")
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"pong"
    for _ in range(100):
        stats = endpoint.statistics()
        if stats.get("malformed", 0) and stats.get("stun_unhandled", 0):
            break
        await asyncio.sleep(0.01)
    assert stats["stun_unhandled"] == 1 and stats["malformed"] == 1
    other.close()
    writer.close()
    server.close()


async def test_a_claimed_address_gets_every_datagram_undecoded() -> None:
    a, b = udp_pair()
    loop = asyncio.get_running_loop()
    endpoint = Endpoint.for_socket(loop, a)
    endpoint.acquire()
    got: list[bytes] = []
    release = endpoint.claim_address(b.getsockname(), lambda data, addr: got.append(data))
    syn = encode(Segment(5000, 6000, 1234, 0, SYN, 65535))
    b.sendto(syn, a.getsockname())
    b.sendto(stun_binding_request(), a.getsockname())
    for _ in range(100):
        if len(got) == 2:
            break
        await asyncio.sleep(0.01)
    # The SYN was not answered (no RST): it went to the owner of the address.
    assert got == [syn, stun_binding_request()]
    release()
    b.sendto(syn, a.getsockname())
    await arrived(b)
    rst = decode(b.recv(100))
    assert rst.flags & ACK and rst.ack == 1235  # a closed port's answer, once released
    endpoint.release()
    b.close()


async def test_a_route_carries_a_connection_through_a_relay_callable() -> None:
    server = await udptcp.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    loop = asyncio.get_running_loop()
    endpoint = Endpoint.for_socket(loop, sock)
    # The "relay": the server is addressed as 127.0.0.1:1, and the route sends there.
    fake = ("127.0.0.1", 1)
    real = ("127.0.0.1", port)
    routed: list[int] = []

    def route(data: bytes, addr: tuple[str, int]) -> None:
        assert addr == fake
        routed.append(len(data))
        endpoint.send_direct(data, real)

    endpoint.set_route(fake, route)
    endpoint.claim_address(real, lambda data, addr: endpoint.inject(data, fake))
    reader, writer = await udptcp.open_connection(*fake, sock=sock, vport=port)
    writer.write(b"through the relay")
    assert await asyncio.wait_for(reader.readexactly(17), 5) == b"through the relay"
    assert writer.get_extra_info("peername") == fake
    assert len(routed) >= 2  # SYN, ACK, data at least
    assert endpoint.statistics()["datagrams_relayed_in"] >= 2
    writer.close()
    server.close()


async def test_a_socket_passed_in_gets_udptcp_buffer_sizes() -> None:
    server = await udptcp.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    default = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    expected = ours.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    ours.close()
    reader, writer = await udptcp.open_connection("127.0.0.1", port, sock=sock)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == max(expected, default)
    writer.close()
    server.close()


async def test_a_refused_connect_leaves_the_callers_socket_open() -> None:
    a, b = udp_pair()
    # b is a udptcp endpoint with no listener: the SYN is answered with RST.
    loop = asyncio.get_running_loop()
    refuser = Endpoint.for_socket(loop, b)
    refuser.acquire()
    with pytest.raises(ConnectionRefusedError):
        await udptcp.create_connection(Recorder, *b.getsockname(), sock=a, config=FAST)
    assert a.fileno() != -1
    # The socket still works for its owner.
    a.sendto(b"still mine", b.getsockname())
    refuser.release()


async def test_a_cancelled_connect_leaves_the_callers_socket_open() -> None:
    a, b = udp_pair()  # b never answers
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            udptcp.create_connection(Recorder, *b.getsockname(), sock=a), timeout=0.2
        )
    assert a.fileno() != -1
    assert not [ep for ep in udptcp.aio.open_endpoints() if ep.sock is a]
    # What the cancelled SYN left behind is the caller's business; the socket is readable
    # as a plain socket again (one datagram per read, GRO off).
    b.sendto(b"x" * 100, a.getsockname())
    b.sendto(b"y" * 100, a.getsockname())
    a.setblocking(True)
    a.settimeout(5)
    assert a.recvfrom(65535)[0] == b"x" * 100
    a.close()
    b.close()


async def test_own_socket_false_leaves_the_socket_open_after_the_connection() -> None:
    server = await udptcp.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    transport, protocol = await udptcp.create_connection(
        lambda: Recorder(), "127.0.0.1", port, sock=sock, own_socket=False, config=FAST
    )
    transport.write(b"x")
    await protocol.received(1)
    transport.close()
    await asyncio.wait_for(protocol.lost, 5)
    endpoint = Endpoint.existing(asyncio.get_running_loop(), sock)
    if endpoint is not None:  # TIME-WAIT (2 x FAST.msl) holds it a moment
        endpoint.close()
    assert sock.fileno() != -1
    sock.sendto(b"still usable", ("127.0.0.1", port))
    sock.close()
    server.close()


async def test_own_socket_true_closes_the_socket_with_the_endpoint() -> None:
    server = await udptcp.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    transport, protocol = await udptcp.create_connection(
        lambda: Recorder(), "127.0.0.1", port, sock=sock, config=FAST
    )
    endpoint = Endpoint.existing(asyncio.get_running_loop(), sock)
    assert endpoint is not None
    transport.abort()
    await asyncio.wait_for(protocol.lost, 5)
    assert endpoint.is_closed and sock.fileno() == -1
    server.close()


async def test_a_numeric_connect_registers_before_a_waiting_syn_is_read() -> None:
    """A listener and a simultaneous open on one socket: the peer's SYN, already waiting
    on the socket, must reach the connection, not the listener."""
    a, b = udp_pair()
    server = await udptcp.create_server(Echo, sock=a)  # listens on every virtual port
    # b's SYN (vports 2000 -> 1000) is sent at once, with no loop pass, and waits on a's
    # socket ...
    endpoint_b = Endpoint.for_socket(asyncio.get_running_loop(), b)
    transport_b = endpoint_b.connect(
        a.getsockname(), Recorder, FAST, remote_vport=1000, local_vport=2000
    )
    wait_readable(a)
    # ... when a opens towards b: an await here would let the listener take that SYN.
    # (Awaited directly: wait_for would run it in a task of its own, one loop pass later.)
    ta, pa = await udptcp.create_connection(
        Recorder, *b.getsockname(), sock=a, local_vport=1000, vport=2000, config=FAST
    )
    assert transport_b._waiter is not None
    await asyncio.wait_for(transport_b._waiter, 5)
    pb = transport_b.get_protocol()
    assert isinstance(pb, Recorder)
    assert server._clients == set()  # the listener took nothing
    conn = ta.get_extra_info("udptcp_connection")
    assert udptcp.State.SYN_RECEIVED in conn.state_history  # a simultaneous open
    ta.write(b"a to b")
    assert await pb.received(6) == b"a to b"
    ta.close()
    transport_b.close()
    server.close()
