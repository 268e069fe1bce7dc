"""The asyncio protocols tests connect with, over udptcp and kernel TCP alike."""

from __future__ import annotations

import asyncio


class Recorder(asyncio.Protocol):
    """Records every callback, in order, and the data; ``eof_received`` returns
    ``keep_open``; with ``echo`` it writes back whatever arrives."""

    def __init__(self, *, keep_open: bool = False, echo: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.keep_open = keep_open
        self.echo = echo
        # Typed loosely: a udptcp.Transport over udptcp, asyncio's own over kernel TCP or TLS.
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.calls: list[str] = []
        self.lost_calls: list[BaseException | None] = []
        self.made: asyncio.Future[None] = loop.create_future()
        self.eof: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self._wants: list[tuple[int, asyncio.Future[None]]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.calls.append("connection_made")
        self.transport = transport  # type: ignore[assignment]
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        assert isinstance(data, bytes), type(data)
        if not self.calls or self.calls[-1] != "data_received":
            self.calls.append("data_received")
        self.data += data
        if self.echo:
            assert self.transport is not None
            self.transport.write(data)
        for n, fut in self._wants:
            if len(self.data) >= n and not fut.done():
                fut.set_result(None)

    def eof_received(self) -> bool:
        self.calls.append("eof_received")
        self.eof.set_result(None)
        return self.keep_open

    def pause_writing(self) -> None:
        self.calls.append("pause_writing")

    def resume_writing(self) -> None:
        self.calls.append("resume_writing")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.calls.append("connection_lost")
        self.lost_calls.append(exc)
        if not self.lost.done():
            self.lost.set_result(exc)

    async def received(self, n: int, timeout: float = 10.0) -> bytes:
        """Wait until at least ``n`` bytes arrived; return them all."""
        if len(self.data) < n:
            fut = asyncio.get_running_loop().create_future()
            self._wants.append((n, fut))
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
