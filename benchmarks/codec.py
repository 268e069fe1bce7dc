"""The segment codec alone: the pure-Python reference against the compiled twin.

    python -m benchmarks.codec                 # ns per call, pure vs compiled, one process
    python -m benchmarks.codec --module PATH   # also a third build of segment.py, e.g. mypyc's

Each case is timed with ``timeit`` (best of ``--repeat`` rounds), both implementations
interleaved in one process so machine load hits them alike. Cases: the checksum of a
1400-byte payload; encode and decode of a 1400-byte data segment with timestamps (the bulk
path), of a bare ACK with timestamps (the ping-pong and ACK path), of a SYN with MSS, window
scale, SACK-permitted and timestamps, and of an ACK carrying three SACK blocks; decode of a
datagram with a bad checksum (what a flood of garbage costs). A measuring tool: nothing
here asserts.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from udptcp.core import segment
from udptcp.core.segment import ACK, PSH, SYN


def _cases(mod: ModuleType) -> dict[str, tuple[str, Any]]:
    """The inputs, built with ``mod``'s own classes (a mypyc build has its own)."""
    Segment, Options = mod.Segment, mod.Options  # noqa: N806
    data = Segment(40000, 443, 1 << 31, 12345, ACK | PSH, 65535, Options(timestamps=(7, 9)))
    data.payload = bytes(range(256)) * 5 + bytes(120)
    ack = Segment(40000, 443, 77, 12345, ACK, 65535, Options(timestamps=(7, 9)))
    syn = Segment(
        40000,
        443,
        99,
        0,
        SYN,
        65535,
        Options(mss=1432, wscale=7, sack_permitted=True, timestamps=(1, 0)),
    )
    sack = Segment(
        40000,
        443,
        77,
        12345,
        ACK,
        65535,
        Options(timestamps=(7, 9), sack_blocks=((100, 200), (300, 400), (500, 600))),
    )
    wire = {name: segment.pure_encode(seg) for name, seg in (("data", data), ("ack", ack))}
    wire["syn"] = segment.pure_encode(syn)
    wire["sack"] = segment.pure_encode(sack)
    bad = bytearray(wire["data"])
    bad[30] ^= 0xFF
    return {
        "checksum 1400 B": ("checksum", data.payload),
        "encode data 1400 B": ("encode", data),
        "decode data 1400 B": ("decode", wire["data"]),
        "encode ACK": ("encode", ack),
        "decode ACK": ("decode", wire["ack"]),
        "encode SYN": ("encode", syn),
        "decode SYN": ("decode", wire["syn"]),
        "encode SACK ACK": ("encode", sack),
        "decode SACK ACK": ("decode", wire["sack"]),
        "decode bad checksum": ("decode", bytes(bad)),
    }


def _call(fn: Callable[[Any], Any], arg: Any) -> Callable[[], None]:
    def run() -> None:
        try:
            fn(arg)
        except ValueError:  # MalformedSegment, whichever build raised it
            pass

    return run


def _load(path: Path) -> ModuleType:
    """Import another build of segment.py (a mypyc .so, say) under its own name."""
    spec = importlib.util.spec_from_file_location(path.name.split(".")[0], path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.codec")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--module", type=Path, default=None, help="another segment.py build")
    args = parser.parse_args(argv)
    modules: dict[str, ModuleType] = {"pure": segment}
    impls: dict[str, dict[str, Callable[[Any], Any]]] = {
        "pure": {
            "checksum": segment.pure_checksum,
            "encode": segment.pure_encode,
            "decode": segment.pure_decode,
        }
    }
    if segment.SPEEDUPS:
        modules["C"] = segment
        impls["C"] = {
            "checksum": segment.checksum,
            "encode": segment.encode,
            "decode": segment.decode,
        }
    if args.module is not None:
        other = _load(args.module)
        name = args.module.name.split(".")[0]
        modules[name] = other
        impls[name] = {
            "checksum": other.checksum,
            "encode": other.encode,
            "decode": other.decode,
        }
    names = list(impls)
    cases = {n: _cases(modules[n]) for n in names}
    print(f"ns per call (best of {args.repeat} x {args.number}); speedups: {segment.SPEEDUPS}")
    print(f"{'case':<22}" + "".join(f"{n:>14}" for n in names))
    for case in cases["pure"]:
        best = {n: float("inf") for n in names}
        for _ in range(args.repeat):
            for n in names:  # interleaved, so load changes hit every implementation
                op, arg = cases[n][case]
                t = timeit.timeit(_call(impls[n][op], arg), number=args.number)
                best[n] = min(best[n], t / args.number * 1e9)
        print(f"{case:<22}" + "".join(f"{best[n]:>14.0f}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
