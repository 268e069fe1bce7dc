"""HyStart++ (RFC 9406): leave the initial slow start when the round-trip time starts to
rise, before the queue overflows.

Slow start doubles the window every round trip, so by the time a drop-tail queue overflows
it has sent up to a whole window too much, and the losses come in a burst. HyStart++ watches
the smallest RTT of each round: once it has risen by a clamped eighth of the previous
round's, the path is queueing; slow start gives way to Conservative Slow Start (CSS), which
grows a quarter as fast, and after ``CSS_ROUNDS`` rounds of CSS to congestion avoidance.
If the RTT falls back below the level that started CSS, the rise was jitter and slow start
resumes. A loss ends it all as usual.

Rounds are counted in bytes, as the RFC counts them in sequence numbers: a round ends when
everything outstanding at its start (``delivered + flight`` then) has been acknowledged.
"""

from __future__ import annotations

import math

# RFC 9406 §4.3 constants.
MIN_RTT_THRESH = 0.004
MAX_RTT_THRESH = 0.016
MIN_RTT_DIVISOR = 8
N_RTT_SAMPLE = 8
CSS_GROWTH_DIVISOR = 4
CSS_ROUNDS = 5
# The ACK-train exit (Linux's HyStart, Ha & Rhee 2011; not part of RFC 9406, and only ever
# more cautious than RFC 5681's slow start): ACKs count as one train while each follows the
# last within max(ACK_DELTA, min RTT / ACK_DELTA_DIVISOR) (a bottleneck spaces them evenly;
# Linux's fixed 2 ms breaks every train of delayed ACKs below ~12 Mbit/s); once a round's
# train spans half the minimum RTT, the window holds about a path's worth of data and slow
# start ends there. It sees the bottleneck in the round that fills it, where the RTT rise
# shows a round later, when the window has already doubled past the queue.
ACK_DELTA = 0.002
ACK_DELTA_DIVISOR = 32
# Added to the minimum RTT before halving, for ACKs that a delayed-ACK timer or a receive
# train held back (Linux adds up to 1 ms, hystart_ack_delay): on a sub-millisecond path a
# train of a few ACKs says nothing about a bottleneck.
ACK_ALLOWANCE = 0.001
LOW_WINDOW = 16  # segments: below this, no ACK-train exit


class HyStart:
    """The HyStart++ state of one connection's initial slow start.

    The controller calls :meth:`on_rtt` with every RTT sample and :meth:`grow` with every
    ACK taken in slow start, and :meth:`stop` when slow start ends for another reason (a
    loss, a timeout); after that HyStart++ stays off (RFC 9406 §4.2 applies it to the
    initial slow start only).
    """

    __slots__ = (
        "active",
        "in_css",
        "_delivered",
        "_window_end",
        "_last_round_min",
        "_round_min",
        "_samples",
        "_css_baseline",
        "_css_rounds",
        "_min_rtt",
        "_train_start",
        "_last_ack",
    )

    def __init__(self) -> None:
        self.active = True
        self.in_css = False
        self._delivered = 0
        self._window_end = -1  # delivered-byte count that ends the current round
        self._last_round_min = math.inf
        self._round_min = math.inf
        self._samples = 0
        self._css_baseline = math.inf
        self._css_rounds = 0
        self._min_rtt = math.inf
        self._train_start = 0.0
        self._last_ack = -1.0

    def on_rtt(self, rtt: float) -> None:
        """One RTT sample (§4.2: the minimum of the round is what counts)."""
        if self.active:
            if rtt < self._round_min:
                self._round_min = rtt
            if rtt < self._min_rtt:
                self._min_rtt = rtt
            self._samples += 1

    def stop(self) -> None:
        """Slow start ended by a loss or a timeout: HyStart++ is done."""
        self.active = False
        self.in_css = False

    def grow(
        self, acked: int, flight: int, now: float = 0.0, cwnd_segments: float = 0.0
    ) -> tuple[int, bool]:
        """Take an ACK of ``acked`` new bytes in slow start, ``flight`` bytes still out, at
        ``now``, the window being ``cwnd_segments``.

        Returns the share of ``acked`` by which the window may grow (all of it in slow
        start, a quarter in CSS: §4.2), and whether slow start is over (CSS has run its
        rounds, or the round's ACK train spans half the path: the caller sets ssthresh to
        cwnd and continues in congestion avoidance).
        """
        if not self.active:
            return acked, False
        self._delivered += acked
        if self._delivered >= self._window_end:
            # A new round: everything sent before it is acknowledged (§4.2 "windowEnd").
            self._window_end = self._delivered + flight
            self._last_round_min = self._round_min
            self._round_min = math.inf
            self._samples = 0
            self._train_start = now
            if self.in_css:
                self._css_rounds += 1
                if self._css_rounds >= CSS_ROUNDS:
                    self.stop()
                    return acked // CSS_GROWTH_DIVISOR, True
        if now - self._last_ack > max(ACK_DELTA, self._min_rtt / ACK_DELTA_DIVISOR):
            self._train_start = now  # the train broke off: a new one starts here
        self._last_ack = now
        if (
            not self.in_css
            and cwnd_segments >= LOW_WINDOW
            and now - self._train_start >= (self._min_rtt + ACK_ALLOWANCE) / 2
        ):
            self.stop()
            return acked, True
        enough = (
            self._samples >= N_RTT_SAMPLE
            and self._round_min < math.inf
            and self._last_round_min < math.inf
        )
        if not self.in_css:
            if enough:
                thresh = min(
                    max(self._last_round_min / MIN_RTT_DIVISOR, MIN_RTT_THRESH), MAX_RTT_THRESH
                )
                if self._round_min >= self._last_round_min + thresh:
                    # The path started queueing: Conservative Slow Start from here.
                    self.in_css = True
                    self._css_baseline = self._round_min
                    self._css_rounds = 0
        elif enough and self._round_min < self._css_baseline:
            # The rise was jitter: back to slow start (§4.2).
            self.in_css = False
            self._css_baseline = math.inf
        return (acked // CSS_GROWTH_DIVISOR if self.in_css else acked), False
