"""Client-side descriptors, idle connections and TIME-WAIT: ``python -m benchmarks.clientsock``.

Measures what the client side of udptcp holds, with the server in a child process (so its
memory and CPU are measured apart):

* ``descriptors``: open descriptors of this process before and after 1,000 connects and
  closes (each client closes first, so each leaves a TIME-WAIT behind), and the UDP sockets
  that ``--connections`` concurrent client connections use;
* ``rate``: connects and closes per second (client closes first), TIME-WAIT included;
* ``time_wait``: bytes held per closed connection in TIME-WAIT (tracemalloc), against the
  bytes of a whole connection in TIME-WAIT, measured on the sans-I/O core;
* ``idle``: ``--connections`` idle connections: client bytes per connection (tracemalloc and
  RSS), then CPU of the client and server processes over ``--seconds`` (tracemalloc off),
  which takes in the keepalive probes (``Config.keepalive_idle``, 300 s by default) and
  the NAT binding keepalives (``Config.path_keepalive``, 25 s).

Prints one JSON object. Figures depend on the machine and its load: compare runs on one
machine. ``--keepalive-idle`` changes the probe interval for a what-if, ``--path-keepalive``
the NAT binding keepalive's (0 turns it off).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from typing import Any

import udptcp
from udptcp.aio.endpoint import open_endpoints
from udptcp.core.config import Config

from .common import raise_open_files_limit, rss_bytes

SERVER = """
import asyncio, sys, udptcp

