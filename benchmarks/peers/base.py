"""What every peer adapter provides: a client that opens connections and a server that
accepts them, both in asyncio's Protocol/Transport shape."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

P = TypeVar("P", bound=asyncio.BaseProtocol)
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Unsupported(Exception):
    """The peer has no such API (reported as n/a, not as a failure)."""


class ClientPeer(abc.ABC):
    """Opens client connections. ``shared_socket`` asks for all connections of this client to
    go over one UDP socket where the peer can do that (udptcp, KCP)."""

    def __init__(self, options: dict[str, Any], *, shared_socket: bool = False) -> None:
        self.options = options
        self.shared_socket = shared_socket

    @abc.abstractmethod
    async def connect(
        self, factory: Callable[[], P], host: str, port: int
    ) -> tuple[asyncio.Transport, P]:
        """Open one connection; return once it can carry data (handshake done)."""

    async def open_stream(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The streams API version of :meth:`connect`."""
        raise Unsupported("no streams API")

    async def settle(self, transport: asyncio.Transport) -> None:
        """Wait until what was written on ``transport`` has reached the peer, for peers
        whose ``connect`` involves no round trip (KCP); others return at once."""
        return None

    async def aclose(self) -> None:
        """Release anything shared by this client's connections."""
        return None


class ServerPeer(abc.ABC):
    """Accepts connections, running ``factory()``'s protocol for each."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    @abc.abstractmethod
    async def start(self, factory: Callable[[], asyncio.Protocol], host: str) -> int:
        """Start listening on an ephemeral port of ``host``; return the port."""

    async def start_streams(self, handler: StreamHandler, host: str) -> int | None:
        """Start a streams API server; None if the peer has no streams API."""
        return None

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop serving."""
