"""``aiohttp``: its real web server and HTTP client talk over udptcp through the drop-in loop.

The server (``web.AppRunner`` + ``web.TCPSite``) calls ``loop.create_server`` and runs over
udptcp unmodified. So does the client: ``aiohttp.ClientSession`` (aiohttp >= 3.10) connects
through ``aiohappyeyeballs.start_connection``, which makes a kernel TCP socket, connects it
with ``loop.sock_connect`` and hands it to ``loop.create_connection(sock=...)``; the drop-in
loop makes that a udptcp connection (``udptcp.aio.parked``), the kernel socket never
connected. ``web.FileResponse`` uses ``loop.sendfile``, whose fallback (read, write, wait
for ``resume_writing``) the asyncio base runs on a udptcp transport; uvloop has no
``sendfile`` (``NotImplementedError``) and aiohttp writes the file itself there.

The other tests reach udptcp the second way an aiohttp client can: its ``socket_factory``
hook hands aiohappyeyeballs a UDP socket, ``sock_connect`` on it merely sets the UDP peer,
and ``create_connection(sock=<UDP socket>)`` is udptcp by the drop-in's own rule.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
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
    until_closed,
)

import udptcp
from udptcp.aio.endpoint import open_endpoints

pytestmark = pytest.mark.timeout(60)

BLOB = payload(BIG, seed=5)
FILE = web.AppKey("file", Path)


def udp_socket(addr_info: Any) -> socket.socket:
    """aiohttp's ``socket_factory``: a UDP socket instead of the TCP one it asks for."""
    family = addr_info[0]
    return socket.socket(family, socket.SOCK_DGRAM)


def udptcp_socknames() -> set[Any]:
    """The addresses of the running loop's udptcp endpoints (all UDP sockets); a socket on
    the wildcard address (the loop's shared client socket) counts with its loopback one,
    the address its datagrams to a local server come from."""
    names = set()
    for endpoint in open_endpoints():
        name = endpoint.sock.getsockname()
        names.add(name)
        if name[0] == "0.0.0.0":
            names.add(("127.0.0.1", *name[1:]))
        elif name[0] == "::":
            names.add(("::1", *name[1:]))
    return names