class Hold(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def eof_received(self):
        return False  # close back: the client is the active closer

async def main():
    config = udptcp.Config(max_connections=100_000, max_connections_per_address=100_000,
                           keepalive_idle=float(sys.argv[2]))
    server = await udptcp.create_server(Hold, "127.0.0.1", 0, config=config,
                                        backlog=int(sys.argv[1]))
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the benchmark is done

asyncio.run(main())
"""


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _udp_rcvbuf_errors() -> int:
    """Linux's UDP RcvbufErrors counter (system-wide): datagrams dropped because a socket's
    receive buffer was full."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _connect(port: int, config: Config) -> asyncio.Transport:
    transport, _ = await udptcp.create_connection(
        asyncio.Protocol, "127.0.0.1", port, config=config
    )
    return transport


async def _connect_close(port: int, config: Config) -> None:
    transport = await _connect(port, config)
    lost = asyncio.get_running_loop().create_future()

    class Watch(asyncio.Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            if not lost.done():
                lost.set_result(None)

    transport.set_protocol(Watch())
    transport.write_eof()  # we close first: TIME-WAIT is on this side
    await asyncio.wait_for(lost, 20)


async def descriptors(port: int, config: Config, connections: int) -> dict[str, Any]:
    """Descriptors after 1,000 connects and closes; sockets under N open connections."""
    await _connect_close(port, config)  # the client socket exists from here on
    before = _open_fds()
    tracemalloc.start()
    gc.collect()
    traced_before = tracemalloc.get_traced_memory()[0]
    for _ in range(20):
        await asyncio.gather(*(_connect_close(port, config) for _ in range(50)))
    gc.collect()
    traced_after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    after = _open_fds()
    endpoints = [ep for ep in open_endpoints() if not ep.has_listeners]
    time_wait = sum(ep.limits()["time_wait"] for ep in endpoints)
    result: dict[str, Any] = {
        "fds_before_1000_closes": before,
        "fds_after_1000_closes": after,
        "time_wait_records": time_wait,
        "bytes_per_time_wait_asyncio": round((traced_after - traced_before) / max(time_wait, 1)),
    }
    for endpoint in endpoints:
        endpoint.close()  # TIME-WAIT dropped, as closing the loop would
    before = _open_fds()
    transports = []
    for first in range(0, connections, 200):
        batch = min(200, connections - first)
        transports += await asyncio.gather(*(_connect(port, config) for _ in range(batch)))
    client_endpoints = {t._endpoint for t in transports}  # type: ignore[attr-defined]
    result.update(
        concurrent_connections=len(transports),
        udp_sockets_used=len(client_endpoints),
        fds_opened_for_them=_open_fds() - before,
    )
    for transport in transports:
        transport.abort()
    await asyncio.sleep(0.5)
    return result


async def rate(port: int, config: Config, total: int = 3000) -> dict[str, Any]:
    """Connects and closes per second, 50 at a time, the client closing first (so every one
    leaves a TIME-WAIT on this side), with the garbage collector's time in it."""
    gc.collect()
    start = time.perf_counter()
    for first in range(0, total, 50):
        await asyncio.gather(*(_connect_close(port, config) for _ in range(min(50, total - first))))
    elapsed = time.perf_counter() - start
    return {"connects_and_closes": total, "per_s": round(total / elapsed)}


def time_wait_core() -> dict[str, Any]:
    """Bytes a whole Connection in TIME-WAIT holds against its record (tracemalloc), for a
    connection that moved 64 KB each way first."""
    from udptcp.core.timewait import TimeWait
    from udptcp.tools.simnet import Link, SimNet

    net = SimNet(seed=1)
    config = Config()
    a, b = net.host("a", config=config), net.host("b", listening=True, config=config)
    net.connect_hosts(a, b, Link(delay=0.001), Link(delay=0.001))
    tracemalloc.start()
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    client = a.connect(b, 80)
    net.run_until(lambda: bool(b.accepted) and b.accepted[0].state.name == "ESTABLISHED")
    server = b.accepted[0]
    a.send(client, bytes(65536))
    b.send(server, bytes(65536))
    net.run_for(1.0)
    a.close(client)
    net.run_until(lambda: server.state.name == "CLOSE_WAIT")
    b.close(server)
    net.run_until(lambda: client.state.name == "TIME_WAIT")
    gc.collect()
    with_conn = tracemalloc.get_traced_memory()[0] - start
    record = TimeWait.from_connection(client, net.now)
    gc.collect()
    with_record = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    return {
        "connection_in_time_wait_bytes": _deep_size(client, stop={id(config)}),
        "record_bytes": _deep_size(record, stop=set()),
        "record_traced_bytes": with_record - with_conn,
    }


def _deep_size(obj: object, stop: set[int]) -> int:
    """Bytes of ``obj`` and everything it reaches, shared objects left out (types,
    modules, functions, the Config, small ints)."""
    import types

    seen = set(stop)
    todo = [obj]
    total = 0
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    while todo:
        item = todo.pop()
        if id(item) in seen or isinstance(item, skip) or item is None:
            continue
        seen.add(id(item))
        if isinstance(item, int) and -5 <= item <= 256:
            continue
        total += sys.getsizeof(item)
        todo.extend(gc.get_referents(item))
    return total


async def idle(
    port: int, config: Config, connections: int, seconds: float, server_pid: int, profile: int = 0
) -> dict[str, Any]:
    """Per-connection client memory and both sides' CPU while ``connections`` sit idle."""
    gc.collect()
    tracemalloc.start()
    traced_before = tracemalloc.get_traced_memory()[0]
    rss_before = rss_bytes()
    start = time.perf_counter()
    transports: list[asyncio.Transport] = []
    for first in range(0, connections, 200):
        batch = min(200, connections - first)
        transports += await asyncio.gather(*(_connect(port, config) for _ in range(batch)))
    established = time.perf_counter() - start
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - traced_before
    overhead = tracemalloc.get_tracemalloc_memory()
    top: list[str] = []
    if profile:
        # Where the per-connection bytes are: the biggest allocation sites, per connection.
        stats = tracemalloc.take_snapshot().statistics("lineno")
        for stat in stats[:profile]:
            frame = stat.traceback[0]
            where = f"{os.path.relpath(frame.filename)}:{frame.lineno}"
            top.append(f"{stat.size / len(transports):8.0f} B/conn  {where}")
    tracemalloc.stop()
    rss = rss_bytes() - rss_before - overhead
    probes_before = _keepalive_probes(transports)
    paths_before = _path_keepalives(transports)
    cpu_client, cpu_server = time.process_time(), _cpu_seconds(server_pid)
    drops = _udp_rcvbuf_errors()
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    cpu_client = time.process_time() - cpu_client
    cpu_server = _cpu_seconds(server_pid) - cpu_server
    probes = _keepalive_probes(transports) - probes_before
    paths = _path_keepalives(transports) - paths_before
    drops = _udp_rcvbuf_errors() - drops
    alive = sum(1 for t in transports if not t.is_closing())
    for transport in transports:
        transport.abort()
    return {
        "connections": len(transports),
        "alive_after_window": alive,
        "establish_s": round(established, 2),
        "client_traced_bytes_per_conn": round(traced / len(transports)),
        "client_rss_bytes_per_conn": round(rss / len(transports)),
        "window_s": round(elapsed, 1),
        "client_keepalive_probes": probes,
        "client_path_keepalives": paths,
        "udp_rcvbuf_drops_system_wide": drops,
        "client_cpu_pct": round(100 * cpu_client / elapsed, 3),
        "server_cpu_pct": round(100 * cpu_server / elapsed, 3),
        **({"client_profile": top} if top else {}),
    }


def _path_keepalives(transports: list[asyncio.Transport]) -> int:
    """NAT binding requests the client endpoints sent (``Config.path_keepalive``)."""
    endpoints = {id(t.endpoint): t.endpoint for t in transports}  # type: ignore[attr-defined]
    return sum(e.statistics().get("nat_keepalives_sent", 0) for e in endpoints.values())


def _keepalive_probes(transports: list[asyncio.Transport]) -> int:
    total = 0
    for transport in transports:
        conn = transport.get_extra_info("udptcp_connection")
        total += conn.stats_counters["keepalive_probes"]
    return total


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    config = Config(keepalive_idle=args.keepalive_idle, path_keepalive=args.path_keepalive or None)
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.connections), str(args.keepalive_idle)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        out: dict[str, Any] = {"loop": args.loop, "connections": args.connections}
        if "descriptors" in args.parts:
            out["descriptors"] = await descriptors(port, config, args.connections)
        if "rate" in args.parts:
            out["rate"] = await rate(port, config)
        if "time_wait" in args.parts:
            out["time_wait_core"] = time_wait_core()
        if "idle" in args.parts:
            out["idle"] = await idle(
                port, config, args.connections, args.seconds, child.pid, args.profile
            )
        return out
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clientsock", description=__doc__)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="idle CPU window")
    parser.add_argument("--keepalive-idle", type=float, default=Config().keepalive_idle)
    parser.add_argument(
        "--path-keepalive", type=float, default=Config().path_keepalive, help="0: none"
    )
    parser.add_argument(
        "--profile", type=int, default=0, help="list the N biggest client allocation sites"
    )
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument(
        "--parts", nargs="+", default=["descriptors", "time_wait", "idle"],
        choices=("descriptors", "rate", "time_wait", "idle"),
    )  # fmt: skip
    args = parser.parse_args(argv)
    raise_open_files_limit()
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(main_async(args))
    else:
        result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
