"""Two udptcp server processes on one port (SO_REUSEPORT) against one.

    python -m benchmarks.multicore                       # connect+close and bulk, 1 vs 2
    python -m benchmarks.multicore --only connect --clients 4 --repeat 3 --loop uvloop

Also the ``multicore`` scenario of ``python -m benchmarks`` (one table in results.md), which
runs this with ``--json``.

For each case ``--clients`` client processes (each its own UDP socket, so the kernel
hashes each to one server process) run the ``connect`` scenario (sequential connect and
close) or the ``bulk`` scenario (one connection sending as fast as it may) of
``python -m benchmarks`` at the same time, against one server process or against
``--workers`` processes that share the port with ``create_server(..., reuse_port=True)``.
The figure is the sum over clients (connections per second, MB/s), with the spread the
kernel chose (connections each server process accepted). Repeats alternate between the
one-worker and the many-worker case.

Read the figures with the machine in mind: servers and clients share its cores, so on a
2-core machine two server processes compete with four clients for the same two cores, and
the ratio says little about a machine with a core per worker. A measuring tool: nothing
here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from typing import Any

from .runner import START_TIMEOUT, Worker

SCENARIO_PARAMS = {
    "connect": lambda s: {"seconds": s},
    "bulk": lambda s: {"size": 10**10, "seconds": s},
}


async def _case(
    scenario: str, workers: int, clients: int, loop: str, seconds: float
) -> dict[str, Any]:
    servers: list[Worker] = []
    running: list[Worker] = []
    try:
        port = 0
        for i in range(workers):
            args = ["-m", "benchmarks.worker", "serve", "udptcp", "--loop", loop]
            args += ["--reuse-port", "--port", str(port)]
            server = await Worker.python(f"server{i}", args).start()
            servers.append(server)
            port = int((await server.message("ready", START_TIMEOUT))["port"])
        params = json.dumps(SCENARIO_PARAMS[scenario](seconds))
        for i in range(clients):
            args = ["-m", "benchmarks.worker", "client", "udptcp", scenario, "--loop", loop]
            args += ["--port", str(port), "--params", params]
            running.append(await Worker.python(f"client{i}", args).start())
        results = [
            (await client.message("result", 60 + 3 * seconds))["result"] for client in running
        ]
        accepted = []
        for server in servers:
            await server.send("stats")
            accepted.append(int((await server.message("stats", 30))["stats"]["accepted"]))
        key = "per_s" if scenario == "connect" else "mbps"
        return {
            "total": sum(float(r[key]) for r in results),
            "per_client": [round(float(r[key]), 1) for r in results],
            "accepted": accepted,
        }
    finally:
        for worker in running + servers:
            await worker.stop()
        Worker.kill_all()


async def _run(args: argparse.Namespace) -> int:
    scenarios = [s for s in args.only.split(",") if s]
    load = os.getloadavg()[0]
    say = (lambda text: None) if args.json else print
    say(
        f"{args.clients} clients, {args.seconds:g} s, {args.loop}, {args.repeat} repeat(s); "
        f"load average {load:.2f} at the start"
    )
    summary: dict[str, Any] = {}
    for scenario in scenarios:
        unit = "conn/s" if scenario == "connect" else "MB/s"
        totals: dict[int, list[float]] = {1: [], args.workers: []}
        for _ in range(args.repeat):
            for workers in (1, args.workers):
                result = await _case(scenario, workers, args.clients, args.loop, args.seconds)
                totals[workers].append(result["total"])
                say(
                    f"  {scenario:8} {workers} worker(s): {result['total']:9.1f} {unit}"
                    f"  clients {result['per_client']}  accepted per worker {result['accepted']}"
                )
        one = statistics.median(totals[1])
        many = statistics.median(totals[args.workers])
        say(
            f"{scenario}: median {one:.1f} {unit} with 1 worker, {many:.1f} with "
            f"{args.workers}: {many / one:.2f}x"
        )
        summary[scenario] = {"one": one, "many": many, "ratio": many / one if one else None}
    say(f"load average {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        print(json.dumps({"multicore": summary}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multicore")
    parser.add_argument("--only", default="connect,bulk")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--json", action="store_true", help="one JSON line at the end")
    args = parser.parse_args(argv)
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
