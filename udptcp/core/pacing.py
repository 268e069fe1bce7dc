"""Pacing: spread a window's worth of segments over a round trip instead of a burst.

A token bucket filled at ``gain x cwnd / SRTT`` bytes per second, as Linux's fq pacing
rate (gain 2 in slow start, 1.2 after), holding at most a millisecond's worth (and at
least two segments). Enabled by ``Config.pacing``.
"""

from __future__ import annotations


class Pacer:
    """The token bucket of one connection."""

    __slots__ = ("credit", "time")

    def __init__(self) -> None:
        self.credit = 0.0  # bytes that may go out now
        self.time = 0.0  # when the credit was last topped up

    def wait(self, size: int, now: float, cwnd: int, ssthresh: int, srtt: float, mss: int) -> float:
        """Take ``size`` bytes of credit and return 0.0, or return how long (at least
        100 µs, below which a timer would spin) until the bucket holds them."""
        gain = 2.0 if cwnd < ssthresh else 1.2
        rate = gain * cwnd / srtt
        burst = max(2 * mss, rate * 0.001)
        self.credit = min(burst, self.credit + (now - self.time) * rate)
        self.time = now
        if self.credit >= size or self.credit >= burst:
            self.credit -= size
            return 0.0
        return max((size - self.credit) / rate, 1e-4)
