"""Helpers for the chat tests: scripted participants and raw connections."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import udptcp
from examples.chat.client import Backoff, ChatClient
from examples.chat.net import Transport, open_connection
from examples.chat.protocol import TOO_LONG, LineBuffer, ServerLine, parse_server_line
from examples.chat.server import ChatServer

#: Quick udptcp timers: loopback round trips take well under a millisecond. The MSL stays
#: at its default on purpose: the server must not be left holding its port in TIME-WAIT.
FAST = udptcp.Config(rto_initial=0.1, rto_min=0.05, syn_retries=6)
#: Reconnect almost at once in tests.
QUICK_BACKOFF = Backoff(initial=0.05, maximum=0.2, jitter=0.0)


def matches(line: ServerLine, kind: str, fields: tuple[str, ...], text: str | None) -> bool:
    """``line`` is of ``kind``, starts with ``fields`` and (if given) has ``text``."""
    return (
        line.kind == kind
        and line.fields[: len(fields)] == fields
        and (text is None or line.text == text)
    )


class Person:
    """A :class:`ChatClient` that records what it receives, for tests to wait on."""

    def __init__(
        self,
        nick: str,
        port: int,
        *,
        transport: Transport = "udptcp",
        rooms: tuple[str, ...] = (),
        connect_timeout: float = 2.0,
        ping_interval: float | None = None,
        config: udptcp.Config | None = FAST,
        backoff: Backoff = QUICK_BACKOFF,
    ) -> None:
        self.lines: list[ServerLine] = []
        self.statuses: list[str] = []
        self._used: set[int] = set()
        self._changed = asyncio.Event()
        self.client = ChatClient(
            "127.0.0.1",
            port,
            nick,
            rooms=rooms,
            transport=transport,
            config=config if transport == "udptcp" else None,
            backoff=backoff,
            connect_timeout=connect_timeout,
            ping_interval=ping_interval,
            on_line=self._on_line,
            on_status=self._on_status,
        )

    def __repr__(self) -> str:
        return f"<Person {self.client.nick}>"

    def _on_line(self, line: ServerLine) -> None:
        self.lines.append(line)
        self._changed.set()

    def _on_status(self, text: str) -> None:
        self.statuses.append(text)
        self._changed.set()

    async def until(self, predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy; return its value."""

        async def wait() -> Any:
            while not (result := predicate()):
                self._changed.clear()
                await self._changed.wait()
            return result

        try:
            return await asyncio.wait_for(wait(), timeout)
        except asyncio.TimeoutError:
            recent = [str(line)[:80] for line in self.lines[-8:]]
            raise AssertionError(
                f"{self!r}: no {what} within {timeout} s; last lines: {recent};"
                f" statuses: {self.statuses[-8:]}"
            ) from None

    def _find(self, kind: str, fields: tuple[str, ...], text: str | None) -> ServerLine | None:
        for i, line in enumerate(self.lines):
            if i not in self._used and matches(line, kind, fields, text):
                self._used.add(i)
                return line
        return None

    async def expect(
        self, kind: str, *fields: str, text: str | None = None, timeout: float = 10.0
    ) -> ServerLine:
        """Wait for a line not matched before; mark it matched."""
        what = " ".join((kind, *fields)) + (f" {text!r}" if text is not None else "")
        line: ServerLine = await self.until(lambda: self._find(kind, fields, text), what, timeout)
        return line

    def count(self, kind: str, *fields: str, text: str | None = None) -> int:
        """How many lines received so far match."""
        return sum(matches(line, kind, fields, text) for line in self.lines)

    async def status(self, fragment: str, timeout: float = 10.0) -> str:
        """Wait for a status message containing ``fragment``."""
        found: str = await self.until(
            lambda: next((s for s in self.statuses if fragment in s), None),
            f"status containing {fragment!r}",
            timeout,
        )
        return found

    async def registered(self, n: int = 1, timeout: float = 10.0) -> None:
        """Wait until the client registered its nickname ``n`` times (n - 1 reconnects)."""
        await self.until(lambda: self.client.registrations >= n, f"registration {n}", timeout)
        await asyncio.wait_for(self.client.wait_registered(), timeout)

    async def in_rooms(self, *rooms: str) -> None:
        """Wait until the client is in ``rooms``, in that order (the current one last)."""
        await self.until(lambda: self.client.rooms == list(rooms), f"rooms {rooms}")

    async def say(self, text: str) -> None:
        """Send one line as typed."""
        assert self.client.send(text), f"{self!r} is not connected"
        await self.client.drain()

    async def barrier(self, token: str) -> None:
        """Round trip to the server: everything queued for us before is received after it."""
        await self.say(f"/ping {token}")
        await self.expect("PONG", text=token)


async def until(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Poll until ``predicate()`` holds (for state that has no event to wait on)."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"no {what} within {timeout} s") from None


@contextlib.asynccontextmanager
async def people(*persons: Person, start: bool = True) -> AsyncIterator[None]:
    """Run clients (started now, or by the test) for the body of a test; close them after."""
    for person in persons:
        if start:
            person.client.start()
    try:
        yield
    finally:
        for person in persons:
            await person.client.close()


class Raw:
    """A bare connection to the chat server that writes bytes and reads parsed lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._lines = LineBuffer(1 << 20)
        self._ready: list[ServerLine] = []

    @classmethod
    async def connect(
        cls, port: int, transport: Transport = "udptcp", config: udptcp.Config = FAST
    ) -> Raw:
        reader, writer = await open_connection(
            transport, "127.0.0.1", port, config=config if transport == "udptcp" else None
        )
        return cls(reader, writer)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def line(self, timeout: float = 10.0) -> ServerLine | None:
        """The next server line, or None at EOF."""
        while not self._ready:
            data = await asyncio.wait_for(self.reader.read(4096), timeout)
            if not data:
                return None
            for raw in self._lines.feed(data):
                assert raw is not TOO_LONG and isinstance(raw, bytes)
                parsed = parse_server_line(raw.decode())
                assert parsed is not None, raw
                self._ready.append(parsed)
        return self._ready.pop(0)

    async def until(self, kind: str, *fields: str, timeout: float = 10.0) -> list[ServerLine]:
        """Lines up to and including the first of ``kind`` starting with ``fields``."""
        seen: list[ServerLine] = []
        while True:
            line = await self.line(timeout)
            assert line is not None, f"EOF before {kind} {fields}; saw {seen}"
            seen.append(line)
            if matches(line, kind, fields, None):
                return seen

    async def eof(self, timeout: float = 10.0) -> list[ServerLine]:
        """Lines up to EOF."""
        seen: list[ServerLine] = []
        while (line := await self.line(timeout)) is not None:
            seen.append(line)
        return seen

    async def register(self, nick: str) -> None:
        self.write(f"/nick {nick}\n".encode())
        await self.until("CURRENT")


@contextlib.asynccontextmanager
async def chat_server(
    transport: Transport = "udptcp", port: int = 0, **kw: Any
) -> AsyncIterator[ChatServer]:
    """A chat server on 127.0.0.1 for the body of a test (short grace: tests' raw
    connections do not close by themselves on ``BYE``)."""
    kw.setdefault("close_grace", 0.3)
    server = ChatServer(transport=transport, config=FAST if transport == "udptcp" else None, **kw)
    await server.start("127.0.0.1", port)
    try:
        yield server
    finally:
        await server.close()
