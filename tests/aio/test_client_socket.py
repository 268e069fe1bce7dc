"""Client connections share one UDP socket per loop and address family (per local address
when one is given), and a closed connection's TIME-WAIT holds no descriptor of its own.

ICMP errors reach the right connection on the shared socket through the Linux error queue,
so the descriptor tests need Linux; elsewhere each connection has a connected socket.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import socket
import sys
from pathlib import Path

import pytest
from aio_helpers import Echo, Recorder, serving
from support.child import echo_server_process

import udptcp
from udptcp.aio.endpoint import open_endpoints
from udptcp.core.connection import ICMP_DEAD_ROUNDS

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the shared client socket needs IP_RECVERR (Linux)"
)

FD_DIR = Path("/proc/self/fd")


def _open_fds() -> int:
    return len(os.listdir(FD_DIR))


async def _echo(transport: asyncio.Transport, client: Recorder, data: bytes) -> bytes:
    transport.write(data)
    return await client.received(len(data))


async def test_client_connections_of_one_family_share_one_socket() -> None:
    async with serving(Echo) as (server, port):
        pairs = [await udptcp.create_connection(Recorder, "127.0.0.1", port) for _ in range(20)]
        endpoints = {transport.endpoint for transport, _ in pairs}  # type: ignore[attr-defined]
        assert len(endpoints) == 1
        (endpoint,) = endpoints
        assert endpoint.connected_peer is None and endpoint.recverr
        assert {transport.get_extra_info("vports")[0] for transport, _ in pairs}.__len__() == 20
        for i, (transport, client) in enumerate(pairs):
            assert await _echo(transport, client, b"n%d" % i) == b"n%d" % i
            # As over TCP: the local address is the one datagrams to the peer leave from.
            assert transport.get_extra_info("sockname") == ("127.0.0.1", endpoint.sockname[1])
        for transport, _ in pairs:
            transport.close()


async def test_a_local_address_gets_a_shared_socket_of_its_own() -> None:
    async with serving(Echo) as (server, port):
        plain, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        local = [
            await udptcp.create_connection(Recorder, "127.0.0.1", port, local_addr=("127.0.0.1", 0))
            for _ in range(3)
        ]
        bound = {transport.endpoint for transport, _ in local}  # type: ignore[attr-defined]
        assert len(bound) == 1 and plain.endpoint not in bound  # type: ignore[attr-defined]
        (endpoint,) = bound
        assert endpoint.sockname[0] == "127.0.0.1"
        for transport, client in local:
            assert await _echo(transport, client, b"hi") == b"hi"
            transport.close()
        plain.close()


async def test_a_users_socket_stays_the_users() -> None:
    async with serving(Echo) as (server, port):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mine:
            mine.bind(("127.0.0.1", 0))
            own, client = await udptcp.create_connection(
                Recorder, "127.0.0.1", port, sock=mine, own_socket=False
            )
            other, _ = await udptcp.create_connection(Recorder, "127.0.0.1", port)
            # Plain connects never land on a socket the user passed in.
            assert other.endpoint is not own.endpoint  # type: ignore[attr-defined]
            assert own.endpoint.sock is mine  # type: ignore[attr-defined]
            assert await _echo(own, client, b"mine") == b"mine"
            own.abort()
            other.abort()
            await asyncio.sleep(0)
            assert own.endpoint.is_closed  # type: ignore[attr-defined]
            assert mine.fileno() != -1  # left open for its owner


@pytest.mark.skipif(not FD_DIR.is_dir(), reason="needs /proc/self/fd to count descriptors")
async def test_a_thousand_connects_and_closes_leave_no_descriptor_open() -> None:
    async with serving(Echo) as (server, port):
        # One connection first: the loop's client socket exists from here on (its
        # TIME-WAIT record keeps it open), as the server's socket does.
        first, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        first.write_eof()
        await asyncio.wait_for(client.lost, 10)
        endpoint = first.endpoint  # type: ignore[attr-defined]
        before = _open_fds()

        async def connect_and_close() -> None:
            transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
            assert transport.endpoint is endpoint  # type: ignore[attr-defined]
            transport.write_eof()  # we close first: TIME-WAIT is on our side
            await asyncio.wait_for(client.lost, 10)

        for _ in range(20):
            await asyncio.gather(*(connect_and_close() for _ in range(50)))
        assert _open_fds() == before
        # Every one of them is in TIME-WAIT here, as a record on the one shared socket.
        assert endpoint.limits()["time_wait"] == 1001
        assert len(endpoint.time_waits()) == 1001 and endpoint.connections() == []
        assert [ep for ep in open_endpoints() if ep is not endpoint] == list(server.endpoints)


async def test_a_connection_in_time_wait_is_freed_and_only_its_record_stays() -> None:
    # The record replaces the connection: nothing keeps the Connection (its buffers,
    # logs, congestion state) alive, not even the endpoint's timer heap, where its last
    # deadline was cancelled. (It once stayed until that deadline came round.)
    # Found by a walk over the objects the collector tracks, not by weak references: a
    # compiled (mypyc) Connection cannot be weakly referenced.
    async with serving(Echo) as (_server, port):
        ours: set[int] = set()  # the client connections' local (virtual) ports
        kinds: set[type] = set()
        endpoints = set()

        async def connect_and_close() -> None:
            transport, client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
            endpoints.add(transport.endpoint)  # type: ignore[attr-defined]
            conn = transport.get_extra_info("udptcp_connection")
            ours.add(conn.local_port)
            kinds.add(type(conn))
            del conn
            transport.write_eof()  # we close first: TIME-WAIT is on our side
            await asyncio.wait_for(client.lost, 10)

        await asyncio.gather(*(connect_and_close() for _ in range(20)))
        (endpoint,) = endpoints
        assert len(endpoint.time_waits()) == 20 and endpoint.connections() == []
        (kind,) = kinds
        left = [
            obj
            for obj in gc.get_objects()
            if type(obj) is kind and obj.remote_port == port and obj.local_port in ours
        ]
        assert len(ours) == 20 and left == []


async def test_icmp_from_a_dead_server_resets_only_its_connection_on_the_shared_socket() -> None:
    async with serving(Echo) as (server, port):
        alive, alive_client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        async with echo_server_process() as dead_port:  # killed at the end of the block
            doomed, doomed_client = await udptcp.create_connection(Recorder, "127.0.0.1", dead_port)
            assert await _echo(doomed, doomed_client, b"ping") == b"ping"
        endpoint = alive.endpoint  # type: ignore[attr-defined]
        assert doomed.endpoint is endpoint  # type: ignore[attr-defined]
        doomed.write(b"y" * 20000)
        error = await asyncio.wait_for(doomed_client.lost, 10)
        assert isinstance(error, ConnectionResetError) and error.errno == errno.ECONNRESET
        assert doomed.get_extra_info("udptcp_stats")["timeouts"] == ICMP_DEAD_ROUNDS
        assert endpoint.stats["icmp_unreachable"] >= ICMP_DEAD_ROUNDS
        # The other connection on the same socket heard nothing of it.
        assert not alive_client.lost.done()
        assert await _echo(alive, alive_client, b"still here") == b"still here"
        alive.close()


async def test_a_refused_connect_leaves_the_shared_sockets_other_connections_alone() -> None:
    async with serving(Echo) as (server, port):
        alive, alive_client = await udptcp.create_connection(Recorder, "127.0.0.1", port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
            gone.bind(("127.0.0.1", 0))
            closed_port = gone.getsockname()[1]
        with pytest.raises(ConnectionRefusedError) as refused:
            await udptcp.create_connection(Recorder, "127.0.0.1", closed_port)
        assert "ICMP port unreachable" in str(refused.value)
        assert not alive_client.lost.done()
        assert await _echo(alive, alive_client, b"fine") == b"fine"
        alive.close()
