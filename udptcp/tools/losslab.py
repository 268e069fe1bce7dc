"""Linux's TCP and udptcp side by side through the same seeded, impaired path.

One *case* is an impairment applied to both directions (``loss=1%,delay=10ms``: 1 % random
loss each way and a 20 ms round trip; ``burst=4`` makes the loss bursty) and a transfer of
``size`` bytes one way, capped at ``cap`` seconds. Each stack moves the same bytes over it:

* **Linux TCP** between two network namespaces made for the run, joined by
  :class:`udptcp.tools.tunpair.TunPair` in a process of its own: every IP packet crosses the
  relay's impairment pipeline, one packet per segment (the TUN devices take no offloads;
  the counters prove it: largest packet, data segments read versus the kernel's own count).
  The congestion control is set per socket (``TCP_CONGESTION``), since a new namespace
  inherits the host's default, which may be BBR. Counters: the sender's ``TCP_INFO`` and
  ``ss -tin`` line, and the sender namespace's ``TcpExt`` counters (``/proc/net/netstat``),
  before and after.
* **udptcp** through ``python -m udptcp.tools.relay`` with the same impairment and seed, the
  receiver in a process of its own, the sender in this one; counters from the sender's
  ``get_extra_info("udptcp_stats")``.

The generators are seeded alike, so the n-th packet of a direction meets the same fate on
both paths (the stacks send different packets, so the losses hit different data).

Goodput is the bytes that reached the receiving application over the time from the first
write to the last byte's arrival (slow start included), or over ``cap`` when the transfer
did not finish. A case with no impairment at all measures the ceiling of the wire itself
(the Python forwarder or relay): a figure near it is the wire's, not the stack's.

Needs root, ``/dev/net/tun``, iproute2 and network namespaces for the Linux stacks; the
namespaces (``udptcp-lab-<random>-a``/``-b``) are deleted afterwards, and nothing is made
in the caller's namespace but loopback UDP. Run::

    python -m udptcp.tools.losslab --case "loss=1%,delay=10ms" --size 20MB --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

from .losslab_common import (
    CHUNK,
    LINUX_STACKS,
    NETNS_PREFIX,
    START_TIMEOUT,
    Case,
    Transfer,
    _finish,
    _json_line,
    _load,
    _python,
    _spawn,
    _wire_summary,
    lab_unavailable,
    payload_for,
)
from .losslab_linux import run_linux

__all__ = [
    "NETNS_PREFIX",
    "LINUX_STACKS",
    "Case",
    "Transfer",
    "lab_unavailable",
    "main",
    "run_case",
    "run_linux",
    "run_udptcp",
]

# ---------------------------------------------------------------------- udptcp


async def run_udptcp(case: Case, receive_buffer: int | None = None) -> Transfer:
    """``case`` over udptcp through the relay (see the module docs)."""
    import udptcp

    result = Transfer(case.name, "udptcp", case.size, load=_load())
    data = payload_for(case)
    config: dict[str, Any] = {}
    if receive_buffer is not None:
        config["receive_buffer"] = receive_buffer
    procs: list[asyncio.subprocess.Process] = []
    opened: list[asyncio.Transport] = []
    try:
        receiver = await _spawn(
            _python("udptcp.tools.losslab", "_receive", "--config", json.dumps(config))
        )
        procs.append(receiver)
        port = await _json_line(receiver, "port", START_TIMEOUT)
        argv = _python("udptcp.tools.relay", "--target", f"127.0.0.1:{port}", "--uvloop")
        argv += ["--both", case.impairment, "--seed", str(case.seed)]
        relay = await _spawn(argv)
        procs.append(relay)
        assert relay.stdout is not None
        line = await asyncio.wait_for(relay.stdout.readline(), START_TIMEOUT)
        match = re.match(rb"relay \S+:(\d+) ->", line)
        if match is None:
            raise RuntimeError(f"relay said {line!r}")
        relay_port = int(match.group(1))

        loop = asyncio.get_running_loop()
        can_write = asyncio.Event()
        can_write.set()

        class Source(asyncio.Protocol):
            def pause_writing(self) -> None:
                can_write.clear()

            def resume_writing(self) -> None:
                can_write.set()

            def connection_lost(self, exc: Exception | None) -> None:
                can_write.set()

        transport, _ = await asyncio.wait_for(
            udptcp.create_connection(
                Source, "127.0.0.1", relay_port, config=udptcp.Config(**config)
            ),
            START_TIMEOUT,
        )
        opened.append(transport)
        transport.set_write_buffer_limits(high=1 << 20)
        done = asyncio.ensure_future(_json_line(receiver, "done", case.cap + START_TIMEOUT))
        view = memoryview(data)
        start = time.monotonic()
        deadline = start + case.cap
        tracer = None
        if case.trace:
            tracer = asyncio.ensure_future(_trace_udptcp(transport, case.trace, start, result))
        sent = 0
        while sent < len(data) and time.monotonic() < deadline and not done.done():
            if not can_write.is_set():
                waiter = asyncio.ensure_future(can_write.wait())
                await asyncio.wait(
                    {waiter, done},
                    timeout=deadline - time.monotonic(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                continue
            transport.write(view[sent : sent + CHUNK])
            sent += CHUNK
        if sent >= len(data):
            transport.write_eof()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(done), max(deadline - time.monotonic(), 0))
        if not done.done():
            assert receiver.stdin is not None
            receiver.stdin.write(b"report\n")
        report = await done
        complete = bool(report["eof"]) and report["received"] == len(data)
        if complete:
            # Let the last ACKs in, so the counters hold the whole transfer.
            end_wait = loop.time() + 5
            while loop.time() < end_wait:
                st = transport.get_extra_info("udptcp_stats")
                if not st or not st["bytes_in_flight"]:
                    break
                await asyncio.sleep(0.01)
        stats = dict(transport.get_extra_info("udptcp_stats") or {})
        if tracer is not None:
            tracer.cancel()
        transport.abort()
        relay.send_signal(15)
        assert relay.stdout is not None
        tail = (await asyncio.wait_for(relay.stdout.read(), START_TIMEOUT)).decode()
        end = report["last"] if complete else deadline
        result.received = report["received"]
        result.seconds = max(end - start, 1e-9)
        result.complete = complete
        result.intact = report["sha256"] == hashlib.sha256(data[: report["received"]]).hexdigest()
        result.retransmits = int(stats.get("retransmits") or 0)
        result.recoveries = int(stats.get("sack_recoveries") or 0)
        result.rtos = int(stats.get("timeouts") or 0)
        result.tail_loss_probes = int(stats.get("tail_loss_probes") or 0)
        mss = int(stats.get("mss") or 1)
        result.cwnd_segments = round(int(stats.get("cwnd") or 0) / mss, 1)
        result.srtt_ms = float(stats.get("srtt") or 0) * 1000
        result.counters = {
            "udptcp_stats": stats,
            "receiver_stats": report.get("stats", {}),
            "config": config,
        }
        result.wire = _wire_summary(_relay_final(tail))
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        for tr in opened:
            tr.abort()
        for proc in reversed(procs):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(15)
            await _finish(proc)
    return result


async def _trace_udptcp(
    transport: asyncio.Transport, every: float, start: float, result: Transfer
) -> None:
    """Sample the sender's window and counters every ``every`` seconds into ``result``."""
    while True:
        await asyncio.sleep(every)
        st = transport.get_extra_info("udptcp_stats")
        if not st:
            return
        mss = int(st["mss"] or 1)
        conn = transport.get_extra_info("udptcp_connection")
        result.trace.append(
            {
                "t": round(time.monotonic() - start, 4),
                "cwnd": round(int(st["cwnd"]) / mss, 1),
                "ssthresh": round(min(int(st["ssthresh"]), 1 << 30) / mss, 1),
                "retrans": st["retransmits"],
                "ca_state": int(bool(getattr(conn, "_in_recovery", False))),
                "rtt_ms": round(float(st["srtt"] or 0) * 1000, 1),
                "acked": st["bytes_acked"],
            }
        )


