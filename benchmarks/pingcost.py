"""Where a ping-pong round trip's microseconds go, measured in one process.

    python -m benchmarks.pingcost                      # both loops, udptcp and plain UDP
    python -m benchmarks.pingcost --loop uvloop --profile 25
    strace -c -f python -m benchmarks.pingcost --loop uvloop --peers udptcp   # system calls

The ``pingpong`` scenario of ``python -m benchmarks`` runs client and server in two
processes, so its figure includes two scheduler wake-ups per round trip, and on a busy
machine whatever else runs. Here a udptcp client and a udptcp echo server share one event
loop (and plain UDP datagram endpoints do the same for the floor), so what is left is the
CPU both sides spend per round trip (``core``: the same exchange between two sans-I/O
connections in memory, codec included, so the rest is the asyncio adapter): ``us/rt`` is wall time per round trip (one process, so
close to the CPU time, ``cpu us/rt``). Per round trip it also counts what the endpoints did:
datagrams sent, timer (re)arms and timer wake-ups (``stale`` ones found nothing due). For a
1-byte echo the floor is 2 datagrams, no timer arm and no wake-up. ``--profile N`` prints the
top N functions by own time (cProfile, CPU clock). A measuring tool: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from typing import Any

import udptcp
from udptcp.aio.endpoint import open_endpoints
from udptcp.core.config import Config
from udptcp.core.segment import decode, encode
from udptcp.tools.simnet import connected_pair

from .common import LOOPS, run_on_loop

COUNTERS = ("datagrams_out", "timer_arms", "timer_wakeups", "timer_stale")


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


class _Pinger(asyncio.Protocol):
    def __init__(self) -> None:
        self.left = 0
        self.done: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.left -= 1
        if self.left > 0:
            self.transport.write(b"!")  # type: ignore[attr-defined]
        elif self.done is not None and not self.done.done():
            self.done.set_result(None)

    async def run(self, rounds: int) -> None:
        self.left = rounds
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(b"!")  # type: ignore[attr-defined]
        await self.done


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


class _UdpPinger(asyncio.DatagramProtocol, _Pinger):
    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.left -= 1
        if self.left > 0:
            self.transport.sendto(b"!")  # type: ignore[attr-defined]
        elif self.done is not None and not self.done.done():
            self.done.set_result(None)

    async def run(self, rounds: int) -> None:
        self.left = rounds
        self.done = asyncio.get_running_loop().create_future()
        self.transport.sendto(b"!")  # type: ignore[attr-defined]
        await self.done


def _counts() -> dict[str, int]:
    total = dict.fromkeys(COUNTERS, 0)
    for endpoint in open_endpoints():
        for name in COUNTERS:
            total[name] += endpoint.stats.get(name, 0)
    return total


async def _udptcp(rounds: int, warmup: int, profile: cProfile.Profile | None) -> dict[str, Any]:
    server = await udptcp.create_server(_Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, pinger = await udptcp.create_connection(_Pinger, "127.0.0.1", port)
    await pinger.run(warmup)
    before = _counts()
    result = await _timed(pinger, rounds, profile)
    after = _counts()
    for name in COUNTERS:
        result[name] = (after[name] - before[name]) / rounds
    transport.close()
    server.close()
    await server.wait_closed()
    return result


async def _core(rounds: int, warmup: int, profile: cProfile.Profile | None) -> dict[str, Any]:
    """The sans-I/O part alone: two connections in memory, each segment encoded and decoded
    as the endpoint would, no sockets and no event loop work."""
    a, b = connected_pair(Config())
    now = 0.0

    def run(n: int) -> None:
        nonlocal now
        for _ in range(n):
            for src, dst, data in ((a, b, b"!"), (b, a, b"!")):
                now += 1e-4
                src.send(data, now)
                wire = [encode(seg) for seg in src.take_segments()]
                src.get_timer()
                dst.receive_many([decode(w) for w in wire], now)
                dst.take_events()
                dst.get_timer()

    run(warmup)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    run(rounds)
    if profile is not None:
        profile.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"us/rt": wall / rounds * 1e6, "cpu us/rt": cpu / rounds * 1e6}


async def _udp(rounds: int, warmup: int, profile: cProfile.Profile | None) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    server, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("127.0.0.1", 0))
    port = server.get_extra_info("sockname")[1]
    client, pinger = await loop.create_datagram_endpoint(
        _UdpPinger, remote_addr=("127.0.0.1", port)
    )
    await pinger.run(warmup)
    result = await _timed(pinger, rounds, profile)
    client.close()
    server.close()
    return result


async def _timed(pinger: _Pinger, rounds: int, profile: cProfile.Profile | None) -> dict[str, Any]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    await pinger.run(rounds)
    if profile is not None:
        profile.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"us/rt": wall / rounds * 1e6, "cpu us/rt": cpu / rounds * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pingcost")
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop", choices=LOOPS, action="append", default=None)
    parser.add_argument("--peers", default="udp,udptcp,core")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    peers = {"udp": _udp, "udptcp": _udptcp, "core": _core}
    chosen = [p for p in args.peers.split(",") if p]
    speedups = getattr(udptcp, "__speedups__", False)  # older trees: pure Python
    compiled = getattr(udptcp, "__compiled__", False)
    print(
        f"speedups: {speedups}; compiled engine: {compiled}; "
        f"{args.rounds} round trips, best of {args.repeat}"
    )
    for loop_name in args.loop or LOOPS:
        for peer in chosen:
            best: dict[str, Any] | None = None
            profile = cProfile.Profile(time.process_time) if args.profile else None
            for _ in range(args.repeat):
                result = run_on_loop(loop_name, peers[peer](args.rounds, args.warmup, profile))
                if best is None or result["us/rt"] < best["us/rt"]:
                    best = result
            assert best is not None
            cells = "  ".join(f"{k} {v:.2f}" for k, v in best.items())
            print(f"{loop_name:8} {peer:7} {cells}")
            if profile is not None:
                pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
