"""A SYN flood against a udptcp server while real clients connect: ``python -m benchmarks.synflood``.

Three processes, all on loopback:

* the **server** (``synflood serve``): ``udptcp.start_server`` with the default ``Config``
  and backlog; each connection's bytes are hashed and the SHA-256 digest sent back at EOF;
* the **flooder** (``synflood flood``): forged SYNs at a fixed rate from random
  127.0.0.0/8 source addresses and ports, through a raw socket (``IPPROTO_RAW``, the IPv4
  and UDP headers built here, checksums left to the kernel / zero as UDP allows); half of
  them bare 20-byte SYNs, half with MSS, window scale, SACK-permitted and timestamps;
* the **clients** (this process): ``--clients`` udptcp connections started one after
  another while the flood runs, each uploading ``--size`` seeded random bytes and
  comparing the digest.

Reported: the flood rate achieved, each client's connect time (max, median) and whether its
upload arrived intact, the server's RSS growth (peak during the flood minus the RSS after a
warm-up connection), and the server endpoint's SYN-cookie and limit counters. The acceptance
run is the default: 10 s at 12,000 SYN/s, 20 clients of 1 MB. Needs root (raw sockets);
without it, says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from udptcp.core.segment import SYN, Options, Segment, encode

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_DIGEST = hashlib.sha256().digest_size


def raw_socket_available() -> str | None:
    """None if this process may send raw IPv4 packets, else the reason it may not."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError:
        return "raw sockets need root (CAP_NET_RAW)"
    except OSError as exc:
        return f"no raw socket: {exc}"
    sock.close()
    return None


# ---------------------------------------------------------------------------- flooder


def _forged_syns(rng: random.Random, port: int, count: int) -> list[bytes]:
    """``count`` distinct SYN segments (random ports, ISNs, timestamps) to the server."""
    out = []
    for i in range(count):
        options = None
        if i % 2:
            ts = (rng.getrandbits(32), 0)
            options = Options(mss=1460, wscale=7, sack_permitted=True, timestamps=ts)
        seg = Segment(rng.randint(1024, 65535), port, rng.getrandbits(32), 0, SYN, 64240, options)
        out.append(encode(seg))
    return out


def flood(port: int, seconds: float, rate: float, seed: int) -> dict[str, Any]:
    """Send forged SYNs to ``HOST:port`` for ``seconds`` at ``rate`` per second."""
    rng = random.Random(seed)
    segments = _forged_syns(rng, port, 4096)
    dst = socket.inet_aton(HOST)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    ip_pack, udp_pack, sendto = _IPV4.pack, _UDP.pack, sock.sendto
    getrandbits = rng.getrandbits
    target = (HOST, 0)
    sent = errors = 0
    start = time.perf_counter()
    end = start + seconds
    try:
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            due = int((now - start) * rate) - sent
            if due <= 0:
                time.sleep(0.0005)
                continue
            for _ in range(min(due, 2000)):
                payload = segments[getrandbits(12)]
                # 127.a.b.c with a, c in 1..254: never 127.0.0.1, where the clients are.
                bits = getrandbits(24)
                src = bytes(
                    (127, 1 + (bits >> 16) % 254, (bits >> 8) & 0xFF, 1 + (bits & 0xFF) % 254)
                )
                length = len(payload) + 8
                # Total length, ID and the IP checksum are filled in by the kernel (raw(7));
                # a zero UDP checksum means "none" over IPv4 (RFC 768).
                header = ip_pack(0x45, 0, 20 + length, 0, 0, 64, 17, 0, src, dst)
                udp = udp_pack(1024 + getrandbits(15), port, length, 0)
                try:
                    sendto(header + udp + payload, target)
                except OSError:
                    errors += 1
                sent += 1
    finally:
        sock.close()
    elapsed = time.perf_counter() - start
    return {"sent": sent, "errors": errors, "seconds": elapsed, "rate": sent / elapsed}


# ---------------------------------------------------------------------------- server


async def _hash_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    digest = hashlib.sha256()
    try:
        while chunk := await reader.read(65536):
            digest.update(chunk)
        writer.write(digest.digest())
        await writer.drain()
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()


def _rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def server_report(server: Any) -> dict[str, Any]:
    """The server endpoint's counters and limit usage."""
    endpoint = server.endpoints[0]
    return {"stats": dict(endpoint.stats), "limits": endpoint.limits()}


