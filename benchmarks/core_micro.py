"""Core micro-benchmark: segments per second through two connections in memory.

    python -m benchmarks.core_micro [--repeat N] [--json] [--only NAME]
    python -m benchmarks.core_micro --against DIR [--repeat N]

``--digest`` prints, per scenario, the number of segments and a hash of every segment's
header fields, options and payload length: two versions of the core that behave the same
print the same digests (``--against`` compares them too).

``--against DIR`` is an A/B comparison on a busy machine: DIR holds another ``udptcp``
package (a ``git archive`` of the base commit, say, with this file in its ``benchmarks/``);
single runs of DIR's code and of this checkout's alternate in subprocesses, so both see the
same load, and the medians are printed side by side with their ratio.

No sockets, no event loop, no codec: two :class:`udptcp.core.connection.Connection` objects
from ``udptcp.tools.simnet.connected_pair`` hand their segments to each other directly, with
a virtual clock that moves 0.1 ms per exchange (and jumps to the next deadline when nothing
is in flight). What it measures is the per-segment cost of the state machine itself:
arrival processing, ACK generation, sending, recovery bookkeeping.

Scenarios (each run: CPU time by ``time.process_time``; median of ``--repeat`` runs):

* ``bulk``: 32 MiB one way, every segment handed over with ``receive`` (header prediction
  and the run sender on the hot path).
* ``bulk_many``: 64 MiB, each flight handed over as one ``receive_many`` train.
* ``lossy``: 16 MiB with every 50th data segment dropped once (SACK recovery, RACK, TLP,
  retransmission bookkeeping).
* ``pingpong``: 20,000 one-byte requests each answered by one byte (the request/response
  path, delayed-ACK timers included).

Reported per scenario: segments processed per second (both directions counted) and the
median wall of a run. A measuring tool, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from udptcp.core.config import Config
from udptcp.core.connection import Connection
from udptcp.core.segment import Segment
from udptcp.tools.simnet import connected_pair

_STEP = 0.0001  # virtual seconds per exchange


def _config() -> Config:
    return Config(receive_buffer=4 * 1024 * 1024)


def _drain_events(conn: Connection) -> int:
    n = 0
    for ev in conn.take_events():
        data = getattr(ev, "data", None)
        if data:
            n += len(data)
    return n


def _advance(now: float, a: Connection, b: Connection) -> float:
    """Move the clock to the next deadline of either side and run their timers."""
    deadlines = [t for t in (a.get_timer(), b.get_timer()) if t is not None]
    if not deadlines:
        return now + _STEP
    now = max(now + _STEP, min(deadlines))
    for c in (a, b):
        t = c.get_timer()
        if t is not None and t <= now:
            c.handle_timer(now)
    return now


def _bulk(total: int, train: bool, drop_every: int = 0) -> int:
    a, b = connected_pair(_config())
    now = 0.0
    a.send(b"x" * total, now)
    received = 0
    segments = 0
    data_seen = 0
    dropped: set[int] = set()
    while received < total:
        out = a.take_segments()
        if drop_every:
            kept = []
            for seg in out:
                if seg.payload:
                    data_seen += 1
                    if data_seen % drop_every == 0 and seg.seq not in dropped:
                        dropped.add(seg.seq)
                        continue
                kept.append(seg)
            out = kept
        segments += len(out)
        if train and out:
            i = 0
            while i < len(out):
                i += b.receive_many(out[i:], now)
        else:
            for seg in out:
                b.receive(seg, now)
        received += _drain_events(b)
        back = b.take_segments()
        segments += len(back)
        if train and back:
            i = 0
            while i < len(back):
                i += a.receive_many(back[i:], now)
        else:
            for seg in back:
                a.receive(seg, now)
        a.take_events()
        if not out and not back:
            now = _advance(now, a, b)
        else:
            now += _STEP
    return segments


def _pingpong(rounds: int) -> int:
    a, b = connected_pair(_config())
    now = 0.0
    segments = 0
    for _ in range(rounds):
        a.send(b"q", now)
        got = 0
        while got < 1:
            out = a.take_segments()
            segments += len(out)
            for seg in out:
                b.receive(seg, now)
            got += _drain_events(b)
            if not out:
                now = _advance(now, a, b)
        b.send(b"r", now)
        got = 0
        while got < 1:
            out = b.take_segments()
            segments += len(out)
            for seg in out:
                a.receive(seg, now)
            got += _drain_events(a)
            if not out:
                now = _advance(now, a, b)
        now += _STEP
    # Whatever ACKs are still owed.
    for seg in a.take_segments():
        b.receive(seg, now)
    return segments


SCENARIOS: dict[str, Callable[[], int]] = {
    "bulk": lambda: _bulk(32 * 1024 * 1024, train=False),
    "bulk_many": lambda: _bulk(64 * 1024 * 1024, train=True),
    "lossy": lambda: _bulk(16 * 1024 * 1024, train=False, drop_every=50),
    "pingpong": lambda: _pingpong(20000),
}


def _digest_of(fn: Callable[[], int]) -> str:
    """Run ``fn`` with every segment taken hashed: ``count:sha256[:16]``."""
    original = Connection.take_segments
    h = hashlib.sha256()
    count = 0

    def take(self: Connection) -> list[Segment]:
        nonlocal count
        segments = original(self)
        for seg in segments:
            count += 1
            opts = seg.options
            fields = (seg.src_port, seg.seq, seg.ack, seg.flags, seg.window, len(seg.payload))
            extra = (opts.timestamps, opts.sack_blocks) if opts is not None else None
            h.update(repr((fields, extra)).encode())
        return segments

    Connection.take_segments = take  # type: ignore[method-assign]
    try:
        fn()
    finally:
        Connection.take_segments = original  # type: ignore[method-assign]
    return f"{count}:{h.hexdigest()[:16]}"


def digests(only: str | None = None) -> dict[str, str]:
    """One run of each scenario (or ``only``), every segment hashed (see ``_digest_of``)."""
    return {name: _digest_of(fn) for name, fn in SCENARIOS.items() if only is None or name == only}


def run(repeat: int, only: str | None = None) -> dict[str, dict[str, float]]:
    """Run every scenario (or ``only``) ``repeat`` times; medians per scenario."""
    results: dict[str, dict[str, float]] = {}
    for name, fn in SCENARIOS.items():
        if only is not None and name != only:
            continue
        rates = []
        cpus = []
        segments = 0
        for _ in range(repeat):
            start = time.process_time()
            segments = fn()
            cpu = time.process_time() - start
            cpus.append(cpu)
            rates.append(segments / cpu if cpu > 0 else 0.0)
        results[name] = {
            "segments": segments,
            "segments_per_s": statistics.median(rates),
            "cpu_s": statistics.median(cpus),
            "min_segments_per_s": min(rates),
            "max_segments_per_s": max(rates),
        }
    return results


def _one_run(cwd: str, *extra: str) -> Any:
    env = dict(os.environ, PYTHONPATH=cwd)
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.core_micro", "--repeat", "1", "--json", *extra],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def against(other: str, repeat: int) -> None:
    """Alternate single runs of ``other``'s code and this checkout's; print the medians."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rates: dict[str, dict[str, list[float]]] = {"base": {}, "this": {}}
    for _ in range(repeat):
        for label, cwd in (("base", other), ("this", here)):
            for name, r in _one_run(cwd).items():
                rates[label].setdefault(name, []).append(r["segments_per_s"])
    same = _one_run(other, "--digest") == _one_run(here, "--digest")
    print(f"{'scenario':<10} {'base seg/s':>12} {'this seg/s':>12} {'this/base':>10}")
    for name in SCENARIOS:
        base = statistics.median(rates["base"][name])
        this = statistics.median(rates["this"][name])
        print(f"{name:<10} {base:>12,.0f} {this:>12,.0f} {this / base:>10.3f}")
    print("segment digests:", "the same" if same else "DIFFERENT (the two behave differently)")


def main(argv: list[str] | None = None) -> None:
    """Command line: print a table (or JSON) of the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", choices=sorted(SCENARIOS))
    parser.add_argument("--against", metavar="DIR")
    parser.add_argument("--digest", action="store_true")
    args = parser.parse_args(argv)
    if args.digest:
        result = digests(args.only)
        print(json.dumps(result) if args.json else "\n".join(f"{k} {v}" for k, v in result.items()))
        return
    if args.against:
        against(args.against, args.repeat)
        return
    results = run(args.repeat, args.only)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'scenario':<10} {'segments':>9} {'seg/s (median)':>15} {'min':>10} {'max':>10}")
    for name, r in results.items():
        print(
            f"{name:<10} {int(r['segments']):>9} {r['segments_per_s']:>15,.0f}"
            f" {r['min_segments_per_s']:>10,.0f} {r['max_segments_per_s']:>10,.0f}"
        )


if __name__ == "__main__":
    main()
