"""Receive-path cost under a peer that leaves holes: is the cost per segment flat?

    python -m benchmarks.holes                # both parts, 10,000 holes, 3 runs each
    python -m benchmarks.holes core [--holes N] [--repeat N] [--json]
    python -m benchmarks.holes udp [--holes N] [--repeat N] [--loop uvloop] [--defaults]

Also the ``holes`` scenario of ``python -m benchmarks`` (one table in results.md).

``core``: two connections and no sockets. An established peer sends ``--holes`` one-byte
segments that each leave a one-byte hole before them, then the fillers; the receiving
connection decodes each datagram, processes it and encodes its ACK (as a server would).
CPU time (``time.process_time``) per bucket of 1,000 segments gives µs/segment, and the
ratio of the dearest and the last bucket to the first. Four arrival orders: holes left
in ascending, descending and random order, filled ascending; and ascending holes filled
from the top down. Then the memory the held pieces take (tracemalloc) next to the
receive buffer and the reassembly charge, with ``Config(receive_buffer=16 MiB,
max_reassembly_pieces=20000)`` (every piece admitted) and with the defaults (pieces
admitted, drops, whether a sender that retransmits still gets everything through).

``udp``: real UDP on 127.0.0.1, three processes. A udptcp server (sink for the attacker,
echo for others); a hostile raw-UDP client that makes the handshake itself (it knows the
sequence numbers) and sends the holes, then the fillers, a few dozen datagrams ahead of
the ACKs coming back; and a normal udptcp client pinging 1 byte every 5 ms through the
server's echo. Reported: server CPU per segment by bucket (from
``/proc/PID/schedstat``), the echo round trips (p50, p99, max) during the attack, and
what the server holds for reassembly (its charge and RSS) at the peak.

The acceptance this answers: server CPU per segment within 2x of the first thousand's,
the other connection's echo round trip under 50 ms, memory held within the receive
buffer. A measuring tool, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from udptcp.core.buffers import PIECE_OVERHEAD
from udptcp.core.config import Config
from udptcp.core.connection import Connection
from udptcp.core.segment import ACK, SYN, Options, Segment, decode, encode
from udptcp.tools.simnet import connected_pair

from .common import LOOPS, run_on_loop

BUCKET = 1000
MIB = 1024 * 1024
#: Big enough that every one of 10,000 one-byte pieces is admitted.
ROOMY = Config(receive_buffer=16 * MIB, max_reassembly_pieces=20_000)

# --------------------------------------------------------------------------- arrival orders


def _orders(holes: int, seed: int) -> dict[str, tuple[list[int], list[int]]]:
    """Name -> (offsets of the hole-leaving bytes, offsets of the fillers), in send order.

    Byte ``2k + 1`` is sent first (hole at ``2k``), for ``k`` below ``holes``."""
    pieces = [2 * k + 1 for k in range(holes)]
    fills = [2 * k for k in range(holes)]
    rng = random.Random(seed)
    shuffled = pieces[:]
    rng.shuffle(shuffled)
    return {
        "ascending": (pieces, fills),
        "descending": (pieces[::-1], fills),
        "random": (shuffled, fills),
        "fill-from-top": (pieces, fills[::-1]),
    }


# --------------------------------------------------------------------------- core level


class _Feeder:
    """Plays the hostile peer of ``server`` (the passive side of a connected pair): builds
    one-byte segments at chosen stream offsets and hands them over as datagrams."""

    def __init__(self, client: Connection, server: Connection) -> None:
        self.server = server
        self.seq0 = client.snd_nxt  # sequence number of stream offset 0
        self.ack = server.snd_nxt
        self.ts = (server.ts_recent, 0) if server.ts_enabled else None
        self.now = 0.0
        self.acks = 0

    def datagram(self, offset: int, size: int = 1) -> bytes:
        options = Options(timestamps=self.ts) if self.ts is not None else None
        seq = (self.seq0 + offset) & 0xFFFFFFFF
        data = bytes(65 + (offset + i) % 26 for i in range(size))
        return encode(Segment(1000, 2000, seq, self.ack, ACK, 65535, options, data))

    def deliver(self, datagram: bytes) -> None:
        """What a server does with one datagram: decode, process, encode the answers."""
        server = self.server
        self.now += 1e-5
        server.receive(decode(datagram), self.now)
        for seg in server.take_segments():
            encode(seg)
            self.acks += 1
        server.take_events()


def _buckets(feeder: _Feeder, offsets: Sequence[int]) -> list[float]:
    """µs of CPU per segment for each bucket of BUCKET segments."""
    out = []
    clock = time.process_time
    for first in range(0, len(offsets), BUCKET):
        datagrams = [feeder.datagram(off) for off in offsets[first : first + BUCKET]]
        t0 = clock()
        for dg in datagrams:
            feeder.deliver(dg)
        out.append((clock() - t0) / len(datagrams) * 1e6)
    return out


def core_cost(
    config: Config, holes: int, order: str, repeat: int = 3, seed: int = 1
) -> dict[str, Any]:
    """CPU per segment, by bucket, for one arrival order: each bucket's least over
    ``repeat`` runs (other processes on the machine only ever add to a measurement)."""
    pieces, fills = _orders(holes, seed)[order]
    runs = []
    for _ in range(repeat):
        client, server = connected_pair(config)
        feeder = _Feeder(client, server)
        leave = _buckets(feeder, pieces)
        held = server.stats()
        runs.append(leave + _buckets(feeder, fills))
    buckets = [min(column) for column in zip(*runs)]
    first = buckets[0]
    return {
        "order": order,
        "repeat": repeat,
        "us_per_segment": [round(b, 2) for b in buckets],
        "first_us": round(first, 2),
        "last_over_first": round(buckets[-1] / first, 2),
        "max_over_first": round(max(buckets) / first, 2),
        "max_over_min": round(max(buckets) / min(buckets), 2),
        "pieces_held": held["reassembly_pieces"],
        "delivered": server.stats()["bytes_received"],
        "dropped": server.stats()["reassembly_dropped"],
    }


def core_memory(config: Config, holes: int) -> dict[str, Any]:
    """Memory the held pieces take (tracemalloc), next to the charge and the buffer; then
    fill the holes, resending what was dropped, and check every byte arrives."""
    pieces, fills = _orders(holes, 1)["ascending"]
    client, server = connected_pair(config)
    feeder = _Feeder(client, server)
    datagrams = [feeder.datagram(off) for off in pieces]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for dg in datagrams:
        feeder.deliver(dg)
    traced = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    stats = server.stats()
    admitted = int(stats["reassembly_pieces"] or 0)
    # A sender would retransmit what was dropped (it was never SACKed): fill in order,
    # sending each dropped byte again after its hole, until everything is through.
    for off in fills:
        feeder.deliver(feeder.datagram(off))
        if server.stats()["bytes_received"] == off + 1:
            feeder.deliver(feeder.datagram(off + 1))
    final = server.stats()
    return {
        "receive_buffer": config.receive_buffer,
        "max_reassembly_pieces": config.max_reassembly_pieces,
        "pieces_sent": holes,
        "pieces_admitted": admitted,
        "reassembly_dropped": stats["reassembly_dropped"],
        "charge": stats["reassembly_charge"],
        "traced_bytes": traced,
        "traced_per_piece": round(traced / admitted, 1) if admitted else None,
        "traced_over_buffer": round(traced / config.receive_buffer, 4),
        "delivered_in_order": final["bytes_received"] == 2 * holes,
    }


def piece_cost(holes: int) -> float:
    """Bytes tracemalloc sees per held 2-byte piece, less its 2 data bytes: what a piece
    costs beyond its data (CPython shares 1-byte bytes objects, so a 1-byte piece looks
    cheaper than an ordinary one)."""
    client, server = connected_pair(ROOMY)
    feeder = _Feeder(client, server)
    datagrams = [feeder.datagram(3 * k + 1, 2) for k in range(holes)]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for dg in datagrams:
        feeder.deliver(dg)
    traced = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return traced / len(server._reassembly) - 2


def run_core(holes: int, repeat: int, emit: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {"piece_overhead": PIECE_OVERHEAD, "costs": [], "memory": []}
    out["piece_cost"] = cost = round(piece_cost(holes), 1)
    emit(
        f"a held piece costs {cost} B beyond its data (2-byte pieces, tracemalloc); "
        f"charged {PIECE_OVERHEAD} B"
    )
    for order in _orders(holes, 1):
        result = core_cost(ROOMY, holes, order, repeat)
        out["costs"].append(result)
        emit(
            f"core {order:>13}: first {result['first_us']:.1f} µs/seg, last/first "
            f"{result['last_over_first']:.2f}, max/first {result['max_over_first']:.2f}, "
            f"max/min {result['max_over_min']:.2f}, held {result['pieces_held']}, "
            f"delivered {result['delivered']}"
        )
        emit("    buckets µs/seg: " + " ".join(f"{b:.1f}" for b in result["us_per_segment"]))
    for name, config in (("16 MiB, cap 20000", ROOMY), ("defaults", Config())):
        mem = core_memory(config, holes)
        mem["config"] = name
        out["memory"].append(mem)
        emit(
            f"memory ({name}): {mem['pieces_admitted']} of {holes} pieces admitted, "
            f"{mem['reassembly_dropped']} dropped; traced {mem['traced_bytes']:,} B "
            f"({mem['traced_per_piece']} B/piece), charge {mem['charge']:,} B, buffer "
            f"{mem['receive_buffer']:,} B ({mem['traced_over_buffer']:.2%} of it); "
            f"all delivered in order after resends: {mem['delivered_in_order']}"
        )
    return out


# --------------------------------------------------------------------------- real UDP

ROOT = Path(__file__).resolve().parent.parent
PING_INTERVAL = 0.005
#: Datagrams the hostile client sends ahead of the ACKs it has had back.
AHEAD = 32


def _config(defaults: bool) -> Config:
    return Config() if defaults else ROOMY


class _ServerApp(asyncio.Protocol):
    """Echo for a connection whose first byte is ``E``; a sink for any other."""

    transports: list[asyncio.Transport] = []

    def __init__(self) -> None:
        self.mode = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        _ServerApp.transports.append(transport)

    def data_received(self, data: bytes) -> None:
        if not self.mode:
            self.mode, data = data[:1], data[1:]
        if self.mode == b"E" and data and self.transport is not None:
            self.transport.write(data)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _serve(defaults: bool) -> None:
    """The server process: answers ``stats`` lines on stdin with one JSON line."""
    import udptcp

    loop = asyncio.get_running_loop()
    server = await udptcp.create_server(_ServerApp, "127.0.0.1", 0, config=_config(defaults))
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"ready": port, "rss": _rss()}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if line.strip() == b"stats":
            conns = [
                {"peer": t.get_extra_info("peername"), **t.get_extra_info("udptcp_stats")}
                for t in _ServerApp.transports
            ]
            print(json.dumps({"stats": conns, "rss": _rss()}), flush=True)
    server.close()


class _Pinger(asyncio.Protocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


async def _echo(port: int) -> None:
    """The echo client process: one byte every PING_INTERVAL, until stdin closes; then
    one JSON line of (wall time sent, round trip in s) samples."""
    import udptcp

    loop = asyncio.get_running_loop()
    transport, pinger = await udptcp.create_connection(_Pinger, "127.0.0.1", port)
    transport.write(b"E")
    print(json.dumps({"ready": True}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    done = asyncio.ensure_future(reader.read())
    samples: list[tuple[float, float]] = []
    while not done.done():
        pinger.waiter = loop.create_future()
        sent, t0 = time.time(), time.perf_counter()
        transport.write(b"!")
        await asyncio.wait({pinger.waiter, done}, return_when=asyncio.FIRST_COMPLETED)
        if pinger.waiter.done():
            samples.append((sent, time.perf_counter() - t0))
            await asyncio.sleep(PING_INTERVAL)
    transport.abort()
    print(json.dumps({"samples": samples}), flush=True)


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.holes", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


def _message(proc: subprocess.Popen[str], key: str) -> dict[str, Any]:
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if key in message:
            return dict(message)
    raise RuntimeError(f"worker exited ({proc.wait()}) before answering {key!r}")


def _cpu_ns(pid: int) -> int:
    """CPU time of a single-threaded process, in ns (the first field of schedstat)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


