"""``python -m benchmarks.natlab``: the NAT traversal acceptance, in full.

Runs each case ``--runs`` times (20 by default) in the kernel lab (real nftables NATs in
network namespaces, coturn; needs root) or with ``--emulator`` in the user-space NAT
emulator (no root), and prints one line per case: how many runs took the expected path,
set-up times (from the moment both peers had called), and failures. ``--json FILE``
writes every run.

Cases:

* ``cone``: cone/cone, 5 MB each way, expected "direct";
* ``cone-late``: the same with peer 2 calling 1 s after peer 1;
* ``symmetric-turn`` / ``cone-symmetric-turn``: with coturn, 5 MB each way, "relayed";
* ``symmetric``: symmetric/symmetric without TURN, expected NATTraversalError within
  ``timeout`` naming each candidate;
* ``idle``: cone/cone, NAT binding timeout 10 s, connection idle 60 s with the default
  configuration; expected: both directions still deliver, the next message within 100 ms
  (one run: it takes a minute);
* ``cone-secure`` / ``cone-late-secure`` / ``symmetric-turn-secure``: the cases above in
  secure mode, both peers pinning each other's key (Noise IK);
* ``impostor``: cone/cone, a third identity in the second peer's place; expected
  ``SecureHandshakeError`` on both sides within ``timeout``.

Figures are measurements, not pass/fail thresholds in the test suite (``tests/nat`` runs
short versions of the same cases).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import udptcp
from udptcp.tools import natemu
from udptcp.tools.natcases import (
    EmulatorEnv,
    KernelEnv,
    close_pairs,
    connect_pair,
    idle_then_message,
)
from udptcp.tools.natlab import NatLab, coturn_unavailable, lab_unavailable

CASES: dict[str, dict[str, Any]] = {
    "cone": {"kinds": ("cone", "cone"), "payload": 5_000_000, "expect": "direct"},
    "cone-late": {"kinds": ("cone", "cone"), "payload": 5_000_000, "late": 1.0, "expect": "direct"},
    "symmetric-turn": {
        "kinds": ("symmetric", "symmetric"),
        "payload": 5_000_000,
        "turn": True,
        "expect": "relayed",
    },
    "cone-symmetric-turn": {
        "kinds": ("cone", "symmetric"),
        "payload": 5_000_000,
        "turn": True,
        "expect": "relayed",
    },
    "symmetric": {"kinds": ("symmetric", "symmetric"), "expect": "error"},
    "idle": {"kinds": ("cone", "cone"), "binding_timeout": 10, "idle": 60.0, "expect": "idle"},
}
for _name in ("cone", "cone-late", "symmetric-turn"):
    CASES[f"{_name}-secure"] = {**CASES[_name], "secure": "mutual"}
CASES["impostor"] = {"kinds": ("cone", "cone"), "secure": "impostor", "expect": "refused"}
_IDENTITIES = [udptcp.Identity.from_private_bytes(bytes([i]) * 32) for i in (1, 2, 3)]


def _keys(case: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each peer's secure-mode keywords for ``case``."""
    alice, bob, mallory = _IDENTITIES
    if case.get("secure") == "mutual":
        return (
            {"identity": alice, "peer_key": bob.public_key},
            {"identity": bob, "peer_key": alice.public_key},
        )
    if case.get("secure") == "impostor":
        return (
            {"identity": alice, "peer_key": bob.public_key},
            {"identity": mallory, "peer_key": alice.public_key},
        )
    return {}, {}


PRESETS = {"cone": natemu.CONE, "symmetric": natemu.SYMMETRIC}


def _env(case: dict[str, Any], emulator: bool, seed: int) -> Any:
    kinds = case["kinds"]
    if emulator:
        behaviours = [PRESETS[k] for k in kinds]
        if case.get("binding_timeout"):
            behaviours = [
                natemu.Behaviour(
                    mapping=b.mapping,
                    filtering=b.filtering,
                    port=b.port,
                    timeout=case["binding_timeout"],
                )  # fmt: skip
                for b in behaviours
            ]
        return EmulatorEnv(*behaviours, turn=case.get("turn", False), seed=seed)
    lab = NatLab(*kinds, binding_timeout=case.get("binding_timeout"), turn=case.get("turn", False))
    return _KernelScope(lab)


class _KernelScope:
    def __init__(self, lab: NatLab) -> None:
        self.lab = lab

    async def __aenter__(self) -> KernelEnv:
        self.lab.up()
        self.env = KernelEnv(self.lab)
        return await self.env.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        await self.env.__aexit__(*exc)
        self.lab.down()


