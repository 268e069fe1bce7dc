"""What a forged SYN earns its victim: ``python -m benchmarks.amplification``.

Drives the sans-I/O core with a virtual clock (no sockets, no waiting): a listener's
connection accepts one forged SYN and nobody ever answers it; every timer fires for 60 s.
Reported for a bare 20-byte SYN and for one with every common option, and for a burst of
100 duplicate copies of a SYN arriving within 100 ms: the bytes received from the forged
address, the bytes sent to it, their ratio, and the segments sent and held back.
Default ``Config`` throughout.
"""

from __future__ import annotations

import json
import sys

from udptcp.core.config import Config
from udptcp.core.connection import Connection
from udptcp.core.segment import SYN, Options, Segment, encode

BARE = Segment(5000, 80, 1000, 0, SYN, 64240)
FULL = Segment(
    5000,
    80,
    1000,
    0,
    SYN,
    64240,
    Options(mss=1460, wscale=7, sack_permitted=True, timestamps=(123, 0)),
)


def forged(syn: Segment, duplicates: int = 0, seconds: float = 60.0) -> dict[str, object]:
    """One forged SYN (plus ``duplicates`` copies within 100 ms), then ``seconds`` of timers."""
    size = len(encode(syn))
    received = size
    conn = Connection.accept(Config(), syn, iss=777, mss=1452, now=0.0, received=size)
    sent = [encode(s) for s in conn.take_segments()]
    now = 0.0
    for i in range(duplicates):
        now = 0.1 * (i + 1) / duplicates
        received += size
        conn.receive(syn, now)
        sent += [encode(s) for s in conn.take_segments()]
    while (deadline := conn.get_timer()) is not None and deadline <= seconds:
        now = max(now, deadline)
        conn.handle_timer(now)
        sent += [encode(s) for s in conn.take_segments()]
    out_bytes = sum(len(d) for d in sent)
    return {
        "syn_bytes": size,
        "received_bytes": received,
        "sent_bytes": out_bytes,
        "ratio": round(out_bytes / received, 2),
        "segments_sent": len(sent),
        "amplification_limited": conn.stats_counters["amplification_limited"],
        "syn_acks_rate_limited": conn.stats_counters["syn_acks_rate_limited"],
    }


def main() -> int:
    report = {
        "one bare SYN, 60 s": forged(BARE),
        "one SYN with options, 60 s": forged(FULL),
        "100 duplicate SYNs (bare) in 100 ms, 60 s": forged(BARE, duplicates=100),
        "100 duplicate SYNs (options) in 100 ms, 60 s": forged(FULL, duplicates=100),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
