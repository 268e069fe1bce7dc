"""Where a connect+close's microseconds go, measured in one process.

    python -m benchmarks.connectcost                    # both loops, udptcp, core and TCP
    python -m benchmarks.connectcost --loop uvloop --profile 25
    python -m benchmarks.connectcost --peers udptcp --objects   # allocations per connection

The ``connect`` scenario of ``python -m benchmarks`` runs client and server in two
processes and counts connects per second of wall time, so its figure moves with the machine's
load and its scheduler. Here a udptcp client and a udptcp server share one event loop, and the
figure is CPU time (``process_time``) per connection, both sides together: the client's
``create_connection`` (three-way handshake complete), then ``close()``, with the closing
handshake finishing in the background as in the scenario. After the last connect the run waits
until every connection has reached TIME-WAIT or CLOSED on both sides, so the closes are paid
for too. ``core`` is the same life between two sans-I/O connections in memory (SYN, SYN-ACK,
ACK, then FIN, ACK, FIN, ACK; codec included, no sockets, no loop), so ``udptcp`` minus
``core`` is the asyncio adapter's share. ``tcp`` is asyncio over kernel TCP in the same
process, for scale.

Per connection it also counts datagrams sent, timer arms and wake-ups, Python function calls
(``--calls``, through ``sys.setprofile``, which slows the run: its time is not reported) and
the objects still allocated and allocations made (``--objects``, through ``tracemalloc``).
``--profile N`` prints the top N functions by own time (cProfile, CPU clock). A measuring
tool: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import udptcp
from udptcp.aio.endpoint import open_endpoints
from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.segment import decode, encode

from .common import LOOPS, run_on_loop

COUNTERS = ("datagrams_out", "timer_arms", "timer_wakeups")

#: Connections a run makes: each measured block of ``--connects`` is a fresh server and
#: client endpoint pair (TIME-WAIT records build up over a run as they do in the scenario).
Connect = Callable[[], Awaitable[None]]


def _counts() -> dict[str, int]:
    total = dict.fromkeys(COUNTERS, 0)
    for endpoint in open_endpoints():
        for name in COUNTERS:
            total[name] += endpoint.stats.get(name, 0)
    return total


async def _settled() -> None:
    """Wait until no connection of the loop is closing any more (TIME-WAIT records aside)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while loop.time() < deadline:
        busy = [
            t
            for e in open_endpoints()
            for t in e.connections()
            if t.conn.state not in (State.TIME_WAIT, State.CLOSED)
            and (t.listener is None or t.is_closing())
        ]
        if not busy:
            return
        await asyncio.sleep(0)


async def _measure(
    connects: int, warmup: int, connect: Connect, settle: Callable[[], Awaitable[None]], opts: Any
) -> dict[str, Any]:
    for _ in range(warmup):
        await connect()
    await settle()
    before = _counts()
    result: dict[str, Any] = {}
    if opts.objects:
        gc.collect()
        tracemalloc.start()
        snap0 = tracemalloc.take_snapshot()
    calls = [0]
    if opts.calls:

        def count(frame: Any, event: str, arg: Any) -> None:
            if event == "call" or event == "c_call":
                calls[0] += 1

        sys.setprofile(count)
    profile = opts.profiler
    if profile is not None:
        profile.enable()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(connects):
        await connect()
    await settle()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if profile is not None:
        profile.disable()
    if opts.calls:
        sys.setprofile(None)
        result["calls/conn"] = calls[0] / connects
    else:
        result["us/conn"] = wall / connects * 1e6
        result["cpu us/conn"] = cpu / connects * 1e6
    if opts.objects:
        snap1 = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = snap1.compare_to(snap0, "lineno")
        result["allocs/conn"] = sum(max(s.count_diff, 0) for s in stats) / connects
        result["KB kept/conn"] = sum(s.size_diff for s in stats) / connects / 1024
        if opts.objects_top:
            print("  allocation sites still holding memory, per connection:")
            for s in sorted(stats, key=lambda s: -s.count_diff)[: opts.objects_top]:
                frame = s.traceback[0]
                print(f"    {s.count_diff / connects:7.2f} {frame.filename}:{frame.lineno}")
    after = _counts()
    for name in COUNTERS:
        if after[name] or before[name]:
            result[name.replace("datagrams_out", "dgrams") + "/conn"] = (
                after[name] - before[name]
            ) / connects
    return result


