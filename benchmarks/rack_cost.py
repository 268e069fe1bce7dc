"""What one ACK costs the sender's loss detection as the flight grows.

A receiver that SACKs every other segment, one per ACK, makes RACK (RFC 8985 §6.2) and
RFC 6675's NextSeg look at the sent log on every ACK. Both use side structures pruned
lazily, so the cost per ACK should stay flat from a hundred to thousands of segments in
flight; ``--walk`` adds the figure for walking the whole log each time, for comparison.

    python -m benchmarks.rack_cost [--walk]
"""

from __future__ import annotations

import argparse
import time

from udptcp.core.rack import SentLog


def _walk_detect(log: SentLog, now: float, reo_wnd: float) -> None:
    horizon = log.rack_rtt + reo_wnd
    for seg in log.segments():
        if seg.order >= log.rack_order:
            if not seg.retransmitted:
                break
            continue
        if not (seg.sacked or seg.lost) and seg.time + horizon <= now:
            seg.lost = True


def per_ack_us(segments: int, walk: bool = False) -> float:
    """Microseconds per ACK with ``segments`` 1000-byte segments in flight."""
    log = SentLog()
    log.record_run(0, 1000, segments, 0.0)
    acks = 0
    start = time.perf_counter()
    for i in range(1, segments, 2):
        log.start_ack()
        log.sack(i * 1000, (i + 1) * 1000, 0.001, 0.0)
        if walk:
            _walk_detect(log, 0.001, 1.0)
            next((s for s in log.segments() if s.lost and not s.sacked), None)
        else:
            log.detect_losses(0.001, 1.0)
            log.first_lost()
        acks += 1
    return (time.perf_counter() - start) / acks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rack_cost", description=__doc__)
    parser.add_argument("--walk", action="store_true", help="also time a walk over the log")
    args = parser.parse_args()
    for n in (100, 1000, 4000, 10000):
        line = f"{n:6d} segments in flight: {per_ack_us(n):6.2f} µs per ACK"
        if args.walk:
            line += f"   (walking the log: {per_ack_us(n, walk=True):7.1f} µs)"
        print(line)


if __name__ == "__main__":
    main()
