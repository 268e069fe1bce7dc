"""Congestion control behind a small pluggable interface.

The connection owns loss *detection* (duplicate ACKs, retransmission timeouts, the NewReno
recovery point); an algorithm only decides how the congestion window reacts. To add one,
subclass :class:`CongestionControl` and register it with :func:`register`; select it with
``Config(congestion_control="name")``.
"""

from __future__ import annotations

from collections.abc import Callable


class CongestionControl:
    """Window policy of one connection. Sizes are in bytes."""

    name = "base"

    def __init__(self, mss: int, initial_window: int) -> None:
        self.mss = mss
        # RFC 6928: IW = min(10*MSS, max(2*MSS, 14600)) for 10 segments; generalised here.
        self.cwnd = initial_window * mss
        self.ssthresh = 1 << 30

    def on_ack(self, acked: int, flight: int, now: float) -> None:
        """New data was acknowledged outside loss recovery."""
        raise NotImplementedError

    def on_loss(self, flight: int, now: float) -> None:
        """Loss detected by duplicate ACKs: entering fast recovery."""
        raise NotImplementedError

    def on_recovery_end(self, flight: int, now: float) -> None:
        """Fast recovery finished with an ACK covering the recovery point."""
        raise NotImplementedError

    def on_timeout(self, flight: int, now: float) -> None:
        """The retransmission timer expired."""
        raise NotImplementedError


class NewReno(CongestionControl):
    """RFC 5681 slow start and congestion avoidance with RFC 6582 fast recovery."""

    name = "newreno"

    def __init__(self, mss: int, initial_window: int) -> None:
        super().__init__(mss, initial_window)
        self._ca_acked = 0

    def on_ack(self, acked: int, flight: int, now: float) -> None:
        if self.cwnd < self.ssthresh:
            # RFC 5681 §3.1 (with RFC 3465's L = 1 SMSS limit per ACK).
            self.cwnd += min(acked, self.mss)
        else:
            # Congestion avoidance: about one MSS per round trip, counted in bytes (RFC 3465).
            self._ca_acked += acked
            if self._ca_acked >= self.cwnd:
                self._ca_acked -= self.cwnd
                self.cwnd += self.mss

    def on_loss(self, flight: int, now: float) -> None:
        # RFC 5681 §3.2 step 2 (equation 4), then inflate by the three duplicates.
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh + 3 * self.mss

    def on_recovery_end(self, flight: int, now: float) -> None:
        # RFC 6582 §3.2 step 3, option (1) with the burst guard: min(ssthresh, flight + MSS).
        self.cwnd = max(min(self.ssthresh, flight + self.mss), self.mss)
        self._ca_acked = 0

    def on_timeout(self, flight: int, now: float) -> None:
        # RFC 5681 §3.1 equation 4, and the loss window of one segment.
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._ca_acked = 0


_ALGORITHMS: dict[str, Callable[[int, int], CongestionControl]] = {"newreno": NewReno}


def register(name: str, factory: Callable[[int, int], CongestionControl]) -> None:
    """Make an algorithm selectable by ``Config.congestion_control``."""
    _ALGORITHMS[name] = factory


def create(name: str, mss: int, initial_window: int) -> CongestionControl:
    """Instantiate the algorithm registered under ``name``."""
    try:
        factory = _ALGORITHMS[name]
    except KeyError:
        raise ValueError(
            f"unknown congestion control {name!r}; known: {sorted(_ALGORITHMS)}"
        ) from None
    return factory(mss, initial_window)
