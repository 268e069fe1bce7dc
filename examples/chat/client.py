"""The chat client: a reconnecting connection (:class:`ChatClient`) and two faces for it.

:class:`ChatClient` connects, chooses the nickname, follows the server's ``NICK``/``JOIN``/
``LEAVE``/``CURRENT`` lines to know its rooms, and when the connection goes it reconnects
with exponential backoff and re-sends ``/nick`` and ``/join`` so the user lands where they
were. It pings the server every ``ping_interval`` and gives up on a connection whose ping
goes unanswered (udptcp, like TCP without keepalive, cannot tell an idle peer from a dead
one). It reports what it receives
through ``on_line`` and what happens to the connection through ``on_status``; it has no
user interface, so tests drive it directly.

:func:`run_terminal` puts it behind a prompt_toolkit prompt: incoming lines are printed
above the input line (``patch_stdout``), which prompt_toolkit redraws with whatever was
half-typed. :func:`run_plain` reads standard input line by line, for pipes and scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import udptcp

from .net import Transport, open_connection
from .protocol import (
    DEFAULT_ROOM,
    MAX_LINE,
    NO_ROOM,
    TOO_LONG,
    LineBuffer,
    ServerLine,
    clean_text,
    encode_line,
    normalize_room,
    parse_server_line,
)

__all__ = ["Backoff", "ChatClient", "render", "run_plain", "run_terminal"]

READ_SIZE = 4096
#: How long the connect over the other transport may take (see ChatClient._other_transport).
PROBE_TIMEOUT = 2.0
#: After standard input ends, how long run_plain waits for a server to send its lines to.
EOF_TIMEOUT = 10.0


@dataclass(frozen=True)
class Backoff:
    """Reconnection delays: ``initial * factor**n`` capped at ``maximum``, +/- ``jitter``."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.1

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before reconnection attempt ``attempt`` (0 for the first)."""
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        spread = self.jitter * (2.0 * (rng or random).random() - 1.0)
        return max(0.0, base * (1.0 + spread))


class ChatClient:
    """A chat connection that survives its server going away.

    ``rooms`` are joined after the first ``/nick`` (the server also puts everyone in its
    default room). Call :meth:`start`, then :meth:`send` lines; :meth:`quit` says goodbye.
    """

    def __init__(
        self,
        host: str,
        port: int,
        nick: str,
        *,
        rooms: Iterable[str] = (),
        transport: Transport = "udptcp",
        config: udptcp.Config | None = None,
        backoff: Backoff = Backoff(),
        connect_timeout: float = 10.0,
        ping_interval: float | None = 15.0,
        on_line: Callable[[ServerLine], None] | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        #: The nickname asked for, then the one the server confirmed.
        self.nick = nick
        #: Rooms this connection is in, oldest first, current last (from the server's lines).
        self.rooms: list[str] = []
        self.transport: Transport = transport
        self.config = config
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.on_line = on_line
        self.on_status = on_status
        #: Successful registrations (one per connection that got its nickname).
        self.registrations = 0
        self._wanted = [normalize_room(room) for room in rooms]
        self._synced = False  # _wanted mirrors a previous connection's rooms
        self._confirmed = False  # the server has ever accepted a nickname of ours
        self._registering = False
        self._registered_this_session = False
        self._graceful = False  # the connection ended by EOF or BYE: close, don't reset
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._wake = asyncio.Event()
        self._registered = asyncio.Event()
        self._session_done: asyncio.Event | None = None
        self._last_rx = 0.0
        self._silent = False
        self._bye: str | None = None
        self._rng = random.Random()
        #: Why the client stopped trying by itself (the server speaks the other transport).
        self.failure: str | None = None
        #: What the latest connection attempt ran into (a status other than the backoff's).
        self.last_status = ""

    # ------------------------------------------------------------------ public surface

    @property
    def address(self) -> str:
        """``host:port`` as shown to the user."""
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        """True while a connection is up."""
        return self._writer is not None

    @property
    def current(self) -> str | None:
        """The room plain text goes to."""
        return self.rooms[-1] if self.rooms else None

    def start(self) -> asyncio.Task[None]:
        """Start connecting (and reconnecting) in the background."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self._task

    def send(self, text: str) -> bool:
        """Send one line as typed; False (nothing sent) while not connected."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        writer.write(encode_line(text.replace("\r", " ").replace("\n", " ")))
        return True

    def retry_now(self) -> None:
        """Cut short the wait before the next reconnection attempt (if waiting)."""
        self._wake.set()

    async def wait_registered(self) -> None:
        """Wait until a connection is up and the server has accepted the nickname."""
        await self._registered.wait()

    async def drain(self) -> None:
        """Wait until the connection accepts more data (flow control)."""
        if self._writer is not None:
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.drain()

    async def quit(self, reason: str = "", timeout: float = 2.0) -> None:
        """Say ``/quit``, wait (at most ``timeout``) for the server's ``BYE``, stop."""
        self._closing = True
        done = self._session_done
        if done is not None and self.send(f"/quit {reason}".rstrip()):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), timeout)
        await self.close()

    async def close(self) -> None:
        """Stop now: close the connection (if any) and reconnect no more."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def prompt_text(self) -> str:
        """What the terminal prompt shows: the current room and the nickname."""
        if not self.connected:
            where = "offline"
        else:
            where = f"#{self.current}" if self.current else "no room"
        return f"[{where}] {self.nick}> "

    # ------------------------------------------------------------------ connection loop

    def _status(self, text: str) -> None:
        if not text.startswith("reconnecting in"):
            self.last_status = text
        if self.on_status is not None:
            self.on_status(text)

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                reader, writer = await asyncio.wait_for(
                    open_connection(self.transport, self.host, self.port, config=self.config),
                    self.connect_timeout,
                )
            except ConnectionRefusedError:
                if await self._other_transport():
                    break
                self._status(f"connection refused by {self.address} (is the server running?)")
            except (TimeoutError, asyncio.TimeoutError):
                if await self._other_transport():
                    break
                self._status(
                    f"no answer from {self.address} within {self.connect_timeout:g} s (timed out)"
                )
            except OSError as exc:
                self._status(f"cannot connect to {self.address}: {exc.strerror or exc}")
            else:
                self._status(f"connected to {self.address} over {self.transport}")
                reason = await self._session(reader, writer)
                if self._registered_this_session:
                    attempt = 0  # it worked: start the backoff again from the beginning
                if self._closing:
                    break
                self._status(f"disconnected: {reason}")
            if self._closing:
                break
            delay = self.backoff.delay(attempt, self._rng)
            attempt += 1
            self._status(f"reconnecting in {delay:.1f} s")
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _other_transport(self) -> bool:
        """After a failed connect: does a server of the other transport answer there?

        A udptcp client reaching a kernel TCP server finds no UDP socket on that port (an
        ICMP port unreachable: refused), and a TCP client reaching a udptcp server finds no
        TCP listener; either would otherwise retry for ever. One short connect over the
        other transport tells; it is closed at once. Sets :attr:`failure` and says why.
        """
        other: Transport = "tcp" if self.transport == "udptcp" else "udptcp"
        probe = udptcp.Config(rto_initial=0.2, syn_retries=2) if other == "udptcp" else None
        try:
            _reader, writer = await asyncio.wait_for(
                open_connection(other, self.host, self.port, config=probe), PROBE_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        names = {"tcp": "kernel TCP", "udptcp": "udptcp (TCP over UDP)"}
        self.failure = (
            f"{self.address} is a {names[other]} server, and this client speaks"
            f" {names[self.transport]}: run the client with --transport {other}"
            f" (or the server with --transport {self.transport})"
        )
        self._status(self.failure)
        return True

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        """One connection, from ``/nick`` to its end; returns why it ended."""
        loop = asyncio.get_running_loop()
        self._writer = writer
        self._session_done = asyncio.Event()
        self._registered_this_session = False
        self._registering = True
        self._silent = False
        self._graceful = False
        self._bye = None
        self._last_rx = loop.time()
        self.rooms = []
        self.send(f"/nick {self.nick}")
        watchdog = loop.create_task(self._watchdog(writer)) if self.ping_interval else None
        try:
            return await self._read(reader, writer)
        finally:
            if watchdog is not None:
                watchdog.cancel()
            if self._registered_this_session:
                self._wanted = list(self.rooms)
                self._synced = True
            self._writer = None
            self._registered.clear()
            self._session_done.set()
            if self._graceful:
                writer.close()  # after BYE we close first, leaving no TIME-WAIT on the server
            else:
                writer.transport.abort()

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        loop = asyncio.get_running_loop()
        lines = LineBuffer(4 * MAX_LINE)
        while True:
            try:
                data = await reader.read(READ_SIZE)
            except ConnectionResetError:
                return "the connection was reset"
            except (TimeoutError, asyncio.TimeoutError):
                return "the connection timed out (data went unacknowledged)"
            except OSError as exc:
                return f"connection error: {exc}"
            if not data:
                if self._silent:
                    return f"no reply from the server for {self.ping_interval:g} s"
                self._graceful = True
                return "the server closed the connection"
            self._last_rx = loop.time()
            for raw in lines.feed(data):
                if raw is TOO_LONG:
                    continue
                assert isinstance(raw, bytes)
                line = parse_server_line(raw.decode("utf-8", "replace"))
                if line is not None:
                    self._on_line(line)
                if self._bye is not None:
                    self._graceful = True
                    return f"the server said goodbye: {self._bye}"

    async def _watchdog(self, writer: asyncio.StreamWriter) -> None:
        """Ping every ``ping_interval``; reset the connection if a ping goes unanswered.

        The pings also keep the server's idle timeout from dropping a client that only
        listens.
        """
        assert self.ping_interval is not None
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.ping_interval)
        while True:
            sent = loop.time()
            self.send("/ping")
            await asyncio.sleep(self.ping_interval)
            if self._last_rx < sent:
                self._silent = True
                writer.transport.abort()
                return

    # ------------------------------------------------------------------ server lines

    def _on_line(self, line: ServerLine) -> None:
        kind, fields = line.kind, line.fields
        if kind == "NICK":
            self.nick = fields[0]
            self._confirmed = True
            if self._registering:
                self._registering = False
                self._registered_this_session = True
                self.registrations += 1
                self._rejoin()
                self._registered.set()
        elif kind == "ERR" and self._registering and fields[0] in ("nick-taken", "bad-nick"):
            if self._confirmed and fields[0] == "nick-taken":
                # Probably our own previous connection, not yet noticed dead by the server.
                self.nick = (self.nick + "_")[:16]
                self._status(f"nickname taken; trying {self.nick}")
                self.send(f"/nick {self.nick}")
            else:
                self._status(f"{line.text}; choose another with /nick NAME")
        elif kind == "JOIN" and fields[1] == self.nick:
            if fields[0] not in self.rooms:
                self.rooms.append(fields[0])
        elif kind == "LEAVE" and fields[1] == self.nick:
            if fields[0] in self.rooms:
                self.rooms.remove(fields[0])
        elif kind == "CURRENT" and fields[0] in self.rooms:
            self.rooms.remove(fields[0])
            self.rooms.append(fields[0])
        elif kind == "BYE":
            self._bye = line.text or "bye"
        if self.on_line is not None:
            self.on_line(line)

    def _rejoin(self) -> None:
        """After (re)registration: be in the rooms we were in, the current one last."""
        for room in self._wanted:
            self.send(f"/join {room}")
        if self._synced and DEFAULT_ROOM not in self._wanted:
            self.send(f"/leave {DEFAULT_ROOM}")


# ---------------------------------------------------------------------- rendering


def render(line: ServerLine, me: str) -> str | None:
    """How a server line reads on a terminal (``None``: not shown)."""
    f = tuple(clean_text(field) for field in line.fields)
    text = clean_text(line.text)
    kind = line.kind
    if kind == "MSG":
        return f"[#{f[0]}] <{f[1]}> {text}"
    if kind == "PRIV":
        return f"-> *{f[1]}* {text}" if f[0] == me and f[1] != me else f"*{f[0]}* {text}"
    if kind == "JOIN":
        return f"* {'you' if f[1] == me else f[1]} joined #{f[0]}"
    if kind == "LEAVE":
        return f"* {'you' if f[1] == me else f[1]} left #{f[0]} ({text})"
    if kind == "RENAME":
        return f"* {f[0]} is now known as {f[1]}"
    if kind == "NICK":
        return f"* you are {f[0]}"
    if kind == "CURRENT":
        return "* you are in no room: /join ROOM" if f[0] == NO_ROOM else f"* talking in #{f[0]}"
    if kind == "USERS":
        return f"* in #{f[0]}: {', '.join(text.split()) or 'nobody'}"
    if kind == "ROOMS":
        items = [item.rpartition(":") for item in text.split()]
        return "* rooms: " + (", ".join(f"#{r} ({n})" for r, _, n in items) or "none")
    if kind == "WELCOME":
        return f"* {f[0]}: {text}"
    if kind == "INFO":
        return f"* {text}"
    if kind == "ERR":
        return f"! {text}"
    if kind == "BYE":
        return f"* server: {text}"
    return None  # PONG


# ---------------------------------------------------------------------- faces

LOCAL_HELP = (
    "client: /quit leaves (Ctrl-D too); the client reconnects by itself, /reconnect skips the wait"
)


async def run_terminal(client: ChatClient) -> None:
    """Chat on a terminal: prompt_toolkit prompt, incoming lines printed above it."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.application import get_app_or_none
    from prompt_toolkit.patch_stdout import patch_stdout

    def show(text: str | None) -> None:
        if text is not None:
            print(text)
        app = get_app_or_none()
        if app is not None:
            app.invalidate()  # the prompt shows the room and connection state
            if client.failure is not None and app.is_running:
                app.exit(exception=EOFError())  # the client gave up: end the prompt too

    client.on_line = lambda line: show(render(line, client.nick))
    client.on_status = lambda text: show(f"! {text}")
    session: PromptSession[str] = PromptSession()
    reason = ""
    with patch_stdout():
        client.start()
        try:
            while True:
                try:
                    text = await session.prompt_async(client.prompt_text)
                except KeyboardInterrupt:
                    continue  # Ctrl-C drops the line being typed, as shells do
                except EOFError:
                    break  # Ctrl-D
                quit_reason = _user_line(client, text, show)
                if quit_reason is not None:
                    reason = quit_reason
                    break
        finally:
            await client.quit(reason)


