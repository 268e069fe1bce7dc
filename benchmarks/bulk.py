"""Bulk transfer and ping-pong over udptcp on loopback; prints a Markdown table.

    python benchmarks/bulk.py [--size 50_000_000] [--repeat 3] [--rounds 2000]

Figures are medians (min-max) of the repeats, for the default asyncio loop and uvloop.
This is a measuring tool, not a test: nothing here asserts a speed. For udptcp next to
kernel TCP, aioquic and KCP, with server and client in separate processes, see
``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

import udptcp

CHUNK = 1 << 16


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = 0
        self.done = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.received += len(data)

    def eof_received(self) -> None:
        if not self.done.done():
            self.done.set_result(self.received)


class Sender(asyncio.Protocol):
    def __init__(self) -> None:
        self.can_write = asyncio.Event()
        self.can_write.set()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()


async def bulk(size: int) -> float:
    """MB/s moving ``size`` bytes one way, connection set-up excluded."""
    sinks: list[Sink] = []

    def factory() -> Sink:
        sinks.append(Sink())
        return sinks[-1]

    server = await udptcp.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, sender = await udptcp.create_connection(Sender, "127.0.0.1", port)
    chunk = b"\x5a" * CHUNK
    start = time.perf_counter()
    sent = 0
    while sent < size:
        await sender.can_write.wait()
        transport.write(chunk)
        sent += CHUNK
    transport.write_eof()
    while not sinks:
        await asyncio.sleep(0.001)
    await sinks[0].done
    elapsed = time.perf_counter() - start
    transport.close()
    server.close()
    await server.wait_closed()
    return sent / elapsed / 1e6


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


class Pinger(asyncio.Protocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


async def ping_pong(rounds: int) -> float:
    """Median microseconds for a 1-byte request and its 1-byte answer."""
    server = await udptcp.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, pinger = await udptcp.create_connection(Pinger, "127.0.0.1", port)
    loop = asyncio.get_running_loop()
    samples = []
    for _ in range(rounds):
        pinger.waiter = loop.create_future()
        t0 = time.perf_counter()
        transport.write(b"!")
        await pinger.waiter
        samples.append(time.perf_counter() - t0)
    transport.close()
    server.close()
    await server.wait_closed()
    return statistics.median(samples) * 1e6


def run(loop_name: str, coro: Callable[[], Coroutine[Any, Any, float]]) -> float:
    if loop_name == "uvloop":
        return uvloop.run(coro())
    return asyncio.run(coro())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=50_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    for loop_name in ("asyncio", "uvloop"):
        mbps = [run(loop_name, lambda: bulk(args.size)) for _ in range(args.repeat)]
        rtts = [run(loop_name, lambda: ping_pong(args.rounds)) for _ in range(args.repeat)]
        rows.append((loop_name, mbps, rtts))
    print("| loop | bulk MB/s | ping-pong p50 µs |")
    print("| --- | --- | --- |")
    for loop_name, mbps, rtts in rows:
        print(
            f"| {loop_name} | {statistics.median(mbps):.1f} ({min(mbps):.1f}-{max(mbps):.1f}) "
            f"| {statistics.median(rtts):.0f} ({min(rtts):.0f}-{max(rtts):.0f}) |"
        )


if __name__ == "__main__":
    main()