async def serve() -> None:
    """Serve until stdin closes; ``stats`` on stdin prints the endpoint's counters."""
    import udptcp

    server = await udptcp.start_server(_hash_handler, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    _emit({"port": port, "pid": os.getpid()})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"stats":
            _emit(server_report(server))
    server.close()


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------------- clients


async def upload(port: int, size: int, seed: int, timeout: float = 60.0) -> dict[str, Any]:
    """One client: connect (timed), send ``size`` seeded bytes, check the digest."""
    import udptcp

    data = random.Random(seed).randbytes(size)
    start = time.perf_counter()
    reader, writer = await asyncio.wait_for(udptcp.open_connection(HOST, port), timeout)
    connect = time.perf_counter() - start
    writer.write(data)
    writer.write_eof()
    digest = await asyncio.wait_for(reader.readexactly(_DIGEST), timeout)
    writer.close()
    return {
        "connect_s": connect,
        "total_s": time.perf_counter() - start,
        "intact": digest == hashlib.sha256(data).digest(),
    }


def start_flooder(port: int, seconds: float, rate: float, seed: int) -> subprocess.Popen[str]:
    """The flooder as a separate process (``python -m benchmarks.synflood flood``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.synflood", "flood", "--port", str(port),
         "--seconds", str(seconds), "--rate", str(rate), "--seed", str(seed)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.synflood", "serve"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdin is not None and server.stdout is not None
    try:
        hello = json.loads(await loop.run_in_executor(None, server.stdout.readline))
        port, pid = hello["port"], hello["pid"]
        warm = await upload(port, args.size, seed=0)  # code paths warmed before the baseline
        baseline = _rss(pid)
        flooder = start_flooder(port, args.seconds, args.rate, args.seed)
        peak = baseline
        done = False

        async def sample() -> None:
            nonlocal peak
            while not done:
                peak = max(peak, _rss(pid))
                await asyncio.sleep(0.1)

        sampler = asyncio.ensure_future(sample())
        await asyncio.sleep(args.lead)  # the flood in full swing: the backlog is full
        spacing = (args.seconds - args.lead - 1) / max(args.clients, 1)
        tasks = []
        for i in range(args.clients):
            tasks.append(asyncio.ensure_future(upload(port, args.size, seed=i + 1)))
            await asyncio.sleep(spacing)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        flood_out, _ = await loop.run_in_executor(None, flooder.communicate)
        done = True
        await sampler
        server.stdin.write("stats\n")
        server.stdin.flush()
        report = json.loads(await loop.run_in_executor(None, server.stdout.readline))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    ok = [r for r in results if isinstance(r, dict)]
    connects = [r["connect_s"] for r in ok]
    return {
        "flood": json.loads(flood_out),
        "clients": args.clients,
        "connected": len(ok),
        "intact": sum(1 for r in ok if r["intact"]),
        "failures": [repr(r) for r in results if not isinstance(r, dict)],
        "connect_s_max": max(connects, default=None),
        "connect_s_median": statistics.median(connects) if connects else None,
        "connect_s_all": [round(c, 4) for c in connects],
        "upload_s_max": max((r["total_s"] for r in ok), default=None),
        "warmup_connect_s": warm["connect_s"],
        "rss_baseline_mb": baseline / 2**20,
        "rss_growth_mb": (peak - baseline) / 2**20,
        "server": report,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.synflood", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    fl = sub.add_parser("flood", help="send forged SYNs (the flooder process)")
    fl.add_argument("--port", type=int, required=True)
    fl.add_argument("--seconds", type=float, default=10.0)
    fl.add_argument("--rate", type=float, default=12_000.0)
    fl.add_argument("--seed", type=int, default=1)
    sub.add_parser("serve", help="the server process")
    parser.add_argument("--seconds", type=float, default=10.0, help="flood duration")
    parser.add_argument("--rate", type=float, default=12_000.0, help="forged SYNs per second")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024 * 1024, help="bytes each uploads")
    parser.add_argument("--lead", type=float, default=1.0, help="flood time before clients")
    parser.add_argument("--seed", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        asyncio.run(serve())
        return 0
    reason = raw_socket_available()
    if reason is not None:
        print(f"synflood: skipped: {reason}", file=sys.stderr)
        return 2
    if args.command == "flood":
        _emit(flood(args.port, args.seconds, args.rate, args.seed))
        return 0
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    good = result["intact"] == result["clients"]
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
