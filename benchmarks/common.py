"""Pieces every process of the benchmark shares: the small application protocol all servers
speak, running a coroutine on a named event loop, and raising the open-files limit.

The application protocol: the client's first byte on a connection picks what the server
does with it.

* ``S`` (sink): count every further byte; at end of stream answer with the count as an
  8-byte big-endian integer and close.
* ``E`` (echo): send every further byte back; close at end of stream.
* ``R`` (request): once ``REQUEST_SIZE`` bytes (the ``R`` included) have arrived, answer
  with ``RESPONSE_SIZE`` bytes; close at end of stream.
* ``I`` (idle): nothing; the connection is only counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import struct
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

HOST = "127.0.0.1"
LOOPS = ("asyncio", "uvloop")
CHUNK = 64 * 1024

MODE_SINK = b"S"
MODE_ECHO = b"E"
MODE_REQUEST = b"R"
MODE_IDLE = b"I"
REQUEST_SIZE = 100
RESPONSE_SIZE = 100
COUNT = struct.Struct("!Q")

_T = TypeVar("_T")


def run_on_loop(loop_name: str, coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion on a fresh event loop of the named kind."""
    if loop_name == "uvloop":
        import uvloop

        return uvloop.run(coro)
    if loop_name != "asyncio":
        coro.close()
        raise ValueError(f"unknown loop {loop_name!r}")
    return asyncio.run(coro)


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (10,000 idle TCP connections need a
    descriptor each); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def emit(message: dict[str, Any]) -> None:
    """Write one JSON line to stdout: the only channel from a worker to the runner."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def rss_bytes() -> int:
    """Resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class ServerStats:
    """Connections seen by the server application, across every peer's server."""

    live: int = 0
    accepted: int = 0
    #: Bytes taken in by sink-mode connections (read by the runner for windowed goodput).
    received: int = 0


class ServerApp(asyncio.Protocol):
    """The server side of the application protocol, as an asyncio Protocol. Every peer's
    server runs one of these per connection (per QUIC stream, per KCP session)."""

    def __init__(self, stats: ServerStats) -> None:
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.mode: int | None = None
        self.count = 0
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.stats.live += 1
        self.stats.accepted += 1

    def data_received(self, data: bytes) -> None:
        if self.mode is None:
            if not data:
                return
            self.mode = data[0]
            if self.mode == MODE_REQUEST[0]:
                self.count = 1
            data = data[1:]
        assert self.transport is not None
        if self.mode == MODE_SINK[0]:
            self.count += len(data)
            self.stats.received += len(data)
        elif self.mode == MODE_ECHO[0]:
            if data:
                self.transport.write(data)
        elif self.mode == MODE_REQUEST[0]:
            self.count += len(data)
            if not self.answered and self.count >= REQUEST_SIZE:
                self.answered = True
                self.transport.write(b"r" * RESPONSE_SIZE)

    def eof_received(self) -> bool | None:
        assert self.transport is not None
        if self.mode == MODE_SINK[0]:
            self.transport.write(COUNT.pack(self.count))
        self.transport.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.live -= 1


async def stream_server_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The sink and echo modes of the application protocol over asyncio streams."""
    try:
        mode = await reader.readexactly(1)
        if mode == MODE_SINK:
            count = 0
            while chunk := await reader.read(CHUNK):
                count += len(chunk)
            writer.write(COUNT.pack(count))
            await writer.drain()
        elif mode == MODE_ECHO:
            while chunk := await reader.read(CHUNK):
                writer.write(chunk)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
