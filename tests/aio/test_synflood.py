"""A short SYN flood lab: forged SYNs from random 127.0.0.0/8 sources (a raw socket in a
separate process) while real clients connect, upload and check what arrived.

The full acceptance run (10 s at >= 10,000 SYN/s, 20 clients of 1 MB, connect times and
server RSS) is ``python -m benchmarks.synflood``; this is its quick version for CI. Needs
root for the raw socket; skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aio_helpers import until

import udptcp

ROOT = Path(__file__).resolve().parents[2]
SEED = 7
#: Long enough to outlast the clients on a slow or loaded machine; killed as soon as they
#: are done.
FLOOD_SECONDS = 60.0
FLOOD_RATE = 10_000


def _raw_socket_reason() -> str | None:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
    except OSError as exc:
        return f"forged SYNs need a raw socket (root): {exc}"
    return None


pytestmark = pytest.mark.skipif(_raw_socket_reason() is not None, reason=str(_raw_socket_reason()))


async def _hash_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    digest = hashlib.sha256()
    while chunk := await reader.read(65536):
        digest.update(chunk)
    writer.write(digest.digest())
    await writer.drain()
    writer.close()


async def _upload(port: int, data: bytes) -> bytes:
    reader, writer = await udptcp.open_connection("127.0.0.1", port)
    writer.write(data)
    writer.write_eof()
    digest = await asyncio.wait_for(reader.readexactly(32), 30)
    writer.close()
    return digest


async def test_clients_connect_and_upload_intact_through_a_syn_flood() -> None:
    server = await udptcp.start_server(_hash_handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoint = server.endpoints[0]
    flooder = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.synflood", "flood", "--port", str(port),
         "--seconds", str(FLOOD_SECONDS), "--rate", str(FLOOD_RATE), "--seed", str(SEED)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # The forged SYNs fill the half-open table (the default backlog, 100) first and
        # are answered with cookies from then on...
        await until(lambda: endpoint.stats["syn_cookies_sent"] >= 1000, timeout=30)
        assert endpoint.limits()["half_open"] == 100
        rng = random.Random(SEED)
        payloads = [rng.randbytes(64 * 1024) for _ in range(3)]
        # ...so these clients get through on SYN cookies, the flood still running.
        digests = await asyncio.wait_for(
            asyncio.gather(*(_upload(port, data) for data in payloads)), 30
        )
        assert flooder.poll() is None, "the flood ended before the clients were done"
        assert digests == [hashlib.sha256(d).digest() for d in payloads], f"seed {SEED}"
        assert endpoint.stats["syn_cookies_accepted"] == 3
        # Half-open state stayed bounded by the table, whatever the flood.
        assert endpoint.limits()["half_open"] <= 100
    finally:
        flooder.kill()
        flooder.wait()
        server.close()
