"""KCP (the ``kcp`` package 0.1.6: Cython bindings around skywind3000's ``ikcp.c``) driven
from asyncio over UDP sockets by a thin adapter of our own.

What the package gives (read from ``kcp/extension.pyx``): ``KCP(conv_id, max_transmission,
no_delay, update_interval, resend_count, no_congestion_control, send_window_size,
receive_window_size)``; ``include_outbound_handler(fn(kcp, datagram))`` is called from C for
every datagram to send; ``receive(bytes)`` is ``ikcp_input``; ``enqueue(bytes)`` is
``ikcp_send`` (``bytes`` only, never empty); ``get_all_received()`` yields whole messages;
``update()`` / ``flush()`` / ``update_check()`` (milliseconds until the next ``update``, from
the object's own clock); ``get_outbound_packets()`` is ``ikcp_waitsnd``. Its
``KCPServerAsync``/``KCPClientSync`` classes are not used: they are not asyncio
Protocol/Transport shaped.

What it does not give, and this adapter adds:

* KCP is message-oriented (the ``stream`` flag of ``ikcpcb`` is not exposed) and has no
  connection set-up, end of stream or close. Every message carries a one-byte tag: ``D``
  data, ``F`` end of stream. ``connect`` creates the session locally (no round trip); the
  server creates one on the first datagram of an unknown (address, conv) pair.
  ``close()`` sends ``F`` and drops the session once everything is acknowledged (or after
  ``CLOSE_LINGER`` s); a dropped session's key is remembered for ``TOMBSTONE`` s so late
  retransmissions do not recreate it.
* One ``enqueue`` must fit in fewer than 128 fragments (``IKCP_WND_RCV``, fixed whatever the
  window); writes are cut into messages of at most ``MESSAGE_MAX`` bytes.
* No flow control towards the application: ``pause_writing`` when ``ikcp_waitsnd`` (queued
  plus unacknowledged segments) passes ``HIGH_WATER`` segments, ``resume_writing`` below
  ``LOW_WATER``.
* Output batching: after ``enqueue`` or ``receive`` a ``flush`` is scheduled with
  ``call_soon``, so every datagram read in one loop pass is acknowledged in one flush and
  a reply goes out without waiting for the 10 ms tick.
* Timers: ``update`` runs at the time ``update_check`` recommends, but only while the
  session has segments queued or in flight. ``ikcp_check`` always recommends at most one
  interval ahead, so a session updated unconditionally wakes 100 times a second even when
  idle; nothing it would do then is needed (acknowledgements go out in the flush after
  input, window probes only matter with data waiting).

Settings ("fast mode"): ``nodelay=1, interval=10`` (``ikcp_nodelay`` clamps it to >= 10 ms),
``resend=2, nc=1`` (no congestion window), windows of 1024 segments each way, 1472-byte
datagrams (the UDP payload budget udptcp uses), 4 MiB socket buffers (a 1024-segment
window is more than udptcp's 2 MiB buffers hold).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Callable
from typing import Any

from kcp import KCP
from kcp.exceptions import KCPException

from .base import ClientPeer, P, ServerPeer

MTU = 1472
INTERVAL_MS = 10
RESEND = 2
WINDOW = 1024
HIGH_WATER = 2 * WINDOW
LOW_WATER = WINDOW
MESSAGE_MAX = 64 * 1024
SOCKET_BUFFER = 4 * 1024 * 1024
CLOSE_LINGER = 2.0
TOMBSTONE = 30.0
KCP_OVERHEAD = 24
DATA = b"D"
FIN = b"F"

Address = tuple[Any, ...]
Key = tuple[Address, int]


def _udp_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
    sock.bind((host, 0))
    return sock


class Endpoint(asyncio.DatagramProtocol):
    """One UDP socket carrying any number of KCP sessions, keyed by (address, conv)."""

    def __init__(
        self,
        app_factory: Callable[[], asyncio.Protocol] | None,
        *,
        connected: bool = False,
        close_when_empty: bool = False,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.app_factory = app_factory
        self.connected = connected
        self.close_when_empty = close_when_empty
        self.sessions: dict[Key, Session] = {}
        self.tombstones: dict[Key, float] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if len(data) < KCP_OVERHEAD:
            return
        key = (addr, int.from_bytes(data[:4], "little"))
        session = self.sessions.get(key)
        if session is None:
            if self.app_factory is None or key in self.tombstones:
                return
            session = Session(self, key)
            session.attach(self.app_factory())
        session.input(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors: KCP retransmits or gives up by itself

    def forget(self, session: Session) -> None:
        self.sessions.pop(session.key, None)
        now = time.monotonic()
        self.tombstones[session.key] = now
        expired = [
            key
            for key, when in itertools.islice(self.tombstones.items(), 16)  # oldest first
            if now - when >= TOMBSTONE
        ]
        for key in expired:
            del self.tombstones[key]
        if self.close_when_empty and not self.sessions and self.transport is not None:
            self.transport.close()


class Session(asyncio.Transport):
    """One KCP conversation as an asyncio Transport."""

    def __init__(self, endpoint: Endpoint, key: Key) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.key = key
        self._loop = endpoint.loop
        self._dest: Address | None = None if endpoint.connected else key[0]
        self._kcp = KCP(
            key[1],
            max_transmission=MTU,
            no_delay=True,
            update_interval=INTERVAL_MS,
            resend_count=RESEND,
            no_congestion_control=True,
            send_window_size=WINDOW,
            receive_window_size=WINDOW,
        )
        self._kcp.include_outbound_handler(self._output)
        self._kcp.update()  # ikcp_flush does nothing before the first ikcp_update
        self._app: asyncio.Protocol | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._paused = False
        self._eof_sent = False
        self._closing = False
        self._finished = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        endpoint.sessions[key] = self

    def attach(self, app: asyncio.Protocol) -> None:
        self._app = app
        app.connection_made(self)

    # -- asyncio.Transport ------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.key[1] if name == "conv" else default

    def is_closing(self) -> bool:
        return self._closing

    def can_write_eof(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> None:  # type: ignore[override]
        if self._eof_sent or self._finished:
            return
        view = memoryview(data)
        for offset in range(0, len(view), MESSAGE_MAX):
            self._kcp.enqueue(b"".join((DATA, view[offset : offset + MESSAGE_MAX])))
        self._flush_soon()
        if not self._paused and self._kcp.get_outbound_packets() > HIGH_WATER:
            self._paused = True
            assert self._app is not None
            self._app.pause_writing()

    def write_eof(self) -> None:
        if self._eof_sent or self._finished:
            return
        self._eof_sent = True
        self._kcp.enqueue(FIN)
        self._flush_soon()

    def close(self) -> None:
        if self._closing or self._finished:
            return
        self._closing = True
        self.write_eof()
        self._linger = self._loop.call_later(CLOSE_LINGER, self._finish, None)

    def abort(self) -> None:
        self._closing = True
        self._finish(None)

    async def drained(self) -> None:
        """Wait until every segment written so far is acknowledged."""
        if self._finished or not self._kcp.get_outbound_packets():
            return
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    # -- KCP plumbing -----------------------------------------------------------------------

    def _output(self, _kcp: KCP, datagram: bytes) -> None:
        transport = self.endpoint.transport
        if transport is not None and not transport.is_closing():
            transport.sendto(datagram, self._dest)

    def input(self, datagram: bytes) -> None:
        if self._finished:
            return
        try:
            self._kcp.receive(datagram)
        except KCPException:
            return
        app = self._app
        assert app is not None
        for message in self._kcp.get_all_received():
            if message[:1] == DATA:
                app.data_received(bytes(memoryview(message)[1:]))
            elif message[:1] == FIN and not app.eof_received():
                self.close()
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flush_handle is None and not self._finished:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self._kcp.update()
        self._kcp.flush()
        self._after_output()

    def _on_timer(self) -> None:
        self._timer = None
        self._kcp.update()
        self._after_output()

    def _after_output(self) -> None:
        waiting = self._kcp.get_outbound_packets()
        if self._paused and waiting <= LOW_WATER:
            self._paused = False
            assert self._app is not None
            self._app.resume_writing()
        if waiting:
            if self._timer is None:
                delay = max(self._kcp.update_check(), 1) / 1000
                self._timer = self._loop.call_later(delay, self._on_timer)
            return
        self._wake_drain_waiters()
        if self._closing:
            self._finish(None)

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _finish(self, exc: Exception | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._closing = True
        for handle in (self._flush_handle, self._timer, self._linger):
            if handle is not None:
                handle.cancel()
        self.endpoint.forget(self)
        self._wake_drain_waiters()
        if self._app is not None:
            self._loop.call_soon(self._app.connection_lost, exc)


class Client(ClientPeer):
    """Each connection gets its own UDP socket, or with ``shared_socket`` all share one and
    are told apart by their conv ids."""

    def __init__(self, options: dict[str, Any], *, shared_socket: bool = False) -> None:
        super().__init__(options, shared_socket=shared_socket)
        self._convs = itertools.count(1)
        self._shared: Endpoint | None = None

    async def _endpoint(self, host: str, port: int, shared: bool) -> Endpoint:
        sock = _udp_socket(host)
        sock.connect((host, port))
        loop = asyncio.get_running_loop()
        _, endpoint = await loop.create_datagram_endpoint(
            lambda: Endpoint(None, connected=True, close_when_empty=not shared), sock=sock
        )
        return endpoint

    async def connect(
        self, factory: Callable[[], P], host: str, port: int
    ) -> tuple[asyncio.Transport, P]:
        if self.shared_socket:
            if self._shared is None:
                self._shared = await self._endpoint(host, port, shared=True)
            endpoint = self._shared
        else:
            endpoint = await self._endpoint(host, port, shared=False)
        session = Session(endpoint, ((host, port), next(self._convs)))
        app = factory()
        session.attach(app)  # type: ignore[arg-type]
        return session, app

    async def settle(self, transport: asyncio.Transport) -> None:
        if isinstance(transport, Session):
            await transport.drained()

    async def aclose(self) -> None:
        if self._shared is not None and self._shared.transport is not None:
            self._shared.transport.close()


class Server(ServerPeer):
    _transport: asyncio.BaseTransport | None = None

    async def start(self, factory: Callable[[], asyncio.Protocol], host: str) -> int:
        sock = _udp_socket(host)
        port = int(sock.getsockname()[1])
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: Endpoint(factory), sock=sock
        )
        return port

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()
