"""What hostile input costs: CPU time per segment as a peer's pathological pattern grows.

Not a test (speed is reported, never asserted): prints the mean cost per segment in each
bucket, so a cost that grows with history (super-linear in total) shows as a rising column.

    python tests/fuzz/cost_probe.py [holes]

Scenarios, each against one connection with a large receive buffer:

- ``receiver holes``: the peer sends one-byte segments, every other byte, so every segment
  leaves a hole (the reassembly queue, its SACK ranges and the SACK blocks of every ACK);
- ``receiver fill``: then it fills the holes, lowest first (in-order delivery from the queue);
- ``receiver cover``: the holes again, then one segment that covers every held piece;
- ``sender sack``: the peer SACKs every other segment we sent, one new block per ACK
  (the scoreboard, the sent log and RACK's scans);
- ``sender ack``: then acknowledges them one by one (pruning both).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from udptcp.core.config import Config  # noqa: E402
from udptcp.core.connection import Connection  # noqa: E402
from udptcp.core.segment import ACK, SYN, Options, Segment  # noqa: E402
from udptcp.core.seq import seq_add  # noqa: E402

ISS, PEER = 1000, 7_000_000
CFG = Config(
    receive_buffer=8 << 20,
    timestamps=False,
    keepalive=False,
    pacing=False,
    delayed_ack=0.0,
    initial_window=100_000,  # the sender scenario wants everything in flight at once
    max_reassembly_pieces=1 << 20,  # measure past the default cap of 4096
)


def _established(mss: int = 1452) -> Connection:
    conn = Connection.connect(CFG, local_port=1, remote_port=2, iss=ISS, mss=mss, now=0.0)
    conn.take_segments()
    opts = Options(mss=mss, wscale=7, sack_permitted=True)
    conn.receive(Segment(2, 1, PEER, ISS + 1, SYN | ACK, 65535, opts), 0.01)
    # A window update: the SYN's window is never scaled, this one is (8 MB).
    conn.receive(Segment(2, 1, PEER + 1, ISS + 1, ACK, 65535), 0.01)
    conn.take_segments()
    conn.take_events()
    return conn


def _report(name: str, times: list[float], buckets: int = 8) -> None:
    n = len(times)
    size = max(n // buckets, 1)
    cols = []
    for i in range(0, n - size + 1, size):
        chunk = times[i : i + size]
        cols.append(f"{i + size:>6}:{1e6 * sum(chunk) / len(chunk):7.1f}")
    print(f"{name:<15} µs/segment after N segments: " + "  ".join(cols))


def receiver(holes: int) -> None:
    conn = _established()
    now = 0.02
    t_holes: list[float] = []
    for i in range(holes):
        seg = Segment(2, 1, PEER + 2 + 2 * i, ISS + 1, ACK, 65535, None, b"x")
        t = time.perf_counter()
        conn.receive(seg, now)
        conn.take_segments()
        t_holes.append(time.perf_counter() - t)
    _report("receiver holes", t_holes)
    print(f"{'':<15} held pieces {len(conn._reassembly)}, bytes {conn._reassembly.size}")
    t_fill: list[float] = []
    for i in range(holes):
        seg = Segment(2, 1, PEER + 1 + 2 * i, ISS + 1, ACK, 65535, None, b"y")
        t = time.perf_counter()
        conn.receive(seg, now)
        conn.take_segments()
        conn.take_events()
        t_fill.append(time.perf_counter() - t)
    _report("receiver fill", t_fill)
    # The same holes again, then one segment that covers every piece at once.
    conn = _established()
    for i in range(holes):
        conn.receive(Segment(2, 1, PEER + 2 + 2 * i, ISS + 1, ACK, 65535, None, b"x"), now)
        conn.take_segments()
    cover = Segment(2, 1, PEER + 1, ISS + 1, ACK, 65535, None, b"z" * (2 * holes + 2))
    t = time.perf_counter()
    conn.receive(cover, now)
    print(
        f"{'receiver cover':<15} one segment over {holes} pieces: "
        f"{1e3 * (time.perf_counter() - t):.1f} ms"
    )


def sender(blocks: int) -> None:
    mss = 216  # the smallest MSS a peer can make us use (Config.min_mss)
    conn = _established(mss)
    now = 0.02
    conn.send(b"d" * (mss * 2 * (blocks + 2)), now)
    sent = conn.take_segments()
    starts = [s.seq for s in sent]
    # SACK segments 1, 3, 5, ...: one new block each time, the newest first (RFC 2018 §4).
    t_sack: list[float] = []
    newest: list[tuple[int, int]] = []
    for i in range(blocks):
        left = starts[2 * i + 1]
        newest = [(left, seq_add(left, mss))] + newest[:2]
        seg = Segment(2, 1, PEER + 1, ISS + 1, ACK, 65535, Options(sack_blocks=tuple(newest)))
        t = time.perf_counter()
        conn.receive(seg, now)
        conn.take_segments()
        t_sack.append(time.perf_counter() - t)
    _report("sender sack", t_sack)
    print(f"{'':<15} scoreboard ranges {len(conn._sb)}, logged segments {len(conn._log)}")
    t_ack: list[float] = []
    for i in range(blocks):
        ack = starts[2 * i + 2]
        seg = Segment(2, 1, PEER + 1, ack, ACK, 65535)
        t = time.perf_counter()
        conn.receive(seg, now)
        conn.take_segments()
        t_ack.append(time.perf_counter() - t)
    _report("sender ack", t_ack)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    receiver(n)
    sender(n)


if __name__ == "__main__":
    main()
