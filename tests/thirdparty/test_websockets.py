"""``websockets``: its real server and client talk over udptcp through the drop-in loop.

``websockets.asyncio.server.serve`` calls ``loop.create_server`` and
``websockets.asyncio.client.connect`` calls ``loop.create_connection``; the drop-in loop
turns both into udptcp, and nothing in the library or in the code below knows.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from thirdparty_helpers import (
    BIG,
    WAIT,
    assert_drop_in_loop,
    assert_lossy_path_repaired,
    assert_udp_server,
    assert_udptcp_transport,
    lossy_relay,
    payload,
    sha256,
    udp_datagrams,
)
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

pytestmark = pytest.mark.timeout(60)

CHUNK = 64 * 1024


async def test_messages_over_udptcp() -> None:
    assert_drop_in_loop()
    server_transports: list[Any] = []

    async def handler(ws: ServerConnection) -> None:
        server_transports.append(ws.transport)
        assert ws.request is not None
        await ws.send(f"path={ws.request.path} x-test={ws.request.headers['X-Test']}")
        async for message in ws:
            if isinstance(message, str):
                await ws.send(message.upper())
            else:
                await ws.send(message[::-1])

    async with serve(handler, "127.0.0.1", 0) as server:
        port = assert_udp_server(server.sockets)
        before = udp_datagrams()
        async with connect(
            f"ws://127.0.0.1:{port}/chat?room=1",
            additional_headers={"X-Test": "udptcp"},
            open_timeout=WAIT,
            close_timeout=WAIT,
        ) as ws:
            assert_udptcp_transport(ws.transport)
            assert await asyncio.wait_for(ws.recv(), WAIT) == "path=/chat?room=1 x-test=udptcp"
            for text in ["hello", "wörld", "x" * 10_000]:
                await ws.send(text)
                assert await asyncio.wait_for(ws.recv(), WAIT) == text.upper()
            blob = payload(300_000, seed=1)
            await ws.send(blob)
            assert await asyncio.wait_for(ws.recv(), WAIT) == blob[::-1]
            latency = await asyncio.wait_for(await ws.ping(b"are you there"), WAIT)
            assert latency >= 0
            (server_transport,) = server_transports
            assert_udptcp_transport(server_transport)
        assert ws.close_code == 1000
        # Every byte went over udptcp, from the client's connection to the server's (stats
        # are computed when asked for, so ask after the close handshake; bytes_sent counts
        # retransmissions too).
        client_stats = ws.transport.get_extra_info("udptcp_stats")
        server_stats = server_transport.get_extra_info("udptcp_stats")
        # (permessage-deflate shrinks the text: the random blob is most of it)
        assert client_stats["bytes_sent"] >= server_stats["bytes_received"] > 300_000
        assert udp_datagrams() - before > 100


async def test_five_mib_download_through_a_lossy_relay() -> None:
    """The server streams 5 MiB as one fragmented message through 5% loss each way."""
    assert_drop_in_loop()
    data = payload(BIG, seed=2)
    server_stats: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        command = await ws.recv()
        assert command == "send it"

        async def fragments() -> Any:
            for offset in range(0, len(data), CHUNK):
                yield data[offset : offset + CHUNK]

        await ws.send(fragments())
        await ws.send(sha256(data))
        await ws.wait_closed()
        server_stats.append(ws.transport.get_extra_info("udptcp_stats"))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = assert_udp_server(server.sockets)
        async with lossy_relay(port, seed=11) as (relay_port, relay):
            async with connect(
                f"ws://127.0.0.1:{relay_port}",
                max_size=None,
                open_timeout=WAIT,
                close_timeout=WAIT,
            ) as ws:
                assert_udptcp_transport(ws.transport)
                await ws.send("send it")
                received = await asyncio.wait_for(ws.recv(), WAIT)
                digest = await asyncio.wait_for(ws.recv(), WAIT)
                assert isinstance(received, bytes)
                assert len(received) == BIG
                assert sha256(received) == digest == sha256(data)
            assert ws.close_code == 1000
            client_stats = ws.transport.get_extra_info("udptcp_stats")
            await asyncio.wait_for(_until(lambda: bool(server_stats)), WAIT)
            assert server_stats[0]["bytes_sent"] >= BIG
            assert_lossy_path_repaired(relay, client_stats, server_stats[0])


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)