class _Attacker:
    """A raw-UDP peer that makes the handshake itself and then sends chosen bytes, keeping
    at most AHEAD datagrams ahead of the ACKs the server returns (one per out-of-order or
    hole-filling segment), so loopback socket buffers never overflow."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(2.0)
        self.port = port
        self.vport = 40000 + os.getpid() % 20000
        self.iss = random.Random(os.getpid()).getrandbits(32)
        self.sent = self.answered = self.lost_answers = 0
        self.ts_echo: int | None = None
        self.ack = 0

    def _ts(self) -> tuple[int, int] | None:
        if self.ts_echo is None:
            return None
        return (int(time.monotonic() * 1000) & 0xFFFFFFFF, self.ts_echo)

    def handshake(self) -> None:
        ts = (int(time.monotonic() * 1000) & 0xFFFFFFFF, 0)
        opts = Options(mss=1452, wscale=7, sack_permitted=True, timestamps=ts)
        self.sock.send(encode(Segment(self.vport, self.port, self.iss, 0, SYN, 65535, opts)))
        synack = decode(self.sock.recv(2048))
        if synack.flags & (SYN | ACK) != SYN | ACK or synack.ack != (self.iss + 1) & 0xFFFFFFFF:
            raise RuntimeError(f"unexpected answer to SYN: {synack}")
        if synack.options is not None and synack.options.timestamps is not None:
            self.ts_echo = synack.options.timestamps[0]
        self.ack = (synack.seq + 1) & 0xFFFFFFFF
        self._send(0, b"", count=False)  # the third segment of the handshake

    def _send(self, offset: int, payload: bytes, count: bool = True) -> None:
        ts = self._ts()
        opts = Options(timestamps=ts) if ts is not None else None
        seq = (self.iss + 1 + offset) & 0xFFFFFFFF
        self.sock.send(
            encode(Segment(self.vport, self.port, seq, self.ack, ACK, 512, opts, payload))
        )
        if count:
            self.sent += 1

    def _take_answer(self) -> bool:
        try:
            self.sock.recv(2048)
        except TimeoutError:
            self.lost_answers += self.sent - self.answered
            self.answered = self.sent
            return False
        self.answered += 1
        return True

    def send_byte(self, offset: int) -> None:
        while self.sent - self.answered >= AHEAD:
            self._take_answer()
        self._send(offset, bytes((65 + offset % 26,)))

    def drain(self) -> None:
        while self.answered < self.sent and self._take_answer():
            pass


def run_udp(holes: int, defaults: bool, loop: str, emit: Callable[[str], None]) -> dict[str, Any]:
    """One run of the real-UDP attack; the figures and a line or two through ``emit``."""
    server = _spawn("_server", "--loop", loop, *(["--defaults"] if defaults else []))
    procs = [server]
    try:
        ready = _message(server, "ready")
        port = int(ready["ready"])
        echo = _spawn("_echo", "--port", str(port), "--loop", loop)
        procs.append(echo)
        _message(echo, "ready")
        time.sleep(1.0)  # a quiet second of echoes first: the baseline
        attacker = _Attacker(port)
        attacker.handshake()
        attack_start = time.time()
        pieces, fills = _orders(holes, 1)["ascending"]
        buckets: list[float] = []
        peak: dict[str, Any] = {}
        for phase in (pieces, fills):
            for first in range(0, len(phase), BUCKET):
                cpu0 = _cpu_ns(server.pid)
                for off in phase[first : first + BUCKET]:
                    attacker.send_byte(off)
                attacker.drain()
                chunk = len(phase[first : first + BUCKET])
                buckets.append((_cpu_ns(server.pid) - cpu0) / chunk / 1e3)
            if not peak:
                assert server.stdin is not None
                server.stdin.write("stats\n")
                server.stdin.flush()
                peak = _message(server, "stats")
        attack_end = time.time()
        time.sleep(0.5)
        assert server.stdin is not None
        server.stdin.write("stats\n")
        server.stdin.flush()
        final = _message(server, "stats")
        assert echo.stdin is not None
        echo.stdin.close()
        samples = _message(echo, "samples")["samples"]
    finally:
        for proc in procs:
            if proc.stdin is not None and not proc.stdin.closed:
                proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    during = sorted(rtt for sent, rtt in samples if attack_start <= sent <= attack_end)
    before = sorted(rtt for sent, rtt in samples if sent < attack_start)
    mine = list(attacker.sock.getsockname())

    def hostile(stats: dict[str, Any]) -> dict[str, Any]:
        return next(c for c in stats["stats"] if c["peer"] == mine)

    at_peak, at_end = hostile(peak), hostile(final)
    config = _config(defaults)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(len(values) * q))] * 1e3 if values else float("nan")

    first = buckets[0]
    result = {
        "config": "defaults" if defaults else "16 MiB, cap 20000",
        "loop": loop,
        "first_us": first,
        "holes": holes,
        "us_per_segment": [round(b, 1) for b in buckets],
        "last_over_first": round(buckets[-1] / first, 2),
        "max_over_first": round(max(buckets) / first, 2),
        "max_over_min": round(max(buckets) / min(buckets), 2),
        "attack_s": round(attack_end - attack_start, 2),
        "echo_before_ms": {"p50": pct(before, 0.5), "max": pct(before, 1.0), "n": len(before)},
        "echo_during_ms": {
            "p50": pct(during, 0.5),
            "p99": pct(during, 0.99),
            "max": pct(during, 1.0),
            "n": len(during),
        },
        "pieces_held_at_peak": at_peak["reassembly_pieces"],
        "charge_at_peak": at_peak["reassembly_charge"],
        "dropped": at_end["reassembly_dropped"],
        "delivered": at_end["bytes_received"],
        "receive_buffer": config.receive_buffer,
        "server_rss_growth": peak["rss"] - ready["rss"],
        "answers_lost": attacker.lost_answers,
    }
    emit(
        f"udp ({result['config']}): server CPU µs/seg first {first:.1f}, last/first "
        f"{result['last_over_first']:.2f}, max/first {result['max_over_first']:.2f}; "
        f"attack {result['attack_s']} s"
    )
    emit("    buckets µs/seg: " + " ".join(f"{b:.1f}" for b in buckets))
    e = result["echo_during_ms"]
    emit(
        f"    echo RTT during the attack: n={e['n']} p50 {e['p50']:.2f} ms, p99 {e['p99']:.2f} "
        f"ms, max {e['max']:.2f} ms (before: p50 {result['echo_before_ms']['p50']:.2f} ms)"
    )
    emit(
        f"    held at peak: {result['pieces_held_at_peak']} pieces, charge "
        f"{result['charge_at_peak']:,} B of a {result['receive_buffer']:,} B buffer; server RSS "
        f"+{result['server_rss_growth'] / 1e6:.1f} MB; dropped {result['dropped']}; "
        f"delivered {result['delivered']} of {2 * holes} bytes"
    )
    return result


def _least(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several UDP runs as one: each CPU bucket's least (other work only ever adds to
    it), the echo round trips' worst, the memory figures' largest."""
    buckets = [min(column) for column in zip(*(r["us_per_segment"] for r in runs))]
    out = dict(runs[-1])
    out.update(
        runs=len(runs),
        us_per_segment=[round(b, 1) for b in buckets],
        first_us=buckets[0],
        last_over_first=round(buckets[-1] / buckets[0], 2),
        max_over_first=round(max(buckets) / buckets[0], 2),
        max_over_min=round(max(buckets) / min(buckets), 2),
        echo_during_ms={
            k: max(r["echo_during_ms"][k] for r in runs) for k in ("p50", "p99", "max", "n")
        },
        charge_at_peak=max(r["charge_at_peak"] for r in runs),
        server_rss_growth=max(r["server_rss_growth"] for r in runs),
    )
    return out


