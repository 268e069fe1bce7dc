"""NAT binding maintenance (``Config.nat_keepalive``): STUN Binding requests to each remote
address at a fixed interval, from both sides, answered by peers that keep bindings too,
ignored safely by plain peers, with a changed mapping reported."""

from __future__ import annotations

import asyncio
import socket

import pytest
from support.protocols import Echo, Recorder

import udptcp
from udptcp.aio.endpoint import Endpoint
from udptcp.aio.natkeep import keep_binding

stun = pytest.importorskip("aioice.stun")

KEEP = udptcp.Config(nat_keepalive=0.05)


async def until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_both_sides_keep_the_binding_and_answer_each_other() -> None:
    server = await udptcp.create_server(Echo, "127.0.0.1", 0, config=KEEP)
    port = server.sockets[0].getsockname()[1]
    transport, protocol = await udptcp.create_connection(Recorder, "127.0.0.1", port, config=KEEP)
    client_ep = transport.endpoint
    server_ep = server.endpoints[0]
    conn = transport.get_extra_info("udptcp_connection")
    segments_before = conn.stats()["segments_received"]

    def enough() -> bool:
        c, s = client_ep.statistics(), server_ep.statistics()
        return (
            c.get("nat_keepalives_sent", 0) >= 3
            and s.get("nat_keepalives_sent", 0) >= 3
            and c.get("nat_keepalives_answered", 0) >= 2
            and s.get("nat_keepalives_answered", 0) >= 2
        )

    await until(enough)
    # The idle connection's core saw none of it, and nothing counted as malformed.
    assert conn.stats()["segments_received"] == segments_before
    for ep in (client_ep, server_ep):
        assert ep.statistics().get("malformed", 0) == 0
        assert ep.statistics().get("nat_mapping_changed", 0) == 0
    # Each side learned its address as the other sees it.
    assert client_ep.nat_keeper is not None
    local = transport.get_extra_info("sockname")
    assert client_ep.nat_keeper.mapped == {("127.0.0.1", port): local}
    transport.write(b"still here")
    assert await protocol.received(10) == b"still here"
    transport.close()
    server.close()


async def test_a_plain_peer_drops_the_keepalives_and_the_connection_carries_on() -> None:
    server = await udptcp.create_server(Echo, "127.0.0.1", 0)  # no binding maintenance
    port = server.sockets[0].getsockname()[1]
    transport, protocol = await udptcp.create_connection(Recorder, "127.0.0.1", port, config=KEEP)
    server_ep = server.endpoints[0]
    await until(lambda: server_ep.statistics().get("stun_unhandled", 0) >= 3)
    assert transport.endpoint.statistics().get("nat_keepalives_answered", 0) == 0
    transport.write(b"fine")
    assert await protocol.received(4) == b"fine"
    transport.close()
    server.close()


async def test_a_listener_keeps_the_bindings_of_its_accepted_connections() -> None:
    server = await udptcp.create_server(Echo, "127.0.0.1", 0, config=KEEP)
    port = server.sockets[0].getsockname()[1]
    # A client that keeps no bindings of its own: the server's requests go unhandled.
    plain = udptcp.Config(path_keepalive=None)
    transport, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port, config=plain)
    client_ep = transport.endpoint
    await until(lambda: client_ep.statistics().get("stun_unhandled", 0) >= 3)
    assert server.endpoints[0].statistics()["nat_keepalives_sent"] >= 3
    transport.close()
    server.close()


async def test_keepalives_stop_with_the_connection() -> None:
    server = await udptcp.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    transport, protocol = await udptcp.create_connection(
        Recorder, "127.0.0.1", port, sock=sock, config=KEEP
    )
    endpoint = transport.endpoint
    endpoint.acquire()  # keep the socket open after the connection
    await until(lambda: endpoint.statistics().get("nat_keepalives_sent", 0) >= 1)
    transport.abort()
    await asyncio.wait_for(protocol.lost, 5)
    await asyncio.sleep(0.1)  # one interval for the keeper to notice
    sent = endpoint.statistics()["nat_keepalives_sent"]
    await asyncio.sleep(0.2)  # four intervals
    assert endpoint.statistics()["nat_keepalives_sent"] == sent
    endpoint.release()
    server.close()


async def test_a_changed_mapping_is_detected_and_reported() -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    endpoint = Endpoint.for_socket(loop, sock)
    endpoint.acquire()
    # A "peer" that answers Binding requests, as a NAT that rebinds would make it answer.
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    answers = iter([("192.0.2.1", 1000), ("192.0.2.1", 1000), ("192.0.2.1", 2000)])
    answered: list[tuple[str, int]] = []

    def answer() -> None:
        data, addr = peer.recvfrom(2048)
        request = stun.parse_message(data)
        mapped = next(answers, ("192.0.2.1", 2000))
        answered.append(mapped)
        response = stun.Message(
            stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=request.transaction_id
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = mapped
        peer.sendto(bytes(response), addr)

    loop.add_reader(peer.fileno(), answer)
    changes: list[tuple[object, object, object]] = []
    stop = keep_binding(endpoint, peer.getsockname(), 0.05)
    assert endpoint.nat_keeper is not None
    endpoint.nat_keeper.on_change.append(lambda *change: changes.append(change))
    try:
        await until(lambda: len(answered) >= 4)
        await until(lambda: bool(changes))
    finally:
        loop.remove_reader(peer.fileno())
        stop()
    assert changes[0] == (peer.getsockname(), ("192.0.2.1", 1000), ("192.0.2.1", 2000))
    assert endpoint.statistics()["nat_mapping_changed"] == 1
    endpoint.release()
    peer.close()


async def test_a_stranger_gets_no_answer() -> None:
    server = await udptcp.create_server(Echo, "127.0.0.1", 0, config=KEEP)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port, config=KEEP)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    stranger.sendto(bytes(request), ("127.0.0.1", port))
    server_ep = server.endpoints[0]
    await until(lambda: server_ep.statistics().get("stun_unhandled", 0) >= 1)
    stranger.setblocking(False)
    with pytest.raises(BlockingIOError):
        stranger.recvfrom(2048)
    stranger.close()
    transport.close()
    server.close()
