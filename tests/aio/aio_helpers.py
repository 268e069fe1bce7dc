"""Protocols and helpers shared by the asyncio end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import udptcp

#: Short timers so failure paths finish quickly.
FAST = udptcp.Config(rto_initial=0.05, rto_min=0.05, syn_retries=2, msl=0.05)


class Recorder(asyncio.Protocol):
    """A protocol that records everything that happens to it."""

    def __init__(self, *, keep_open: bool = False, echo: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.keep_open = keep_open
        self.echo = echo
        self.transport: udptcp.Transport | None = None
        self.data = bytearray()
        self.calls: list[str] = []
        self.lost_calls: list[BaseException | None] = []
        self.made: asyncio.Future[None] = loop.create_future()
        self.eof: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self._want: tuple[int, asyncio.Future[None]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.calls.append("connection_made")
        self.transport = transport  # type: ignore[assignment]
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self.calls or self.calls[-1] != "data_received":
            self.calls.append("data_received")
        self.data += data
        if self.echo:
            assert self.transport is not None
            self.transport.write(data)
        if self._want is not None and len(self.data) >= self._want[0]:
            if not self._want[1].done():
                self._want[1].set_result(None)

    def eof_received(self) -> bool:
        self.calls.append("eof_received")
        self.eof.set_result(None)
        return self.keep_open

    def pause_writing(self) -> None:
        self.calls.append("pause_writing")

    def resume_writing(self) -> None:
        self.calls.append("resume_writing")

    def connection_lost(self, exc: Exception | None) -> None:
        self.calls.append("connection_lost")
        self.lost_calls.append(exc)
        if not self.lost.done():
            self.lost.set_result(exc)

    async def received(self, n: int, timeout: float = 10.0) -> bytes:
        """Wait until at least ``n`` bytes arrived; return them all."""
        if len(self.data) < n:
            fut = asyncio.get_running_loop().create_future()
            self._want = (n, fut)
            await asyncio.wait_for(fut, timeout)
        return bytes(self.data)


class Echo(asyncio.Protocol):
    """Echo server protocol: sends back what it gets, closes on EOF."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> None:
        self.transport.close()


async def serve(
    factory: Callable[[], asyncio.BaseProtocol], host: str = "127.0.0.1", **kw: Any
) -> tuple[udptcp.Server, int]:
    """Start a udptcp server on an ephemeral UDP port; return it and the port."""
    server = await udptcp.create_server(factory, host, 0, **kw)
    return server, server.sockets[0].getsockname()[1]


def recorders() -> tuple[list[Recorder], Callable[[], Recorder]]:
    """A factory that makes Recorders and the list it puts them in."""
    made: list[Recorder] = []

    def factory() -> Recorder:
        made.append(Recorder())
        return made[-1]

    return made, factory


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nothing is bound to (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@contextlib.asynccontextmanager
async def serving(
    factory: Callable[[], asyncio.BaseProtocol], host: str = "127.0.0.1", **kw: Any
) -> AsyncIterator[tuple[udptcp.Server, int]]:
    """A server for the body of a test, closed (and waited for) afterwards.

    If the body fails, the server's connections are reset first, so a failing test cannot
    hang in ``wait_closed()``.
    """
    server, port = await serve(factory, host, **kw)
    try:
        yield server, port
    except BaseException:
        server.close()
        server.abort_clients()
        raise
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


async def accepted(made: list[Recorder], n: int = 1, timeout: float = 5.0) -> Recorder:
    """Wait until the server side made ``n`` connections; return the first one."""

    async def poll() -> None:
        while len(made) < n or not all(p.made.done() for p in made[:n]):
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)
    return made[0]


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` is true."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)