def _udp_summary(r: dict[str, Any]) -> str:
    e = r["echo_during_ms"]
    return "\n".join(
        [
            f"udp over {r['runs']} run(s), least CPU per bucket: first {r['first_us']:.1f} "
            f"µs/seg, last/first {r['last_over_first']:.2f}, max/first "
            f"{r['max_over_first']:.2f}, max/min {r['max_over_min']:.2f}",
            "    buckets µs/seg: " + " ".join(f"{b:.1f}" for b in r["us_per_segment"]),
            f"    worst echo RTT during the attacks: p99 {e['p99']:.2f} ms, max {e['max']:.2f} ms"
            f"; largest charge {r['charge_at_peak']:,} B of {r['receive_buffer']:,} B, "
            f"server RSS +{r['server_rss_growth'] / 1e6:.1f} MB",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.holes",
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").splitlines()[2:]),
    )
    what = ("core", "udp", "all", "_server", "_echo")
    parser.add_argument("what", nargs="?", default="all", choices=what)
    parser.add_argument("--holes", type=int, default=10_000)
    parser.add_argument("--defaults", action="store_true", help="udp: the default Config")
    parser.add_argument("--loop", default="asyncio", choices=LOOPS, help="udp: server's loop")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (least kept)")
    parser.add_argument("--udp-repeat", type=int, default=None, help="udp: runs (--repeat)")
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print one JSON result at the end")
    args = parser.parse_args(argv)
    if args.what == "_server":
        run_on_loop(args.loop, _serve(args.defaults))
        return 0
    if args.what == "_echo":
        run_on_loop(args.loop, _echo(args.port))
        return 0
    results: dict[str, Any] = {}
    if args.what in ("core", "all"):
        results["core"] = run_core(args.holes, args.repeat, print)
    if args.what in ("udp", "all"):
        repeat = args.udp_repeat or args.repeat
        runs = [run_udp(args.holes, args.defaults, args.loop, print) for _ in range(repeat)]
        results["udp"] = _least(runs)
        print(_udp_summary(results["udp"]))
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
