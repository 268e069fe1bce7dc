"""The client side of every scenario, written once against asyncio's Protocol/Transport (or
streams) interface and run over any peer adapter. Each returns a dict of measurements.

The server side is :class:`benchmarks.common.ServerApp` in the other process.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .common import (
    CHUNK,
    COUNT,
    MODE_ECHO,
    MODE_IDLE,
    MODE_REQUEST,
    MODE_SINK,
    REQUEST_SIZE,
    RESPONSE_SIZE,
)
from .peers.base import ClientPeer

Params = dict[str, Any]
Result = dict[str, Any]

CONNECT_TIMEOUT = 20.0


class _Client(asyncio.Protocol):
    """Writes with flow control; collects a reply of ``expect`` bytes."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.expect = 0
        self.received = bytearray()
        self.reply: asyncio.Future[bytes] = loop.create_future()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.expect and len(self.received) >= self.expect and not self.reply.done():
            self.reply.set_result(bytes(self.received))

    def eof_received(self) -> bool | None:
        self._fail(ConnectionError("end of stream before the whole reply"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("connection closed before the whole reply"))
        self.can_write.set()

    def _fail(self, exc: BaseException) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


class _Pinger(asyncio.Protocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc or ConnectionError("connection closed"))


async def _connect(
    peer: ClientPeer, factory: Callable[[], Any], host: str, port: int
) -> tuple[asyncio.Transport, Any]:
    return await asyncio.wait_for(peer.connect(factory, host, port), CONNECT_TIMEOUT)


async def bulk(peer: ClientPeer, host: str, port: int, params: Params) -> Result:
    """Send ``size`` bytes (or for at most ``seconds``) one way with the Protocol API; MB/s
    counted by the receiver, from the first write to the receiver's count arriving back.
    Connection set-up is excluded."""
    size, seconds = int(params["size"]), float(params["seconds"])
    transport, client = await _connect(peer, _Client, host, port)
    client.expect = COUNT.size
    chunk = bytes(CHUNK)
    can_write = client.can_write
    write = transport.write
    clock = time.perf_counter
    transport.write(MODE_SINK)
    start = clock()
    deadline = start + seconds
    sent = 0
    while sent < size:
        if not can_write.is_set():
            await can_write.wait()
        write(chunk)
        sent += CHUNK
        if clock() >= deadline:
            break
    transport.write_eof()
    (count,) = COUNT.unpack((await client.reply)[: COUNT.size])
    elapsed = clock() - start
    transport.close()
    return {"mbps": count / elapsed / 1e6, "bytes": count, "seconds": elapsed}


async def bulk_streams(peer: ClientPeer, host: str, port: int, params: Params) -> Result:
    """:func:`bulk` with ``StreamWriter.write`` + ``drain`` and ``StreamReader.read``."""
    size, seconds = int(params["size"]), float(params["seconds"])
    reader, writer = await asyncio.wait_for(peer.open_stream(host, port), CONNECT_TIMEOUT)
    chunk = bytes(CHUNK)
    clock = time.perf_counter
    writer.write(MODE_SINK)
    start = clock()
    deadline = start + seconds
    sent = 0
    while sent < size:
        writer.write(chunk)
        sent += CHUNK
        await writer.drain()
        if clock() >= deadline:
            break
    writer.write_eof()
    (count,) = COUNT.unpack(await reader.readexactly(COUNT.size))
    elapsed = clock() - start
    writer.close()
    return {"mbps": count / elapsed / 1e6, "bytes": count, "seconds": elapsed}


async def pingpong(peer: ClientPeer, host: str, port: int, params: Params) -> Result:
    """1-byte request, 1-byte echo, one at a time; round-trip percentiles in µs."""
    rounds, warmup = int(params["rounds"]), int(params["warmup"])
    loop = asyncio.get_running_loop()
    transport, pinger = await _connect(peer, _Pinger, host, port)
    transport.write(MODE_ECHO)
    clock = time.perf_counter_ns
    samples: list[int] = []
    for i in range(warmup + rounds):
        pinger.waiter = waiter = loop.create_future()
        t0 = clock()
        transport.write(b"!")
        await waiter
        if i >= warmup:
            samples.append(clock() - t0)
    transport.close()
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1e3,
        "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1e3,
        "mean_us": sum(samples) / len(samples) / 1e3,
        "rounds": rounds,
    }


