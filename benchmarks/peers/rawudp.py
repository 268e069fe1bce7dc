"""The raw UDP ceiling: how fast one asyncio process can take in 1400-byte datagrams that
another process blasts at it, with no protocol on top.

Receiver modes:

* ``protocol``: an asyncio ``DatagramProtocol`` (one callback per datagram).
* ``reader``: ``loop.add_reader`` and ``recvfrom_into`` until EAGAIN.
* ``gro``: like ``reader``, with ``UDP_GRO`` on and ``recvmsg_into``; a control message
  (level SOL_UDP, type UDP_GRO) gives the segment size of a coalesced train. The sender
  then uses UDP GSO (``UDP_SEGMENT``) with 64 KB sends.

Python's socket module has no names for the Linux constants, so they are spelled out here.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import HOST

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
DATAGRAM = 1400
GSO_SEGMENTS = 46  # 46 * 1400 = 64,400 bytes per send, under the 65,507-byte UDP limit
SOCKET_BUFFER = 4 * 1024 * 1024
RECV_BUFFER = 65536
WARMUP = 0.2
_GRO_SIZE = struct.Struct("=i")

MODES = {
    "protocol": "DatagramProtocol",
    "reader": "add_reader + recvfrom",
    "gro": "GSO send, GRO + recvmsg",
}


class _Counter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams = 0
        self.bytes = 0
        self.first = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams += 1
        self.bytes += len(data)
        if not self.first.done():
            self.first.set_result(None)


def _reader(sock: socket.socket, counter: _Counter, gro: bool) -> Callable[[], None]:
    buf = bytearray(RECV_BUFFER)
    ancillary = socket.CMSG_SPACE(_GRO_SIZE.size)

    def on_readable() -> None:
        datagrams = 0
        total = 0
        while True:
            try:
                if gro:
                    size, ancdata, _flags, _addr = sock.recvmsg_into([buf], ancillary)
                    segment = size
                    for level, kind, data in ancdata:
                        if level == SOL_UDP and kind == UDP_GRO:
                            segment = _GRO_SIZE.unpack(data[: _GRO_SIZE.size])[0]
                    datagrams += -(-size // segment) if segment else 1
                else:
                    size, _addr = sock.recvfrom_into(buf)
                    datagrams += 1
                total += size
            except (BlockingIOError, InterruptedError):
                break
        counter.datagrams += datagrams
        counter.bytes += total
        if datagrams and not counter.first.done():
            counter.first.set_result(None)

    return on_readable


def receiver_socket(mode: str) -> socket.socket:
    if mode not in MODES:
        raise ValueError(f"unknown raw UDP mode {mode!r}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    if mode == "gro":
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    sock.bind((HOST, 0))
    return sock


async def receive(sock: socket.socket, mode: str, seconds: float) -> dict[str, Any]:
    """Count what arrives on ``sock`` for ``seconds`` after a short warm-up."""
    loop = asyncio.get_running_loop()
    counter = _Counter()
    transport: asyncio.BaseTransport | None = None
    if mode == "protocol":
        transport, _ = await loop.create_datagram_endpoint(lambda: counter, sock=sock)
    else:
        loop.add_reader(sock.fileno(), _reader(sock, counter, gro=mode == "gro"))
    try:
        await asyncio.wait_for(counter.first, 15)
        await asyncio.sleep(WARMUP)
        datagrams, received, start = counter.datagrams, counter.bytes, time.perf_counter()
        await asyncio.sleep(seconds)
        datagrams = counter.datagrams - datagrams
        received = counter.bytes - received
        elapsed = time.perf_counter() - start
    finally:
        if transport is not None:
            transport.close()
        else:
            loop.remove_reader(sock.fileno())
            sock.close()
    return {
        "mbps": received / elapsed / 1e6,
        "datagrams_per_s": datagrams / elapsed,
        "seconds": elapsed,
    }


def blast(port: int, seconds: float, gso: bool) -> dict[str, Any]:
    """Send 1400-byte datagrams (as 64 KB GSO sends with ``gso``) as fast as possible."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    sock.connect((HOST, port))
    payload = bytes(DATAGRAM)
    per_send = 1
    if gso:
        sock.setsockopt(SOL_UDP, UDP_SEGMENT, DATAGRAM)
        payload = bytes(DATAGRAM * GSO_SEGMENTS)
        per_send = GSO_SEGMENTS
    send = sock.send
    sent = errors = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(64):
            try:
                send(payload)
                sent += per_send
            except ConnectionRefusedError:  # the receiver is done and closed its socket
                deadline = 0.0
                break
            except OSError:  # ENOBUFS and the like
                errors += 1
    elapsed = time.perf_counter() - start
    sock.close()
    return {"sent_per_s": sent / elapsed, "errors": errors}
