"""Measure udptcp side by side with kernel TCP, aioquic and KCP, and the raw UDP ceiling.

    .venv/bin/python -m benchmarks                  # everything (~15 min on 2 cores)
    .venv/bin/python -m benchmarks --quick          # smoke check (< 2 min), into scratch/
    .venv/bin/python -m benchmarks --only bulk,pingpong --peers udptcp,tcp --repeat 5
    .venv/bin/python -m benchmarks --update-readme  # also put results.md into README.md
    .venv/bin/python -m benchmarks --profile bulk udptcp uvloop

Scenarios (``--only``): bulk, bulk-streams, raw, pingpong, connect, reqresp, loss, idle,
holes (``python -m benchmarks.holes`` on its own says more), multicore (1 vs 2 server
processes on one port: ``python -m benchmarks.multicore``).

More tools: ``python -m benchmarks.codec`` (the segment codec, pure Python against the
compiled twin), ``python -m benchmarks.pingcost`` (a ping-pong round trip's CPU in one
process, the sans-I/O core apart from the asyncio adapter), ``python -m benchmarks.connectcost``
(the same for a connect+close: CPU, datagrams, calls and allocations per connection).
Peers (``--peers``): udp (ping-pong only), udptcp, udptcp-secure, udptcp-pmtu,
udptcp-nooffload, udptcp-pure (pure Python, UDPTCP_PURE=1: no compiled codec or engine),
tcp, quic, kcp.

Every measurement runs on both the default asyncio loop and uvloop, with the server and the
client in separate processes; repeats are interleaved across peers. Output in ``--out``
(default ``benchmarks/results/`` for a full run or with ``--update-readme``; a ``--quick`` or
partial run goes to the git-ignored ``benchmarks/results/scratch/``): ``results.md`` (median
and min–max per cell),
``results.json`` (every raw sample) and PNG plots. The peers come from the ``bench`` extra
(``pip install -e '.[bench]'``); a peer that does not import is reported as not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import report
from .peers import PEERS, unavailable
from .runner import ROOT, SCENARIOS, Case, Runner, Settings, Worker, describe, plan, run_cases

DEFAULT_OUT = ROOT / "benchmarks" / "results"
#: Where runs that are not the full measurement go unless asked: git-ignored, so a smoke or
#: partial run never replaces the committed results.
SCRATCH_OUT = DEFAULT_OUT / "scratch"
PROFILE_LOSS = 0.01


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").splitlines()[2:]),
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repeat")
    parser.add_argument("--repeat", type=int, default=None, metavar="N", help="runs per case")
    parser.add_argument("--only", default=None, metavar="SCENARIO[,...]")
    parser.add_argument("--peers", default=None, metavar="PEER[,...]")
    parser.add_argument("--loops", default=None, metavar="LOOP[,...]", help="asyncio,uvloop")
    parser.add_argument("--seed", type=int, default=None, help="relay seed base (default 1)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where results go (default: benchmarks/results/ for a full run or"
        " --update-readme, benchmarks/results/scratch/ for --quick and partial runs)",
    )
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=None,
        metavar="S",
        help="idle CPU window (default 10; 60 takes in udptcp's 25 s keepalive probes)",
    )
    parser.add_argument(
        "--profile",
        nargs=3,
        metavar=("SCENARIO", "PEER", "LOOP"),
        help="one run under cProfile in both processes; print the top functions",
    )
    return parser


def _split(text: str | None, allowed: list[str], what: str) -> list[str]:
    if text is None:
        return allowed
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return chosen


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.quick() if args.quick else Settings()
    if args.repeat is not None:
        settings.repeat = settings.loss_repeat = settings.idle_repeat = max(1, args.repeat)
        settings.linux_repeat = settings.repeat
    if args.seed is not None:
        settings.seed = args.seed
    if args.idle_seconds is not None:
        settings.idle_seconds = args.idle_seconds
    if args.loops is not None:
        settings.loops = tuple(_split(args.loops, ["asyncio", "uvloop"], "loop"))
    return settings


def output_dir(args: argparse.Namespace) -> Path:
    """``--out`` if given; the committed results folder only for a full run or when the
    README is to be updated; otherwise the git-ignored scratch folder."""
    if args.out is not None:
        return Path(args.out)
    partial = args.quick or any(value is not None for value in (args.only, args.peers, args.loops))
    return SCRATCH_OUT if partial and not args.update_readme else DEFAULT_OUT


def profile(args: argparse.Namespace, settings: Settings) -> int:
    scenario, peer, loop = args.profile
    _split(scenario, list(SCENARIOS), "scenario")
    if scenario != "raw":
        _split(peer, list(PEERS), "peer")
        reason = unavailable(PEERS[peer])
        if reason:
            raise SystemExit(f"{peer}: {reason}")
    case = Case(scenario, peer, loop, PROFILE_LOSS if scenario == "loss" else None)
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(settings, profile_dir=Path(tmp))
        sample = asyncio.run(runner.measure(case, 0))
        print(f"{case.label}: {describe(sample)}")
        for side in ("server", "client"):
            path = Path(tmp) / f"{side}.txt"
            print(f"\n===== {side} process: top functions by tottime =====")
            print(path.read_text() if path.exists() else "(no profile written)")
    return 0 if "error" not in sample else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    settings = _settings(args)
    if args.profile:
        return profile(args, settings)
    scenarios = _split(args.only, list(SCENARIOS), "scenario")
    peers = _split(args.peers, list(PEERS), "peer")
    cases = plan(scenarios, peers, settings)
    for key in peers:
        reason = unavailable(PEERS[key])
        if reason:
            print(f"{key}: {reason}; skipped")
    print(
        f"{len(scenarios)} scenario(s), peers {', '.join(peers)}, loops "
        f"{', '.join(settings.loops)}, {settings.repeat} repeat(s), relay seed base "
        f"{settings.seed}",
        flush=True,
    )
    print(f"results will go to {output_dir(args)}", flush=True)
    start = time.monotonic()
    load_start = report.load_average()
    interrupted = False
    try:
        asyncio.run(run_cases(Runner(settings), cases, lambda line: print(line, flush=True)))
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: writing what was measured", file=sys.stderr)
    finally:
        Worker.kill_all()
    wall = time.monotonic() - start

    meta: dict[str, Any] = dict(report.machine_info())
    meta["command"] = " ".join(["python -m benchmarks", *argv])
    meta["wall_time_min"] = wall / 60
    meta["seed"] = settings.seed
    meta["interrupted"] = interrupted
    meta["load_start"] = load_start
    meta["load_end"] = report.load_average()
    out = output_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    path = report.write(out, cases, settings, meta)
    results = report.Results(cases, settings)
    try:
        from . import plots

        for png in plots.plot_all(results, out):
            print(f"wrote {png}")
    except ImportError as exc:
        print(f"no plots: {exc}", file=sys.stderr)
    print(f"wrote {path} and {path.with_suffix('.json')}\n")
    print(path.read_text())
    if args.update_readme:
        prefix = os.path.relpath(out.resolve(), ROOT) + "/"
        report.update_readme(ROOT / "README.md", report.render(results, meta, plots=prefix))
        print(f"updated {ROOT / 'README.md'}")
    print(f"wall time {wall / 60:.1f} min")
    return 130 if interrupted else 0
