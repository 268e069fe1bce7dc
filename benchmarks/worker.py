"""One side of one measurement, run as a subprocess by :mod:`benchmarks.runner`.

    python -m benchmarks.worker serve PEER --loop L [--tracemalloc] [--profile FILE]
    python -m benchmarks.worker client PEER SCENARIO --loop L --port P --params JSON
    python -m benchmarks.worker rawrecv MODE --loop L --seconds S
    python -m benchmarks.worker blast --port P --seconds S [--gso]

A worker talks to the runner in JSON lines on stdout (``ready``, ``result``, ``memory``,
``error``); it reads commands from stdin, and end of stdin tells it to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import sys
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

from .common import (
    HOST,
    ServerApp,
    ServerStats,
    emit,
    raise_open_files_limit,
    rss_bytes,
    run_on_loop,
    stream_server_handler,
)
from .peers import PEERS, load
from .peers.base import Unsupported

PROFILE_TOP = 25


def _stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str | None]:
    """Stdin lines as they come (None at end of input), read by a daemon thread."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.strip())
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, daemon=True, name="stdin").start()
    return queue


async def _until_stdin_closes(queue: asyncio.Queue[str | None]) -> None:
    while await queue.get() is not None:
        pass


def _memory(stats: ServerStats) -> dict[str, Any]:
    gc.collect()
    gc.collect()
    report: dict[str, Any] = {"rss": rss_bytes(), "live": stats.live}
    if tracemalloc.is_tracing():
        report["traced"] = tracemalloc.get_traced_memory()[0]
        report["tracemalloc_overhead"] = tracemalloc.get_tracemalloc_memory()
    return report


async def serve(args: argparse.Namespace) -> None:
    spec = PEERS[args.peer]
    stats = ServerStats()
    server = load(spec).Server(spec.options)
    if args.reuse_port:
        # benchmarks.multicore: several server processes in one SO_REUSEPORT group.
        if args.peer != "udptcp":
            raise SystemExit("--reuse-port: udptcp peer only")
        port = await server.start(lambda: ServerApp(stats), HOST, port=args.port, reuse_port=True)
    else:
        port = await server.start(lambda: ServerApp(stats), HOST)
    stream_port = None
    if spec.streams:
        stream_port = await server.start_streams(stream_server_handler, HOST)
    commands = _stdin_lines(asyncio.get_running_loop())
    emit({"ready": True, "port": port, "stream_port": stream_port, "pid": os.getpid()})
    try:
        while (command := await commands.get()) is not None:
            if command == "memory":
                emit({"memory": _memory(stats)})
            elif command == "untrace":
                tracemalloc.stop()  # tracing every allocation would inflate a CPU window
                emit({"untraced": True})
            elif command == "stats":
                emit({"stats": {**vars(stats), "time": time.monotonic()}})
    finally:
        await server.aclose()


async def client(args: argparse.Namespace) -> None:
    from . import scenarios

    spec = PEERS[args.peer]
    params = json.loads(args.params)
    peer = load(spec).Client(spec.options, shared_socket=args.scenario == "idle")
    port = args.stream_port if args.scenario == "bulk-streams" else args.port
    try:
        if args.scenario in scenarios.HELD:
            commands = _stdin_lines(asyncio.get_running_loop())
            result = await scenarios.HELD[args.scenario](
                peer,
                HOST,
                port,
                params,
                ready=lambda info: emit({"ready": info}),
                hold=_until_stdin_closes(commands),
            )
        else:
            result = await scenarios.SCENARIOS[args.scenario](peer, HOST, port, params)
        emit({"result": result})
    except Unsupported as exc:
        emit({"unsupported": str(exc)})
    finally:
        try:
            await asyncio.wait_for(peer.aclose(), 5)
        except (asyncio.TimeoutError, OSError):
            pass


async def rawrecv(args: argparse.Namespace) -> None:
    from .peers import rawudp

    sock = rawudp.receiver_socket(args.mode)
    emit({"ready": True, "port": sock.getsockname()[1], "pid": os.getpid()})
    emit({"result": await rawudp.receive(sock, args.mode, args.seconds)})


def blast(args: argparse.Namespace) -> None:
    from .peers import rawudp

    emit({"result": rawudp.blast(args.port, args.seconds, args.gso)})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    roles = parser.add_subparsers(dest="role", required=True)
    for name in ("serve", "client", "rawrecv", "blast"):
        sub = roles.add_parser(name)
        sub.add_argument("--loop", default="asyncio")
        sub.add_argument("--profile", default=None, metavar="FILE")
        if name in ("serve", "client"):
            sub.add_argument("peer", choices=sorted(PEERS))
        if name == "serve":
            sub.add_argument("--tracemalloc", action="store_true")
            sub.add_argument("--reuse-port", action="store_true")
            sub.add_argument("--port", type=int, default=0)
        if name == "client":
            sub.add_argument("scenario")
            sub.add_argument("--params", default="{}")
            sub.add_argument("--stream-port", type=int, default=0)
        if name in ("client", "blast"):
            sub.add_argument("--port", type=int, required=True)
        if name == "rawrecv":
            sub.add_argument("mode")
        if name in ("rawrecv", "blast"):
            sub.add_argument("--seconds", type=float, default=2.0)
        if name == "blast":
            sub.add_argument("--gso", action="store_true")
    return parser


def _profiled(profile: str | None, run: Callable[[], None]) -> None:
    if profile is None:
        run()
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        run()
    finally:
        profiler.disable()
        with open(profile, "w") as f:
            pstats.Stats(profiler, stream=f).sort_stats("tottime").print_stats(PROFILE_TOP)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    raise_open_files_limit()
    if getattr(args, "tracemalloc", False):
        tracemalloc.start()
    coro_for: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, None]]] = {
        "serve": serve,
        "client": client,
        "rawrecv": rawrecv,
    }
    try:
        if args.role == "blast":
            _profiled(args.profile, lambda: blast(args))
        else:
            coro = coro_for[args.role]
            _profiled(args.profile, lambda: run_on_loop(args.loop, coro(args)))
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        emit({"error": f"{type(exc).__name__}: {exc}"})
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