async def _udptcp(connects: int, warmup: int, opts: Any) -> dict[str, Any]:
    server = await udptcp.create_server(
        asyncio.Protocol,
        "127.0.0.1",
        0,
        config=Config(max_connections=1 << 20, max_connections_per_address=1 << 20),
    )
    port = server.sockets[0].getsockname()[1]

    async def connect() -> None:
        transport, _ = await udptcp.create_connection(asyncio.Protocol, "127.0.0.1", port)
        transport.close()

    result = await _measure(connects, warmup, connect, _settled, opts)
    server.close()
    await server.wait_closed()
    return result


async def _tcp(connects: int, warmup: int, opts: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def connect() -> None:
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        transport.close()

    async def settle() -> None:
        for _ in range(3):
            await asyncio.sleep(0)

    result = await _measure(connects, warmup, connect, settle, opts)
    server.close()
    await server.wait_closed()
    return result


def _carry(src: Connection, dst: Connection, now: float) -> int:
    wire = [encode(seg) for seg in src.take_segments()]
    src.get_timer()
    if wire:
        dst.receive_many([decode(w) for w in wire], now)
        dst.take_events()
        dst.get_timer()
    return len(wire)


async def _core(connects: int, warmup: int, opts: Any) -> dict[str, Any]:
    """The sans-I/O part alone: the connection's whole life between two Connections in
    memory, each segment encoded and decoded as the endpoint would."""
    config = Config()
    clock = [0.0]

    async def connect() -> None:
        now = clock[0] = clock[0] + 1e-3
        a = Connection.connect(
            config, local_port=50000, remote_port=2000, iss=100, mss=1452, now=now
        )
        (syn,) = a.take_segments()
        b = Connection.accept(config, decode(encode(syn)), iss=900_000, mss=1452, now=now)
        b.take_events()
        _carry(b, a, now)  # SYN-ACK
        _carry(a, b, now)  # ACK
        a.close(now)
        _carry(a, b, now)  # FIN
        _carry(b, a, now)  # its ACK
        b.close(now)
        _carry(b, a, now)  # the server's FIN
        _carry(a, b, now)  # its ACK: the client in TIME-WAIT, the server CLOSED
        assert a.state is State.TIME_WAIT and b.state is State.CLOSED, (a.state, b.state)

    async def settle() -> None:
        return None

    return await _measure(connects, warmup, connect, settle, opts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.connectcost")
    parser.add_argument("--connects", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop", choices=LOOPS, action="append", default=None)
    parser.add_argument("--peers", default="udptcp,core,tcp")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--calls", action="store_true", help="count Python calls instead")
    parser.add_argument("--objects", action="store_true", help="count allocations too")
    parser.add_argument("--objects-top", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    peers = {"udptcp": _udptcp, "core": _core, "tcp": _tcp}
    chosen = [p for p in args.peers.split(",") if p]
    speedups = getattr(udptcp, "__speedups__", False)
    print(f"speedups: {speedups}; {args.connects} connect+close, best of {args.repeat}")
    for loop_name in args.loop or LOOPS:
        for peer in chosen:
            best: dict[str, Any] | None = None
            args.profiler = cProfile.Profile(time.process_time) if args.profile else None
            for _ in range(args.repeat):
                result = run_on_loop(loop_name, peers[peer](args.connects, args.warmup, args))
                key = "calls/conn" if args.calls else "cpu us/conn"
                if best is None or result[key] < best[key]:
                    best = result
            assert best is not None
            cells = "  ".join(f"{k} {v:.2f}" for k, v in best.items())
            print(f"{loop_name:8} {peer:7} {cells}", flush=True)
            if args.profiler is not None:
                pstats.Stats(args.profiler).sort_stats("tottime").print_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
