"""Kernel TCP through asyncio's own ``loop.create_connection`` / ``loop.create_server``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .base import ClientPeer, P, ServerPeer, StreamHandler

BACKLOG = 4096


class Client(ClientPeer):
    async def connect(
        self, factory: Callable[[], P], host: str, port: int
    ) -> tuple[asyncio.Transport, P]:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(factory, host, port)
        return transport, protocol

    async def open_stream(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)


class Server(ServerPeer):
    _servers: list[asyncio.Server]

    async def start(self, factory: Callable[[], asyncio.Protocol], host: str) -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, host, 0, backlog=BACKLOG)
        self._servers = [*getattr(self, "_servers", []), server]
        return int(server.sockets[0].getsockname()[1])

    async def start_streams(self, handler: StreamHandler, host: str) -> int | None:
        server = await asyncio.start_server(handler, host, 0, backlog=BACKLOG)
        self._servers = [*getattr(self, "_servers", []), server]
        return int(server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        for server in getattr(self, "_servers", []):
            server.close()
