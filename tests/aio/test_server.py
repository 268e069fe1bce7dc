"""The server object: asyncio.Server's surface, listeners, backlog, sock= reuse."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aio_helpers import accepted, recorders, serve, serving
from support.protocols import Echo, Recorder

import udptcp
from udptcp.aio.endpoint import close_endpoints, open_endpoints
from udptcp.core.segment import SYN, Segment, decode, encode


async def echo_once(port: int, payload: bytes = b"ping", **kw: object) -> bytes:
    transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port, **kw)  # type: ignore[arg-type]
    transport.write(payload)
    data = await client.received(len(payload))
    transport.close()
    await asyncio.wait_for(client.lost, 5)
    return data


async def test_async_with_closes_the_server() -> None:
    server, port = await serve(Echo)
    assert isinstance(server, udptcp.Server)
    assert isinstance(server, asyncio.AbstractServer)
    assert server.get_loop() is asyncio.get_running_loop()
    async with server as entered:
        assert entered is server
        assert server.is_serving()
        assert len(server.sockets) == 1
        assert server.sockets[0].type == socket.SOCK_DGRAM
        assert await echo_once(port) == b"ping"
    assert not server.is_serving()
    assert server.sockets == ()
    with pytest.raises(ConnectionRefusedError):
        await udptcp.create_connection(Recorder, "127.0.0.1", port)


async def test_serve_forever_until_cancelled() -> None:
    server, port = await serve(Echo, start_serving=False)
    assert not server.is_serving()
    task = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0)
    assert server.is_serving()
    assert await echo_once(port) == b"ping"
    with pytest.raises(RuntimeError, match="already being awaited"):
        await server.serve_forever()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not server.is_serving()
    assert server.sockets == ()
    with pytest.raises(RuntimeError, match="closed"):
        await server.serve_forever()


async def test_not_serving_yet_answers_rst() -> None:
    server, port = await serve(Echo, start_serving=False)
    with pytest.raises(ConnectionRefusedError):
        await udptcp.create_connection(Recorder, "127.0.0.1", port)
    await server.start_serving()
    assert server.is_serving()
    assert await echo_once(port) == b"ping"
    server.close()
    await asyncio.wait_for(server.wait_closed(), 5)


async def test_wait_closed_waits_for_the_connections() -> None:
    made, factory = recorders()
    server, port = await serve(factory)
    transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
    transport.write(b"x")
    await accepted(made)
    server.close()
    server.close()  # idempotent
    assert not server.is_serving()
    waiting = asyncio.ensure_future(server.wait_closed())
    await asyncio.sleep(0.1)
    assert not waiting.done()  # the established connection carries on
    transport.write(b"y")
    assert await made[0].received(2) == b"xy"
    transport.close()
    await asyncio.wait_for(waiting, 5)
    await asyncio.wait_for(client.lost, 5)
    await server.wait_closed()  # returns at once now


@pytest.mark.parametrize("how", ["close_clients", "abort_clients"])
async def test_close_and_abort_clients(how: str) -> None:
    made, factory = recorders()
    server, port = await serve(factory)
    clients = [await udptcp.create_connection(Recorder, "127.0.0.1", port) for _ in range(3)]
    await accepted(made, 3)
    server.close()
    getattr(server, how)()
    await asyncio.wait_for(server.wait_closed(), 5)
    errors = [await asyncio.wait_for(c.lost, 5) for _, c in clients]
    if how == "close_clients":
        assert all(p.lost.result() is None for p in made)
        assert all(c.eof.done() for _, c in clients)
    else:
        assert all(isinstance(e, ConnectionResetError) for e in errors)
    for transport, _ in clients:
        transport.close()


async def test_prebound_sockets_for_client_and_server() -> None:
    server_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server_sock.bind(("127.0.0.1", 0))
    port = server_sock.getsockname()[1]
    client_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client_sock.bind(("127.0.0.1", 0))
    server = await udptcp.create_server(Echo, sock=server_sock)
    async with server:
        assert server.sockets[0].getsockname() == server_sock.getsockname()
        transport, client = await udptcp.create_connection(
            Recorder, "127.0.0.1", port, sock=client_sock
        )
        assert transport.get_extra_info("sockname") == client_sock.getsockname()
        transport.write(b"pre-bound")
        assert await client.received(9) == b"pre-bound"
        transport.close()
        await asyncio.wait_for(client.lost, 5)
    # Ownership passed to udptcp, as with asyncio: both sockets are closed once idle.
    await asyncio.sleep(0.05)
    close_endpoints()  # the client's connection sits in TIME-WAIT
    assert server_sock.fileno() == -1
    assert client_sock.fileno() == -1


async def test_connected_socket_names_the_peer() -> None:
    async with serving(Echo) as (server, port):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", port))
        transport, client = await udptcp.create_connection(Recorder, sock=sock)
        assert transport.get_extra_info("peername") == ("127.0.0.1", port)
        transport.write(b"hi")
        assert await client.received(2) == b"hi"
        transport.close()
        await asyncio.wait_for(client.lost, 5)


async def test_specific_virtual_port_beats_the_wildcard_on_a_shared_socket() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    wild_made, wild = recorders()
    exact_made, exact = recorders()
    wildcard = await udptcp.create_server(wild, sock=sock)
    specific = await udptcp.create_server(exact, sock=sock, vport=80)
    assert wildcard.endpoints == specific.endpoints  # one endpoint, two listeners
    with pytest.raises(OSError):
        await udptcp.create_server(exact, sock=sock, vport=80)
    for vport in (80, 81, None):
        transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port, vport=vport)
        transport.close()
        await asyncio.wait_for(client.lost, 5)
    assert len(exact_made) == 1 and exact_made[0].transport is not None
    assert exact_made[0].transport.get_extra_info("vports")[0] == 80
    assert sorted(p.transport.get_extra_info("vports")[0] for p in wild_made) == [81, port]  # type: ignore[union-attr]
    for server in (wildcard, specific):
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


async def test_backlog_drops_syns_beyond_it_and_close_resets_pending() -> None:
    # Without SYN cookies (test_syn_defences.py has them answer instead of the drop).
    config = udptcp.Config(syn_cookies=False)
    async with serving(Echo, backlog=2, config=config) as (server, port):
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.setblocking(False)
            raw.connect(("127.0.0.1", port))
            for src in (1001, 1002, 1003):
                raw.send(encode(Segment(src, port, 1000 * src, 0, SYN, 65535)))
            replies = [decode(await asyncio.wait_for(loop.sock_recv(raw, 100), 2))]
            replies.append(decode(await asyncio.wait_for(loop.sock_recv(raw, 100), 2)))
            assert sorted(r.dst_port for r in replies) == [1001, 1002]
            assert all(r.flag_names() == "SYN,ACK" for r in replies)
            endpoint = server.endpoints[0]
            assert endpoint.stats["syn_dropped_backlog"] == 1
            server.close()  # the half-open connections are reset
            resets = [decode(await asyncio.wait_for(loop.sock_recv(raw, 100), 2)) for _ in "ab"]
            assert sorted(r.dst_port for r in resets) == [1001, 1002]
            assert all(r.flag_names() == "RST" for r in resets)
    assert open_endpoints() == []


async def test_simultaneous_open_with_both_virtual_ports_named() -> None:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    a.connect(b.getsockname())
    b.connect(a.getsockname())
    (ta, pa), (tb, pb) = await asyncio.wait_for(
        asyncio.gather(
            udptcp.create_connection(Recorder, sock=a, local_vport=1000, vport=2000),
            udptcp.create_connection(Recorder, sock=b, local_vport=2000, vport=1000),
        ),
        5,
    )
    conn = ta.get_extra_info("udptcp_connection")
    assert udptcp.State.SYN_RECEIVED in conn.state_history  # both SYNs crossed
    ta.write(b"from a")
    tb.write(b"from b")
    assert await pb.received(6) == b"from a"
    assert await pa.received(6) == b"from b"
    ta.close()
    tb.close()
    await asyncio.wait_for(asyncio.gather(pa.lost, pb.lost), 5)


async def test_a_server_restarts_on_its_port_while_its_closed_connections_wait_in_time_wait() -> (
    None
):
    class CloseFirst(asyncio.Protocol):
        """Answers one message and closes first, so the server side ends in TIME-WAIT."""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)  # type: ignore[attr-defined]
            self.transport.close()

    server = await udptcp.create_server(CloseFirst, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await udptcp.open_connection("127.0.0.1", port)
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.read(), 5) == b"ping"
    writer.close()
    await asyncio.wait_for(writer.wait_closed(), 5)
    server.close()
    await asyncio.wait_for(server.wait_closed(), 5)
    # The old connection holds the UDP port in TIME-WAIT (2 MSL); a new server on the same
    # port must still start at once, as asyncio's TCP servers do with SO_REUSEADDR.
    again = await udptcp.create_server(CloseFirst, "127.0.0.1", port)
    assert again.sockets[0].getsockname()[1] == port
    reader, writer = await udptcp.open_connection("127.0.0.1", port)
    writer.write(b"pong")
    assert await asyncio.wait_for(reader.read(), 5) == b"pong"
    writer.close()
    # A second live listener on the same port and virtual port is still refused.
    with pytest.raises(OSError):
        await udptcp.create_server(CloseFirst, "127.0.0.1", port)
    again.close()
    await asyncio.wait_for(again.wait_closed(), 5)


async def test_asyncio_private_attributes_that_libraries_read() -> None:
    """asyncio.Server's _ssl_context (websockets' test helpers tell TLS servers by it),
    the TLS timeouts and _sockets, with asyncio's meanings."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    plain = await udptcp.create_server(asyncio.Protocol, "127.0.0.1", 0)
    tls = await udptcp.create_server(
        asyncio.Protocol, "127.0.0.1", 0, ssl=context, ssl_handshake_timeout=7.0
    )
    async with plain, tls:
        assert plain._ssl_context is None and plain._ssl_handshake_timeout is None
        assert tls._ssl_context is context and tls._ssl_handshake_timeout == 7.0
        assert tls._ssl_shutdown_timeout is None
        assert [s.fileno() for s in plain._sockets] == [s.fileno() for s in plain.sockets]
    assert plain._sockets is None
