"""Plain UDP datagrams through asyncio, no protocol on top: the ping-pong floor.

Each datagram is handed to the protocol as ``data_received``; the server keeps one
protocol per client address. Nothing is reliable or ordered, so only the 1-byte
ping-pong means anything: it shows what two asyncio processes on this machine need to
pass a datagram back and forth (wake-ups included), the part of every UDP-based peer's
round trip that no protocol work can remove.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .base import ClientPeer, P, ServerPeer


class _DatagramTransport(asyncio.Transport):
    """One peer address of a datagram endpoint, as a stream transport."""

    def __init__(self, endpoint: asyncio.DatagramTransport, addr: Any) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._addr = addr

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._endpoint.sendto(bytes(data), self._addr)

    def close(self) -> None:
        return None

    def is_closing(self) -> bool:
        return self._endpoint.is_closing()


class _Client(asyncio.DatagramProtocol):
    def __init__(self, protocol: asyncio.Protocol) -> None:
        self.protocol = protocol

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.protocol.data_received(data)


class Client(ClientPeer):
    async def connect(
        self, factory: Callable[[], P], host: str, port: int
    ) -> tuple[asyncio.Transport, P]:
        loop = asyncio.get_running_loop()
        protocol = factory()
        endpoint, _ = await loop.create_datagram_endpoint(
            lambda: _Client(protocol),  # type: ignore[arg-type]
            remote_addr=(host, port),
        )
        transport = _DatagramTransport(endpoint, None)
        protocol.connection_made(transport)
        return transport, protocol


class _Server(asyncio.DatagramProtocol):
    def __init__(self, factory: Callable[[], asyncio.Protocol]) -> None:
        self.factory = factory
        self.endpoint: asyncio.DatagramTransport | None = None
        self.protocols: dict[Any, asyncio.Protocol] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.endpoint = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        protocol = self.protocols.get(addr)
        if protocol is None:
            assert self.endpoint is not None
            protocol = self.protocols[addr] = self.factory()
            protocol.connection_made(_DatagramTransport(self.endpoint, addr))
        protocol.data_received(data)


class Server(ServerPeer):
    _endpoint: asyncio.DatagramTransport | None = None

    async def start(self, factory: Callable[[], asyncio.Protocol], host: str) -> int:
        loop = asyncio.get_running_loop()
        endpoint, _ = await loop.create_datagram_endpoint(
            lambda: _Server(factory), local_addr=(host, 0)
        )
        self._endpoint = endpoint
        return int(endpoint.get_extra_info("sockname")[1])

    async def aclose(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()
