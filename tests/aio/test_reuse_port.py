"""Several worker processes on one UDP port (SO_REUSEPORT): ``examples/workers.py``.

The kernel hashes each client socket's 4-tuple to one worker's socket, so every connection
is served whole by one process, and different client sockets spread over the workers.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import udptcp

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "workers.py"

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT on this platform"
)


@pytest.fixture
def two_workers() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """The example with two workers on a free port; stopped (workers too) afterwards."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--workers", "2", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving on 127.0.0.1:"), line
        yield int(line.split()[2].rsplit(":", 1)[1]), proc
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


async def _one_connection(port: int, sock: socket.socket, payload: bytes) -> int:
    """Connect over ``sock``, check the echo, half-close and wait for the server's close;
    return the pid of the worker that served it."""
    transport, client = await udptcp.create_connection(
        _Client, "127.0.0.1", port, sock=sock, config=udptcp.Config(msl=0.05)
    )
    transport.write(payload)
    transport.write_eof()
    assert await asyncio.wait_for(client.closed, 10) is None
    greeting, _, echoed = client.data.partition(b"\n")
    assert echoed == payload
    word, pid = greeting.split()
    assert word == b"worker"
    return int(pid)


async def test_connections_from_many_client_sockets_complete_and_spread_over_both_workers(
    two_workers: tuple[int, subprocess.Popen[str]],
) -> None:
    port, _ = two_workers
    served: Counter[int] = Counter()
    sockets: list[socket.socket] = []
    try:
        # Client sockets until both workers have been seen (the kernel's hash decides; the
        # chance that 40 sockets all hash to one worker is 2**-39), at least 8 of them.
        while len(sockets) < 40 and (len(sockets) < 8 or len(served) < 2):
            batch = []
            for _ in range(4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind(("127.0.0.1", 0))
                sock.setblocking(False)
                sockets.append(sock)
                batch.append(sock)
            # Two connections per socket, concurrently: both must reach the same worker.
            pids = await asyncio.gather(
                *(
                    _one_connection(port, sock, os.urandom(3000) + bytes([i, n]))
                    for i, sock in enumerate(batch)
                    for n in range(2)
                )
            )
            for first, second in zip(pids[0::2], pids[1::2]):
                assert first == second, "one client socket's connections split over workers"
                served[first] += 2
    finally:
        for sock in sockets:
            sock.close()
    assert len(served) == 2, served
    assert sum(served.values()) == 2 * len(sockets)
