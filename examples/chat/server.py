"""The chat server: one :class:`Session` per connection around one :class:`~.hub.Hub`.

Robustness, connection by connection:

* Reading: the bytes go through a :class:`~.protocol.LineBuffer`, so an over-long line costs
  at most ``MAX_LINE`` bytes of memory and earns an ``ERR``; a bad line never ends the
  session. A peer that disconnects in the middle of a line (EOF or reset) is removed from
  its rooms with a ``LEAVE ... disconnected`` notice; the partial line is dropped.
* Writing: every line for a client goes into that client's own queue, and a writer task per
  client writes it out and awaits ``drain()``. A client that reads slowly therefore blocks
  only its own writer task. The queue is bounded (``queue_limit`` bytes): when it overflows,
  the client is reset and the others see ``LEAVE ... dropped: too slow``.
* Idle clients (no line for ``idle_timeout`` seconds; the terminal client pings) get ``BYE``
  and are disconnected: without TCP keepalive this is how a dead peer is noticed. Over
  udptcp it matters more than over TCP: when a client's RST is lost, nothing is left at its
  address to answer the server's retransmissions, so the connection would otherwise stay
  ESTABLISHED until the user timeout (two minutes by default).

Who closes first: whoever sends the first FIN ends in TIME-WAIT, and a udptcp endpoint
keeps its UDP socket -- the server's port -- open until its TIME-WAIT connections expire
(2 x MSL, a minute by default; there is no SO_REUSEADDR to override that). So the server
lets clients close first: on ``/quit`` and on shutdown it sends ``BYE`` and waits up to
``close_grace`` seconds for the client's FIN before closing itself (``/quit``) or resetting
(shutdown). A well-behaved client therefore never leaves the server holding its port, and
a server can be stopped and started again on the same port at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

import udptcp

from .hub import Hub, Member
from .net import Transport, server_address, start_server
from .protocol import MAX_LINE, TOO_LONG, LineBuffer, encode_line, format_line

__all__ = ["ChatServer", "Session"]

logger = logging.getLogger("examples.chat")

READ_SIZE = 4096


class Session(Member):
    """One connected client: its hub identity, its write queue and its writer task."""

    def __init__(self, writer: asyncio.StreamWriter, queue_limit: int) -> None:
        peer = writer.get_extra_info("peername")
        super().__init__(f"{peer[0]}:{peer[1]}" if peer else "?")
        self.writer = writer
        self.queue_limit = queue_limit
        self.overflowed = False
        self.closing = False
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._write_loop())

    def deliver(self, line: str) -> None:
        """Queue one line; reset the connection if the client is too far behind."""
        if self.closing:
            return
        data = encode_line(line)
        if self._queued + len(data) > self.queue_limit:
            logger.warning("%r is too slow (%d bytes queued): dropping it", self, self._queued)
            self.overflowed = True
            self.abort()
            return
        self._queue.append(data)
        self._queued += len(data)
        self._wakeup.set()

    def abort(self) -> None:
        """Reset the connection now; the read loop then sees EOF and cleans up."""
        self.closing = True
        self._queue.clear()
        self._queued = 0
        self._wakeup.set()
        self.writer.transport.abort()

    async def _write_loop(self) -> None:
        writer = self.writer
        try:
            while True:
                while not self._queue:
                    if self.closing:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                data = b"".join(self._queue)
                self._queue.clear()
                self._queued = 0
                writer.write(data)
                await writer.drain()  # back-pressure: only this task waits
        except (ConnectionError, OSError) as exc:
            logger.info("%r: write failed: %r", self, exc)

    async def flush(self, timeout: float) -> bool:
        """Stop taking lines and wait until the queued ones are written (True) or give up."""
        self.closing = True
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            return False
        return not self.overflowed

    def cancel(self) -> None:
        """Stop the writer task (the connection is being torn down)."""
        self._task.cancel()


class ChatServer:
    """The chat service on one address, over udptcp or plain TCP.

    ``queue_limit`` bounds each client's unsent lines (bytes); ``idle_timeout`` drops clients
    silent for that long (``None``: never); ``close_grace`` is how long a closing client is
    given to send its FIN (see the module docstring).
    """

    def __init__(
        self,
        hub: Hub | None = None,
        *,
        transport: Transport = "udptcp",
        config: udptcp.Config | None = None,
        queue_limit: int = 256 * 1024,
        idle_timeout: float | None = 300.0,
        close_grace: float = 2.0,
    ) -> None:
        self.hub = hub if hub is not None else Hub()
        self.transport: Transport = transport
        self.config = config
        self.queue_limit = queue_limit
        self.idle_timeout = idle_timeout
        self.close_grace = close_grace
        self._server: asyncio.AbstractServer | None = None
        self._handlers: dict[Session, asyncio.Task[None]] = {}
        self._shutting_down = False

    @property
    def address(self) -> tuple[str, int]:
        """The address the server listens on."""
        if self._server is None:
            raise RuntimeError("server not started")
        return server_address(self._server)

    @property
    def sessions(self) -> list[Session]:
        """Connections being served."""
        return list(self._handlers)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``host``/``port`` (0: any free port); return the address."""
        if self._server is not None:
            raise RuntimeError("server already started")
        self._shutting_down = False
        self._server = await start_server(
            self.transport, self._serve, host, port, config=self.config
        )
        logger.info("chat server listening on %s:%d (%s)", *self.address, self.transport)
        return self.address

    async def close(self) -> None:
        """Shut down: stop accepting, say ``BYE`` to everyone, let them close, reset the rest."""
        server, self._server = self._server, None
        if server is None:
            return
        self._shutting_down = True
        endpoints = getattr(server, "endpoints", ())  # udptcp's (empty once closed)
        server.close()
        for session in list(self._handlers):
            self.hub.disconnect(session, "server shutdown", notify=False)
            session.deliver(format_line("BYE", text="server shutting down"))
        handlers = list(self._handlers.values())
        if handlers:
            _, late = await asyncio.wait(handlers, timeout=self.close_grace)
            for session, task in list(self._handlers.items()):
                if task in late:
                    session.abort()
            if late:
                await asyncio.wait(late, timeout=1.0)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        # Closed connections finish in the background, as closed TCP sockets do in the
        # kernel; on udptcp, let them deliver their last segments before returning (the
        # caller may shut down the path next: a relay, the event loop).
        for endpoint in endpoints:
            await endpoint.linger()
        logger.info("chat server stopped")

    # ------------------------------------------------------------------ one connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(writer, self.queue_limit)
        task = asyncio.current_task()
        assert task is not None
        self._handlers[session] = task
        logger.info("%r connected", session)
        try:
            reason = await self._read_loop(session, reader)
            if session.overflowed:
                reason = "dropped: too slow"
            self.hub.disconnect(session, reason)
            await self._finish(session, reader, reason)
        except Exception:  # a bug must cost one connection, not the server
            logger.exception("%r: unexpected error", session)
            self.hub.disconnect(session, "server error")
            session.abort()
        finally:
            session.cancel()
            del self._handlers[session]

    async def _read_loop(self, session: Session, reader: asyncio.StreamReader) -> str:
        """Feed lines to the hub until the client goes; return why it went."""
        lines = LineBuffer(MAX_LINE)
        if not self._shutting_down:
            self.hub.connect(session)
        while not session.closing and not session.quitting:
            try:
                data = await asyncio.wait_for(reader.read(READ_SIZE), self.idle_timeout)
            except asyncio.TimeoutError:
                session.deliver(format_line("BYE", text=f"idle for {self.idle_timeout:g} s"))
                return "idle"
            except (ConnectionError, OSError) as exc:
                logger.info("%r: read failed: %r", session, exc)
                return "disconnected"
            if not data:
                if lines.pending:
                    logger.info("%r: EOF inside a line; the partial line is dropped", session)
                return "disconnected"
            for line in lines.feed(data):
                if line is TOO_LONG:
                    self.hub.error(session, "too-long")
                else:
                    assert isinstance(line, bytes)
                    self.hub.handle(session, line)
                if session.quitting or session.closing:
                    break
        return "quit" if session.quitting else "disconnected"

    async def _finish(self, session: Session, reader: asyncio.StreamReader, reason: str) -> None:
        """Write what is queued, give the client ``close_grace`` to close first, then close."""
        writer = session.writer
        if session.overflowed or writer.transport.is_closing():
            session.abort()
            return
        if not await session.flush(self.close_grace):
            session.abort()
            return
        if not reader.at_eof() and reason != "idle":
            # BYE is out (quit, shutdown): wait for the client's FIN, reading nothing more.
            # (An idle client is probably gone: it gets no such grace.)
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError, OSError):
                await asyncio.wait_for(_until_eof(reader), self.close_grace)
        if self._shutting_down and not reader.at_eof():
            session.abort()  # a FIN from us now would hold the port in TIME-WAIT
            return
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), self.close_grace)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            session.abort()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(READ_SIZE):
        pass
