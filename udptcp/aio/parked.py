"""Kernel stream sockets the drop-in loop connected over udptcp (the happy-eyeballs pattern).

aiohttp's client (through ``aiohappyeyeballs``), python-socks and others do not call
``loop.create_connection(host, port)``: they make a TCP socket themselves, connect it with
``await loop.sock_connect(sock, address)`` and then pass it on as
``loop.create_connection(protocol_factory, sock=sock)``. When the drop-in loop's rules send
``address`` over udptcp, its ``sock_connect`` makes the udptcp connection instead and
*parks* it here, keyed by the socket; the kernel socket is never connected.

* ``sock_connect`` returns once the connection is ESTABLISHED and raises what
  ``create_connection`` raises (``ConnectionRefusedError``, ``TimeoutError``), so a
  happy-eyeballs race sees each attempt succeed or fail as it would over TCP; cancelling it
  resets the half-open connection.
* ``create_connection(sock=sock)`` (and ``asyncio.open_connection(sock=sock)``) *adopts* the
  parked connection: the protocol is made, ``connection_made`` called, data that arrived
  meanwhile delivered, ``ssl=`` runs TLS on it; the kernel socket is closed (the transport
  owns the connection, as asyncio's owns a socket passed to it).
* ``sock_sendall``, ``sock_recv`` and ``sock_recv_into`` on the socket before that work on
  the connection (python-socks speaks SOCKS this way before handing the socket on).
* A parked connection whose socket is never passed on closes (FIN, as closing the kernel
  socket would) when the socket is garbage-collected; a happy-eyeballs race closes and drops
  the sockets of the attempts that lost.

Until it is adopted, reading is paused: the peer's data stays inside the connection, whose
advertised window shrinks, as the kernel's receive buffer would fill.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import socket
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from udptcp.core.config import Config
from udptcp.core.events import DataReceived, EofReceived, Event

from . import api, tls
from .transport import Transport

__all__ = ["ParkedConnection", "Parking", "is_stream_socket"]

_P = TypeVar("_P", bound=asyncio.BaseProtocol)


def is_stream_socket(sock: Any) -> bool:
    """A kernel TCP socket (IPv4 or IPv6): what the drop-in may carry over udptcp."""
    return (
        isinstance(sock, socket.socket)
        and sock.type == socket.SOCK_STREAM
        and sock.family in (socket.AF_INET, socket.AF_INET6)
    )


class ParkedConnection(asyncio.Protocol):
    """The protocol of a udptcp connection made by ``sock_connect``, until it is adopted.

    It holds what the connection reports: data and EOF (only while ``sock_recv`` reads, or
    when the connection ends) and the end itself.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: Transport | None = None
        self.held: collections.deque[Event] = collections.deque()
        self.lost = False
        self.error: BaseException | None = None
        self.write_paused = False
        self.adopted = False
        self._waiter: asyncio.Future[None] | None = None
        self.finalizer: weakref.finalize | None = None

    # ------------------------------------------------------------------ protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, Transport)
        self.transport = transport
        transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.held.append(DataReceived(data))
        self._wake()

    def eof_received(self) -> bool:
        self.held.append(EofReceived())
        self._wake()
        return True  # half-open, as a kernel socket stays until it is closed

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        self.error = exc
        self._wake()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = self.loop.create_future()
        await self._waiter

    # ------------------------------------------------------------------ the socket API

    async def recv(self, size: int) -> bytes:
        """``sock_recv`` on the parked socket."""
        if size < 0:
            raise ValueError("negative buffersize in recv")
        while True:
            if self.held:
                event = self.held[0]
                if type(event) is EofReceived:
                    return b""  # stays: every later read sees the end too
                data: bytes = event.data  # type: ignore[attr-defined]
                if len(data) <= size:
                    self.held.popleft()
                    return data
                self.held[0] = DataReceived(data[size:])
                return data[:size]
            if self.lost:
                if self.error is not None:
                    raise self.error
                return b""
            transport = self.transport
            assert transport is not None
            transport.resume_reading()
            try:
                await self._wait()
            finally:
                transport.pause_reading()

    async def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """``sock_sendall`` on the parked socket."""
        transport = self.transport
        assert transport is not None
        if self.lost or transport.is_closing():
            raise self.error if self.error is not None else BrokenPipeError(errno.EPIPE, "closed")
        transport.write(bytes(data))
        while self.write_paused and not self.lost:
            await self._wait()
        if self.lost and self.error is not None:
            raise self.error

    def close(self) -> None:
        """The socket was dropped without being passed on: close the connection (FIN)."""
        if self.adopted or self.transport is None or self.loop.is_closed():
            return  # (a closed loop has reset its connections already)
        # From a finalizer, which the garbage collector may run anywhere (inside another
        # callback, in another thread): close from the loop, at a clean point.
        self.loop.call_soon_threadsafe(self._close_now)

    def _close_now(self) -> None:
        if not self.adopted and self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------------ adoption

    def adopt(self, protocol: asyncio.BaseProtocol) -> Transport:
        """Hand the connection to ``protocol``, as ``create_connection(sock=)`` would have
        made it: ``connection_made`` now, then what arrived meanwhile."""
        transport = self.transport
        assert transport is not None and not self.adopted
        self.adopted = True
        held = list(self.held)
        self.held.clear()
        transport.set_protocol(protocol)
        transport._connection_made()
        if self.lost:
            # The connection ended while parked: the new protocol hears how, after the data.
            self.loop.call_soon(_replay_ended, transport, protocol, held, self.error)
        else:
            transport._events.extendleft(reversed(held))
            self.loop.call_soon(transport.resume_reading)
        return transport