async def connect_close(peer: ClientPeer, host: str, port: int, params: Params) -> Result:
    """Sequential connect (handshake complete) then ``close()``, for ``seconds``. A client
    that keeps a descriptor per closed connection (udptcp's TIME-WAIT keeps its UDP socket)
    may run out of them: the run then stops early and says so."""
    seconds = float(params["seconds"])
    clock = time.perf_counter
    count = 0
    start = clock()
    stopped = None
    while clock() - start < seconds:
        try:
            transport, _ = await _connect(peer, asyncio.Protocol, host, port)
        except OSError as exc:
            if exc.errno != errno.EMFILE or not count:
                raise
            stopped = f"out of file descriptors after {count} connections"
            break
        transport.close()
        count += 1
    elapsed = clock() - start
    return {"per_s": count / elapsed, "count": count, "stopped": stopped}


async def request_response(peer: ClientPeer, host: str, port: int, params: Params) -> Result:
    """Sequential connect, 100-byte request, 100-byte response, ``close()``."""
    seconds = float(params["seconds"])
    request = MODE_REQUEST + b"q" * (REQUEST_SIZE - 1)
    clock = time.perf_counter
    count = 0
    start = clock()
    stopped = None
    while clock() - start < seconds:
        try:
            transport, client = await _connect(peer, _Client, host, port)
        except OSError as exc:
            if exc.errno != errno.EMFILE or not count:
                raise
            stopped = f"out of file descriptors after {count} connections"
            break
        client.expect = RESPONSE_SIZE
        transport.write(request)
        await asyncio.wait_for(client.reply, CONNECT_TIMEOUT)
        transport.close()
        count += 1
    elapsed = clock() - start
    return {"per_s": count / elapsed, "count": count, "stopped": stopped}


async def idle(
    peer: ClientPeer,
    host: str,
    port: int,
    params: Params,
    ready: Callable[[Result], None],
    hold: Awaitable[None],
) -> Result:
    """Open ``connections`` connections (``concurrency`` handshakes at a time), send each the
    idle mode byte, report through ``ready`` and keep them open until ``hold`` completes."""
    total, concurrency = int(params["connections"]), int(params["concurrency"])
    transports: list[asyncio.Transport] = []

    async def open_one() -> None:
        transport, _ = await _connect(peer, asyncio.Protocol, host, port)
        transport.write(MODE_IDLE)
        await asyncio.wait_for(peer.settle(transport), CONNECT_TIMEOUT)
        transports.append(transport)

    start = time.perf_counter()
    for first in range(0, total, concurrency):
        await asyncio.gather(*(open_one() for _ in range(min(concurrency, total - first))))
    elapsed = time.perf_counter() - start
    result = {"connections": len(transports), "establish_s": elapsed}
    ready(result)
    await hold
    for transport in transports:
        transport.abort()
    return result


async def stream(
    peer: ClientPeer,
    host: str,
    port: int,
    params: Params,
    ready: Callable[[Result], None],
    hold: Awaitable[None],
) -> Result:
    """Send without end, with flow control, until ``hold`` completes. The measurement is
    the receiver's byte count over a time window, which the runner reads from the server:
    no tail to wait for, however slow the path."""
    transport, client = await _connect(peer, _Client, host, port)
    transport.write(MODE_SINK)
    ready({"connected": True})
    stop = asyncio.ensure_future(hold)
    chunk = bytes(CHUNK)
    sent = 0
    while not stop.done():
        if not client.can_write.is_set():
            writable = asyncio.ensure_future(client.can_write.wait())
            await asyncio.wait({stop, writable}, return_when=asyncio.FIRST_COMPLETED)
            writable.cancel()
            continue
        transport.write(chunk)
        sent += CHUNK
        if sent % (16 * CHUNK) == 0:
            await asyncio.sleep(0)
    transport.abort()
    return {"sent": sent}


#: Scenarios whose client reports ``ready`` and then waits for the runner (end of stdin).
HELD = {"idle": idle, "loss": stream}

SCENARIOS: dict[str, Callable[[ClientPeer, str, int, Params], Awaitable[Result]]] = {
    "bulk": bulk,
    "bulk-streams": bulk_streams,
    "pingpong": pingpong,
    "connect": connect_close,
    "reqresp": request_response,
}