async def run_plain(client: ChatClient, eof_timeout: float = EOF_TIMEOUT) -> int:
    """Chat through standard input and output, one line each (for pipes and scripts).

    Returns the exit status: 0 after the input is done (or ``/quit``), 1 when the client
    gave up (the server speaks the other transport) or when standard input has ended and
    the lines still waiting could not be delivered within ``eof_timeout`` seconds (a
    script's lines wait for a connection, but not for ever once nobody can type more).
    """
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    stdin_closed = asyncio.Event()

    def read_stdin() -> None:  # a thread: stdin may be a file, which the loop cannot watch
        for text in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, text.rstrip("\n"))
        loop.call_soon_threadsafe(stdin_closed.set)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    def show(text: str | None) -> None:
        if text is not None:
            print(text, flush=True)

    reason = ""

    async def feed() -> None:
        nonlocal reason
        while (text := await lines.get()) is not None:
            await client.wait_registered()  # a script's lines wait for the connection
            quit_reason = _user_line(client, text, show)
            if quit_reason is not None:
                reason = quit_reason
                return

    async def deadline() -> None:
        await stdin_closed.wait()
        await asyncio.sleep(eof_timeout)

    client.on_line = lambda line: show(render(line, client.nick))
    client.on_status = lambda text: show(f"! {text}")
    threading.Thread(target=read_stdin, daemon=True).start()
    running = client.start()
    feeding = loop.create_task(feed())
    waiting = loop.create_task(deadline())
    status = 0
    try:
        await asyncio.wait({running, feeding, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if not feeding.done():
            status = 1
            if client.failure is None:
                last = f" (last: {client.last_status})" if client.last_status else ""
                show(
                    f"! standard input is closed and the lines left could not be sent to"
                    f" {client.address} within {eof_timeout:g} s: giving up{last}"
                )
    finally:
        for task in (feeding, waiting):
            task.cancel()
        await client.quit(reason)
    return status


def _user_line(client: ChatClient, text: str, show: Callable[[str | None], None]) -> str | None:
    """Act on one typed line; return the reason when the user asked to leave."""
    stripped = text.strip()
    if not stripped:
        return None
    word, _, rest = stripped.partition(" ")
    if word.lower() in ("/quit", "/exit"):
        return rest.strip()
    if word.lower() == "/reconnect":
        if client.connected:
            show("! already connected")
        else:
            client.retry_now()
        return None
    if word.lower() == "/help":
        show(LOCAL_HELP)
    if not client.send(text):
        show("! not connected: not sent (reconnecting)")
    return None