def _replay_ended(
    transport: Transport,
    protocol: asyncio.BaseProtocol,
    held: list[Event],
    error: BaseException | None,
) -> None:
    transport._closing = False  # _deliver honours EOF's "keep open" answer
    try:
        for event in held:
            transport._deliver(event)
        transport._closing = True
        protocol.connection_lost(error)  # type: ignore[arg-type]
    finally:
        transport._closing = True
        transport._protocol = None


class Parking:
    """One loop's parked connections, by kernel socket."""

    def __init__(self) -> None:
        self._by_socket: weakref.WeakKeyDictionary[socket.socket, ParkedConnection] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, sock: Any) -> ParkedConnection | None:
        """The connection parked for ``sock``, if any."""
        try:
            return self._by_socket.get(sock)
        except TypeError:  # not weakly referenceable: not one of ours
            return None

    async def connect(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        address: Any,
        config: Config | None,
    ) -> None:
        """``sock_connect(sock, address)`` over udptcp: returns once ESTABLISHED."""
        if self.get(sock) is not None:
            raise OSError(errno.EISCONN, "Transport endpoint is already connected")
        local_addr = None
        host, port = sock.getsockname()[:2]
        if port and host not in ("0.0.0.0", "::"):
            local_addr = (host, 0)  # bound to an interface: leave from it
        transport, parked = await api.create_connection(
            lambda: ParkedConnection(loop),
            address[0],
            address[1],
            family=sock.family,
            local_addr=local_addr,
            config=config,
        )
        assert isinstance(parked, ParkedConnection)
        self._by_socket[sock] = parked
        parked.finalizer = weakref.finalize(sock, parked.close)

    def take(self, sock: socket.socket) -> ParkedConnection | None:
        """Remove and return the connection parked for ``sock``."""
        parked = self._by_socket.pop(sock, None)
        if parked is not None and parked.finalizer is not None:
            parked.finalizer.detach()
        return parked

    async def adopt(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], _P],
        *,
        ssl: Any = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> tuple[asyncio.Transport, _P]:
        """``create_connection(protocol_factory, sock=sock, ...)`` for a parked socket."""
        options = tls.tls_options(
            ssl,
            server_side=False,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        parked = self.take(sock)
        assert parked is not None
        sock.close()  # the udptcp connection is the socket now

        async def open_plain(factory: Callable[[], Any]) -> tuple[Transport, Any]:
            try:
                protocol = factory()
            except BaseException:
                assert parked.transport is not None
                parked.transport.abort()  # as asyncio closes the socket it was given
                raise
            return parked.adopt(protocol), protocol

        return await tls.open_client(
            open_plain,
            protocol_factory,
            options,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
