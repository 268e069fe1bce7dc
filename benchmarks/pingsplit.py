"""Where a two-process ping-pong round trip goes: each process's CPU per round trip beside
the round trip's median.

    python -m benchmarks.pingsplit                          # udp, udptcp, tcp on both loops
    python -m benchmarks.pingsplit --loop uvloop --peers udptcp --repeat 5

The ``pingpong`` scenario's server and client workers (:mod:`benchmarks.worker`) run twice,
``--rounds`` and ``--rounds`` + ``--extra`` round trips; each process's CPU time (user +
system, from ``wait4``'s resource usage, so kernel work such as a loopback ``sendto``
counts) is told apart by the difference, start-up and imports dropping out up to their
variation (some tens of milliseconds: a few µs per round trip at the default 10,000; keep
``--extra`` large). ``cpu/rt`` is client + server CPU per round trip.

On a two-core machine the kernel runs the woken peer on the sender's CPU: the peer preempts
the sender inside ``sendto`` and the sender resumes when the peer blocks again, so the two
processes' work is serialized and the p50 comes out close to ``cpu/rt`` for every peer,
plain UDP included. A round trip's latency is then its CPU: what each side spends per
message, in a process that slept in between (colder caches than
:mod:`benchmarks.pingcost`'s one process, where both ends share one interpreter's warm
code). A measuring tool: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

from .common import LOOPS


def _cpu(pid: int) -> tuple[int, float]:
    """Wait for ``pid``; its exit status and CPU seconds (user + system)."""
    _, status, usage = os.wait4(pid, 0)
    return status, usage.ru_utime + usage.ru_stime


def _json_line(stream: Any, key: str) -> dict[str, Any]:
    for line in stream:
        message = json.loads(line)
        if key in message:
            return message  # type: ignore[no-any-return]
        if "error" in message:
            raise RuntimeError(message["error"])
    raise RuntimeError(f"worker exited without {key!r}")


def run_pair(peer: str, loop: str, rounds: int) -> dict[str, float]:
    """One server and one client worker, ``rounds`` round trips: p50 and CPU seconds."""
    worker = [sys.executable, "-m", "benchmarks.worker"]
    client: subprocess.Popen[str] | None = None
    server = subprocess.Popen(
        [*worker, "serve", peer, "--loop", loop],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        port = _json_line(server.stdout, "ready")["port"]
        params = json.dumps({"rounds": rounds, "warmup": 100})
        client = subprocess.Popen(
            [*worker, "client", peer, "pingpong", "--loop", loop, "--port", str(port)]
            + ["--params", params],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        result = _json_line(client.stdout, "result")["result"]
        client.stdout.read()
        _, client_cpu = _cpu(client.pid)
        client.returncode = 0  # reaped by wait4
        server.stdin.close()  # end of stdin: the server finishes
        server.stdout.read()
        _, server_cpu = _cpu(server.pid)
        server.returncode = 0
    finally:
        for process in (client, server):
            if process is not None and process.returncode is None:
                process.kill()
                process.wait()
    return {"p50_us": result["p50_us"], "client_s": client_cpu, "server_s": server_cpu}


def measure(peer: str, loop: str, rounds: int, extra: int) -> dict[str, float]:
    short = run_pair(peer, loop, rounds)
    long = run_pair(peer, loop, rounds + extra)
    client = (long["client_s"] - short["client_s"]) / extra * 1e6
    server = (long["server_s"] - short["server_s"]) / extra * 1e6
    return {"p50 us": long["p50_us"], "client us/rt": client, "server us/rt": server}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pingsplit")
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--extra", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop", choices=LOOPS, action="append", default=None)
    parser.add_argument("--peers", default="udp,udptcp,tcp")
    args = parser.parse_args(argv)
    print(f"{args.extra} round trips (difference of two runs), median of {args.repeat}")
    for loop in args.loop or LOOPS:
        for peer in [p for p in args.peers.split(",") if p]:
            runs = [measure(peer, loop, args.rounds, args.extra) for _ in range(args.repeat)]
            cells = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            cpu = cells["client us/rt"] + cells["server us/rt"]
            text = "  ".join(f"{k} {v:.1f}" for k, v in cells.items())
            print(f"{loop:8} {peer:8} {text}  cpu/rt {cpu:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