def udptcp_session(**kwargs: Any) -> aiohttp.ClientSession:
    """A ClientSession handing aiohttp UDP sockets (its ``socket_factory`` hook)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(socket_factory=udp_socket),
        timeout=aiohttp.ClientTimeout(total=WAIT),
        **kwargs,
    )


# ---------------------------------------------------------------------- the application

server_transports: list[Any] = []


@web.middleware
async def record_transport(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.transport not in server_transports:
        server_transports.append(request.transport)
    response: web.StreamResponse = await handler(request)
    return response


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=f"hello {request.match_info['name']} ({request.query['lang']})")


async def echo_json(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"got": body, "agent": request.headers["User-Agent"][:7]})


async def chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for i in range(5):
        await response.write(f"chunk {i}\n".encode())
    await response.write_eof()
    return response


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        await ws.send_str(message.data[::-1])
    return ws


async def upload(request: web.Request) -> web.Response:
    hasher, size = hashlib.sha256(), 0
    async for chunk in request.content.iter_chunked(65536):
        hasher.update(chunk)
        size += len(chunk)
    return web.json_response({"size": size, "sha256": hasher.hexdigest()})


async def blob(request: web.Request) -> web.Response:
    return web.Response(body=BLOB, headers={"X-SHA256": sha256(BLOB)})


async def file(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[FILE])


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[int, web.Application]]:
    """The application on 127.0.0.1, an ephemeral port; yields the port and the app."""
    server_transports.clear()
    app = web.Application(middlewares=[record_transport])
    app[FILE] = tmp_path / "file.bin"
    app.router.add_get("/hello/{name}", hello)
    app.router.add_post("/json", echo_json)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/ws", websocket)
    app.router.add_post("/upload", upload)
    app.router.add_get("/blob", blob)
    app.router.add_get("/file", file)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    try:
        tcp_site = web.TCPSite(runner, "127.0.0.1", 0)
        await tcp_site.start()
        server = tcp_site._server  # (introspection only: the asyncio server it made)
        assert server is not None
        yield assert_udp_server(server.sockets), app
    finally:
        await asyncio.wait_for(runner.cleanup(), WAIT)


# ---------------------------------------------------------------------- tests


async def test_requests_over_udptcp(site: tuple[int, web.Application]) -> None:
    assert_drop_in_loop()
    port, _ = site
    base = f"http://127.0.0.1:{port}"
    before = udp_datagrams()
    async with udptcp_session() as session:
        async with session.get(f"{base}/hello/world", params={"lang": "en"}) as response:
            assert response.status == 200
            assert await response.text() == "hello world (en)"
        (server_transport,) = server_transports
        assert_udptcp_transport(server_transport)
        # Its peer is one of this loop's udptcp endpoints: the client's.
        assert server_transport.get_extra_info("peername") in udptcp_socknames()

        # Keep-alive: the next requests reuse the same udptcp connection.
        async with session.post(f"{base}/json", json={"n": [1, 2, 3], "s": "ü"}) as response:
            assert await response.json() == {"got": {"n": [1, 2, 3], "s": "ü"}, "agent": "Python/"}
        async with session.get(f"{base}/chunked") as response:
            assert response.headers["Transfer-Encoding"] == "chunked"
            assert [line async for line in response.content] == [
                f"chunk {i}\n".encode() for i in range(5)
            ]
        async with session.get(f"{base}/nowhere") as response:
            assert response.status == 404
        assert server_transports == [server_transport]

        async with session.ws_connect(f"{base}/ws") as ws:
            for text in ["ping", "over udp"]:
                await ws.send_str(text)
                message = await asyncio.wait_for(ws.receive(), WAIT)
                assert message.data == text[::-1]
        assert all(isinstance(t, udptcp.Transport) for t in server_transports)
    assert server_transport.get_extra_info("udptcp_stats")["bytes_received"] > 400
    assert udp_datagrams() - before > 10


async def test_five_mib_up_and_down_through_a_lossy_relay(
    site: tuple[int, web.Application],
) -> None:
    """A 5 MiB POST and a 5 MiB response through 5% loss each way."""
    assert_drop_in_loop()
    port, _ = site
    upload_body = payload(BIG, seed=6)
    async with lossy_relay(port, seed=13) as (relay_port, relay):
        base = f"http://127.0.0.1:{relay_port}"
        async with udptcp_session() as session:
            async with session.post(f"{base}/upload", data=io.BytesIO(upload_body)) as response:
                assert await response.json() == {"size": BIG, "sha256": sha256(upload_body)}
            async with session.get(f"{base}/blob") as response:
                hasher, size = hashlib.sha256(), 0
                async for chunk in response.content.iter_chunked(65536):
                    hasher.update(chunk)
                    size += len(chunk)
                assert size == BIG
                assert hasher.hexdigest() == response.headers["X-SHA256"] == sha256(BLOB)
            # One keep-alive udptcp connection carried both, from a udptcp client endpoint.
            (server_transport,) = server_transports
            server_stats = assert_udptcp_transport(server_transport)
            (client,) = relay.clients
            assert client in udptcp_socknames()
        await until_closed(
            server_transport.get_extra_info("udptcp_connection")
        )  # before the relay goes (see until_closed)
        assert server_stats["bytes_received"] > BIG and server_stats["bytes_sent"] > BIG
        assert_lossy_path_repaired(relay, server_stats)


async def test_default_client_session_over_the_drop_in_loop(
    site: tuple[int, web.Application],
) -> None:
    """What an unmodified aiohttp program does: a plain ClientSession, by name and by
    address; each connection goes over udptcp, no kernel TCP socket is left open."""
    assert_drop_in_loop()
    port, _ = site
    before = udp_datagrams()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as session:
        for host in ("127.0.0.1", "localhost"):  # localhost: ::1 refused, then 127.0.0.1
            async with session.get(f"http://{host}:{port}/hello/plain?lang=de") as response:
                assert await response.text() == "hello plain (de)"
                # The server's peer is one of this loop's udptcp endpoints: the client's.
                peer = server_transports[-1].get_extra_info("peername")
                assert peer in udptcp_socknames()
        assert len(server_transports) == 2
        assert all(isinstance(t, udptcp.Transport) for t in server_transports)
    assert udp_datagrams() - before > 6


async def test_file_response(site: tuple[int, web.Application]) -> None:
    """web.FileResponse: loop.sendfile's fallback over udptcp (the asyncio base), aiohttp's
    own chunked writes on uvloop."""
    port, app = site
    content = payload(300_000, seed=7)
    app[FILE].write_bytes(content)
    async with udptcp_session() as session:
        async with session.get(f"http://127.0.0.1:{port}/file") as response:
            assert response.status == 200
            assert await response.read() == content
    (server_transport,) = server_transports
    assert server_transport.get_extra_info("udptcp_stats")["bytes_sent"] > len(content)