async def run_case(name: str, emulator: bool, run: int, timeout: float) -> dict[str, Any]:
    case = CASES[name]
    out: dict[str, Any] = {"case": name, "run": run}
    async with _env(case, emulator, seed=run) as env:
        if case["expect"] == "idle":
            pairs: list[Any] = []
            a, b = await connect_pair(env, session=f"{name}-{run}", timeout=timeout, keep=pairs)
            out["paths"] = [a.path, b.path]
            if a.error or b.error:
                out["errors"] = [repr(a.error), repr(b.error)]
                return out
            arrived, latency = await idle_then_message(pairs, idle=case["idle"])
            out["arrived"] = arrived
            out["latency"] = latency
            out["ok"] = arrived == [True, True] and all(t is not None and t < 0.1 for t in latency)
            await close_pairs(pairs)
            return out
        a, b = await connect_pair(
            env,
            session=f"{name}-{run}",
            late=case.get("late", 0.0),
            payload=case.get("payload", 0),
            timeout=timeout,
            peer_kwargs=_keys(case),
        )
    out["paths"] = [a.path, b.path]
    out["setup"] = [a.setup, b.setup]
    out["elapsed"] = [a.elapsed, b.elapsed]
    out["intact"] = [a.intact, b.intact]
    out["errors"] = [repr(r.error) if r.error else None for r in (a, b)]
    if case["expect"] == "error":
        out["ok"] = all(
            isinstance(r.error, udptcp.NATTraversalError)
            and r.elapsed <= timeout
            and all(x.outcome for x in r.error.attempts)
            and len(r.error.attempts) >= 2
            for r in (a, b)
        )
    elif case["expect"] == "refused":
        out["ok"] = all(
            isinstance(r.error, udptcp.SecureHandshakeError) and r.elapsed <= timeout
            for r in (a, b)
        )
    else:
        out["ok"] = out["paths"] == [case["expect"]] * 2 and out["intact"] == [True, True]
        if case.get("secure"):
            out["ok"] = out["ok"] and a.secure is not None and b.secure is not None
    return out


def summarise(name: str, runs: list[dict[str, Any]]) -> str:
    ok = sum(1 for r in runs if r.get("ok"))
    line = f"{name:22s} {ok}/{len(runs)} as expected ({CASES[name]['expect']})"
    setups = [
        max(s for s in r["setup"] if s is not None)
        for r in runs
        if r.get("setup") and all(s is not None for s in r["setup"])
    ]
    if setups:
        line += (
            f"; set-up after both called: median {statistics.median(setups) * 1000:.0f} ms,"
            f" max {max(setups) * 1000:.0f} ms"
        )
    elapsed = [max(r["elapsed"]) for r in runs if r.get("elapsed")]
    if CASES[name]["expect"] in ("error", "refused") and elapsed:
        line += f"; error after max {max(elapsed):.2f} s"
    latencies = [t for r in runs for t in r.get("latency", []) if t is not None]
    if latencies:
        line += f"; next message after the idle: max {max(latencies) * 1000:.1f} ms"
    bad = [r for r in runs if not r.get("ok")]
    if bad:
        line += f"; first failure: {bad[0]}"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.natlab", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated (default all)")
    parser.add_argument("--emulator", action="store_true", help="user-space NATs (no root)")
    parser.add_argument("--timeout", type=float, default=10.0, help="open_peer_connection timeout")
    parser.add_argument("--json", help="write every run here")
    args = parser.parse_args(argv)
    if not args.emulator and (why := lab_unavailable()):
        print(f"kernel lab unavailable: {why} (try --emulator)", file=sys.stderr)
        return 2
    results: dict[str, list[dict[str, Any]]] = {}
    started = time.monotonic()
    print(f"udptcp {udptcp.__version__}, {'emulator' if args.emulator else 'kernel lab'}")
    for name in args.cases.split(","):
        case = CASES[name]
        if case.get("turn") and (why := coturn_unavailable()):
            print(f"{name:22s} skipped: {why}")
            continue
        runs = 1 if case["expect"] == "idle" else args.runs
        results[name] = [
            asyncio.run(run_case(name, args.emulator, run, args.timeout)) for run in range(runs)
        ]
        print(summarise(name, results[name]), flush=True)
    print(f"wall time {time.monotonic() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0 if all(r.get("ok") for runs in results.values() for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
