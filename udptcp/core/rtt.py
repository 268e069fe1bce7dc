"""Round-trip time estimation and retransmission timeout (RFC 6298)."""

from __future__ import annotations

# RFC 6298 §2: alpha = 1/8, beta = 1/4, K = 4.
_ALPHA = 0.125
_BETA = 0.25
_K = 4
# Clock granularity G; the event loop's clock is fine-grained, 1 ms keeps RTO sane on loopback.
_G = 0.001


class RttEstimator:
    """SRTT/RTTVAR smoothing and the RTO derived from them, with exponential backoff."""

    __slots__ = (
        "srtt",
        "rttvar",
        "latest",
        "min_rtt",
        "_base_rto",
        "_backoff",
        "rto_min",
        "rto_max",
    )

    def __init__(self, rto_initial: float, rto_min: float, rto_max: float) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.latest: float | None = None
        self.min_rtt: float | None = None
        self.rto_min = rto_min
        self.rto_max = rto_max
        self._base_rto = rto_initial
        self._backoff = 1

    def sample(self, rtt: float) -> None:
        """Feed one RTT measurement (never from a retransmitted segment: Karn's rule)."""
        # min/max written out: one sample per acknowledgment.
        if 0.0 > rtt:
            rtt = 0.0
        self.latest = rtt
        min_rtt = self.min_rtt
        self.min_rtt = rtt if min_rtt is None or rtt < min_rtt else min_rtt
        if self.srtt is None:
            # RFC 6298 §2.2: first measurement.
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            # RFC 6298 §2.3: RTTVAR is updated before SRTT, using the old SRTT.
            self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - rtt)
            self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * rtt
        self._base_rto = self.srtt + max(_G, _K * self.rttvar)
        # RFC 6298 §5.7: a new measurement after backoff collapses the backoff.
        self._backoff = 1

    @property
    def rto(self) -> float:
        """Current retransmission timeout, backoff included, clamped to [rto_min, rto_max]."""
        base, floor, ceiling = self._base_rto, self.rto_min, self.rto_max
        rto = (floor if floor > base else base) * self._backoff  # min/max inline: per segment
        return ceiling if ceiling < rto else rto

    def back_off(self) -> None:
        """Double the timeout after it expired (RFC 6298 §5.5)."""
        if self.rto < self.rto_max:
            self._backoff *= 2

    def reinitialize(self, rto: float) -> None:
        """Start over from ``rto`` with no backoff (RFC 6298 §5.7, after a lost SYN)."""
        self._base_rto = rto
        self._backoff = 1