def _relay_final(text: str) -> dict[str, dict[str, int]]:
    """The relay's ``[final]`` counter lines, as the Linux wire reports them."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        match = re.match(r"\[final\] (forward|backward):\s+(.*)", line)
        if match:
            pairs = (item.split("=") for item in match.group(2).split())
            out[match.group(1)] = {k: int(v) for k, v in pairs}
    if set(out) != {"forward", "backward"}:
        raise RuntimeError(f"no final relay counters in {text[-300:]!r}")
    return out


async def _receive(config: dict[str, Any]) -> None:
    """The udptcp receiving side (``_receive`` subcommand): one connection, read to EOF or
    until ``report`` on stdin; prints ``done`` with the count, digest and last arrival."""
    import udptcp

    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    state: dict[str, Any] = {"received": 0, "last": 0.0, "eof": False}
    digest = hashlib.sha256()
    transports: list[asyncio.Transport] = []

    class Sink(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transports.append(transport)  # type: ignore[arg-type]

        def data_received(self, data: bytes) -> None:
            state["received"] += len(data)
            state["last"] = time.monotonic()
            digest.update(data)

        def eof_received(self) -> bool:
            state["eof"] = True
            if not done.done():
                done.set_result(None)
            return True

        def connection_lost(self, exc: Exception | None) -> None:
            if not done.done():
                done.set_result(None)

    server = await udptcp.create_server(Sink, "127.0.0.1", 0, config=udptcp.Config(**config))
    _emit({"port": server.sockets[0].getsockname()[1]})

    def on_stdin() -> None:
        line = sys.stdin.readline()
        if (not line or line.strip() == "report") and not done.done():
            done.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await done
    loop.remove_reader(sys.stdin.fileno())
    stats = transports[0].get_extra_info("udptcp_stats") if transports else {}
    _emit({"done": {**state, "sha256": digest.hexdigest(), "stats": stats}})
    for transport in transports:
        transport.close()
    server.close()
    # Stay until the parent is done with us (end of stdin), answering the last segments.
    await loop.run_in_executor(None, sys.stdin.read)


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------------- running cases


async def run_case(
    case: Case, stacks: Sequence[str], receive_buffer: int | None = None
) -> list[Transfer]:
    """Every stack on ``case``, one after the other."""
    out = []
    for stack in stacks:
        if stack == "udptcp":
            out.append(await run_udptcp(case, receive_buffer))
        else:
            out.append(await run_linux(case, stack))
    return out


def row(t: Transfer) -> dict[str, str]:
    """One line of the table."""
    fwd, back = t.wire.get("forward", {}), t.wire.get("backward", {})
    return {
        "case": t.case,
        "stack": t.stack,
        "MB/s": f"{t.goodput / 1e6:.2f}",
        "MB": f"{t.received / 1e6:.1f}",
        "s": f"{t.seconds:.2f}",
        "done": "yes" if t.complete else "cap",
        "intact": "yes" if t.intact else "NO",
        "retx": str(t.retransmits),
        "recov": str(t.recoveries),
        "RTOs": str(t.rtos),
        "TLPs": str(t.tail_loss_probes),
        "cwnd": f"{t.cwnd_segments:g}",
        "srtt ms": f"{t.srtt_ms:.1f}",
        "loss fwd/back": (
            f"{fwd.get('loss_rate', 0):.2%}/{back.get('loss_rate', 0):.2%}" if t.wire else "-"
        ),
        "pkts fwd": str(fwd.get("packets", "-")),
        "largest": str(fwd.get("largest", "-")),
        "load": t.load,
        "error": t.error[:60],
    }


def table(rows: Sequence[dict[str, str]]) -> str:
    """A Markdown table of rows sharing keys."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "|".join(" --- " for _ in keys) + "|"]
    lines += ["| " + " | ".join(r[k] for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def _size(text: str) -> int:
    match = re.fullmatch(r"([0-9.]+)\s*(k|kb|m|mb|g|gb)?", text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    unit = {"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9}.get(match[2] or "", 1)
    return int(float(match[1]) * unit)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m udptcp.tools.losslab``: run cases, print a table (and JSON)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_receive"]:
        sub = argparse.ArgumentParser()
        sub.add_argument("--config", default="{}")
        args = sub.parse_args(argv[1:])
        import uvloop

        uvloop.run(_receive(json.loads(args.config)))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m udptcp.tools.losslab",
        description=(__doc__ or "").splitlines()[0],
        epilog="Stacks: udptcp, " + ", ".join(LINUX_STACKS),
    )
    parser.add_argument(
        "--case",
        action="append",
        default=[],
        metavar="SPEC",
        help="impairment for both directions, e.g. loss=1%%,delay=10ms (repeatable)",
    )
    parser.add_argument("--size", type=_size, default=20_000_000)
    parser.add_argument("--cap", type=float, default=60.0, help="seconds per transfer")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stacks", default="linux-cubic,udptcp")
    parser.add_argument("--receive-buffer", type=_size, default=None, help="udptcp's")
    parser.add_argument("--json", default=None, metavar="FILE")
    parser.add_argument(
        "--trace", type=float, default=0.0, metavar="S", help="sample the sender every S s"
    )
    args = parser.parse_args(argv)
    stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    for stack in stacks:
        if stack != "udptcp" and stack not in LINUX_STACKS:
            parser.error(f"unknown stack {stack!r}")
    if any(s in LINUX_STACKS for s in stacks) and (why := lab_unavailable()):
        parser.error(why)
    cases = [
        Case(spec or "no impairment", spec, args.size, args.cap, args.seed, args.trace)
        for spec in (args.case or [""])
    ]

    async def run() -> list[Transfer]:
        done = []
        for case in cases:
            for t in await run_case(case, stacks, args.receive_buffer):
                print(json.dumps(row(t)), flush=True)
                done.append(t)
        return done

    import uvloop

    results = uvloop.run(run())
    print(table([row(t) for t in results]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([t.as_dict() for t in results], f, indent=1, default=str)
    return 0 if all(t.intact and not t.error for t in results) else 1


if __name__ == "__main__":
    sys.exit(main())
