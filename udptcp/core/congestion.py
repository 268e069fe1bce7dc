"""Congestion control behind a small pluggable interface.

Loss recovery (:mod:`udptcp.core.recovery`) owns loss *detection* (duplicate ACKs, SACK and
RACK, retransmission timeouts, the NewReno recovery point) and tells the algorithm what
happened through the ``on_*`` methods below; the algorithm alone decides how its window
reacts, and nothing else writes ``cwnd`` or ``ssthresh``. To add one, subclass
:class:`CongestionControl` (at least ``on_ack``, ``on_loss``, ``on_recovery_end``,
``on_timeout``; the rest have the RFCs' answers) and register it with :func:`register`;
select it with ``Config(congestion_control="name")``.
"""

from __future__ import annotations

from collections.abc import Callable

from .hystart import HyStart


class CongestionControl:
    """Window policy of one connection. Sizes are in bytes."""

    name = "base"

    def __init__(self, mss: int, initial_window: int) -> None:
        self.mss = mss
        # RFC 6928: IW = min(10*MSS, max(2*MSS, 14600)) for 10 segments; generalised here.
        self.cwnd = initial_window * mss
        self.ssthresh = 1 << 30
        #: Smoothed RTT in seconds, kept current by the connection (None before a sample).
        self.srtt: float | None = None

    def on_rtt_sample(self, rtt: float, srtt: float | None) -> None:
        """A new RTT measurement ``rtt``; ``srtt`` is the smoothed value after it."""
        self.srtt = srtt

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

    def on_undo(self, cwnd: int, ssthresh: int) -> None:
        """The last loss response was spurious (RFC 3708: every retransmission came back as
        a duplicate): back to ``cwnd`` and ``ssthresh`` from before it."""
        self.cwnd = max(self.cwnd, cwnd)
        self.ssthresh = max(self.ssthresh, ssthresh)

    def on_repeated_timeout(self) -> None:
        """A further retransmission timeout of the same series: the loss window of one
        segment, ssthresh left where the first timeout put it (RFC 5681 §3.1)."""
        self.cwnd = self.mss

    def on_handshake_loss(self) -> None:
        """The SYN or SYN,ACK had to be retransmitted: the initial window is one segment
        (RFC 5681 §3.1)."""
        self.cwnd = self.mss

    def on_partial_ack(self, acked: int) -> None:
        """NewReno recovery (no SACK): an ACK of ``acked`` bytes below the recovery point.
        Deflate by what was acknowledged, add back one segment if at least one was (RFC 6582
        §3.2 step 3), never below one segment."""
        mss = self.mss
        self.cwnd = max(self.cwnd - acked + (mss if acked >= mss else 0), mss)

    def on_recovery_dup_ack(self) -> None:
        """NewReno recovery (no SACK): a further duplicate ACK says a segment left the
        network; inflate by one segment (RFC 6582 §3.2 step 4). Loss recovery bounds how
        many it passes on by what was outstanding when recovery began."""
        self.cwnd += self.mss

    def on_recovery_window(self, cwnd: int) -> None:
        """SACK recovery with proportional rate reduction (RFC 6937): after ``on_loss`` has
        set ssthresh, loss recovery paces its sending by the window it computes for each ACK
        (from ssthresh, the flight and what was delivered); never below one segment."""
        self.cwnd = max(cwnd, self.mss)

    def on_mss_change(self, mss: int) -> None:
        """The sender's segment size changed (a path MTU probe proved a larger one, or a
        black hole sent it back to the base size): windows count in the new size from here."""
        self.mss = mss


def slow_start(cwnd: int, ssthresh: int, acked: int, mss: int) -> int:
    """Slow start counting bytes: the window grows by what is acknowledged, so it doubles
    every round trip (RFC 3465 with L = 2 SMSS, what a delayed ACK covers).

    A receiver that acknowledges a whole train at once (GRO on Linux,
    ``Connection.receive_many`` here) sends one stretch ACK for dozens of segments; it
    counts as the delayed ACKs it stands for, each within the limit, so growth per round
    trip stays the same as with an ACK every second segment (Linux's tcp_slow_start counts
    the same). HyStart++ (RFC 9406, :mod:`udptcp.core.hystart`) keeps the initial slow start
    from overshooting a queue at that rate. Never past ssthresh, where avoidance takes over.
    """
    return max(cwnd, min(cwnd + max(acked, 0), ssthresh))


class NewReno(CongestionControl):
    """RFC 5681 slow start and congestion avoidance with RFC 6582 fast recovery."""

    name = "newreno"

    def __init__(self, mss: int, initial_window: int) -> None:
        super().__init__(mss, initial_window)
        self._ca_acked = 0
        self.hystart = HyStart()

    def on_rtt_sample(self, rtt: float, srtt: float | None) -> None:
        super().on_rtt_sample(rtt, srtt)
        self.hystart.on_rtt(rtt)

    def _slow_start(self, acked: int, flight: int, now: float) -> None:
        """Slow start (or HyStart++'s conservative slow start) for an ACK of ``acked``."""
        grow, done = self.hystart.grow(acked, flight, now, self.cwnd / self.mss)
        self.cwnd = slow_start(self.cwnd, self.ssthresh, grow, self.mss)
        if done:
            self.ssthresh = self.cwnd  # RFC 9406 §4.2: CSS over, avoidance from here

    def on_ack(self, acked: int, flight: int, now: float) -> None:
        if self.cwnd < self.ssthresh:
            self._slow_start(acked, flight, now)
        else:
            # Congestion avoidance: about one MSS per round trip, counted in bytes (RFC 3465).
            self._ca_acked += acked
            if self._ca_acked >= self.cwnd:
                self._ca_acked -= self.cwnd
                self.cwnd += self.mss

    def on_loss(self, flight: int, now: float) -> None:
        self.hystart.stop()
        # RFC 5681 §3.2 step 2 (equation 4), then inflate by the three duplicates.
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.ssthresh + 3 * self.mss

    def on_recovery_end(self, flight: int, now: float) -> None:
        # RFC 6582 §3.2 step 3, option (1) with the burst guard: min(ssthresh, flight + MSS).
        self.cwnd = max(min(self.ssthresh, flight + self.mss), self.mss)
        self._ca_acked = 0

    def on_timeout(self, flight: int, now: float) -> None:
        self.hystart.stop()
        # RFC 5681 §3.1 equation 4, and the loss window of one segment.
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._ca_acked = 0


class Cubic(NewReno):
    """CUBIC (RFC 9438): window growth as a cubic function of time since the last loss.

    Slow start, fast recovery and the timeout response are Reno's; congestion avoidance
    follows W_cubic(t) = C (t - K)^3 + W_max, never falling below the Reno-friendly
    estimate W_est (RFC 9438 §4.3), with fast convergence (§4.7). Windows are kept in
    segments inside the formulas, in bytes outside.
    """

    name = "cubic"
    C = 0.4
    BETA = 0.7

    def __init__(self, mss: int, initial_window: int) -> None:
        super().__init__(mss, initial_window)
        self._w_max = 0.0  # segments
        self._k = 0.0
        self._epoch: float | None = None  # start of the current avoidance epoch
        self._w_est = 0.0  # segments
        self._cwnd_prior = 0.0  # cwnd (segments) when ssthresh was last set
        # (W_max, K, epoch, W_est, cwnd_prior) before the last loss response, for undo.
        self._prior: tuple[float, float, float | None, float, float] | None = None

    def on_ack(self, acked: int, flight: int, now: float) -> None:
        if self.cwnd < self.ssthresh:
            self._slow_start(acked, flight, now)
            return
        mss = self.mss
        cwnd = self.cwnd / mss
        if self._epoch is None:
            # §4.2: a new epoch starts at the first ACK in congestion avoidance.
            self._epoch = now
            if self._w_max < cwnd:
                self._w_max = cwnd  # no loss seen yet at this size: the plateau is here
                self._k = 0.0
            else:
                self._k = ((self._w_max - cwnd) / self.C) ** (1 / 3)
            self._w_est = cwnd
        rtt = self.srtt or 0.1
        t = now - self._epoch
        target = self.C * (t + rtt - self._k) ** 3 + self._w_max  # W_cubic(t + RTT), §4.2
        target = min(max(target, cwnd), 1.5 * cwnd)
        # §4.3 Reno-friendly region: alpha = 3 (1 - beta) / (1 + beta), and 1 (Reno's)
        # once W_est is back at the window the last reduction started from.
        if self._w_est >= self._cwnd_prior:
            alpha = 1.0
        else:
            alpha = 3 * (1 - self.BETA) / (1 + self.BETA)
        self._w_est += alpha * (acked / mss) / cwnd
        if self._w_est > target:
            new = self._w_est
        else:
            new = cwnd + (target - cwnd) / cwnd * (acked / mss)  # §4.4
        self.cwnd = max(int(new * mss), self.cwnd)

    def on_loss(self, flight: int, now: float) -> None:
        self.hystart.stop()
        self._prior = (self._w_max, self._k, self._epoch, self._w_est, self._cwnd_prior)
        cwnd = self._cwnd_prior = self.cwnd / self.mss
        # §4.7 fast convergence: release bandwidth to newer flows.
        if cwnd < self._w_max:
            self._w_max = cwnd * (1 + self.BETA) / 2
        else:
            self._w_max = cwnd
        self.ssthresh = max(int(self.cwnd * self.BETA), 2 * self.mss)  # §4.6
        self.cwnd = self.ssthresh + 3 * self.mss
        self._epoch = None

    def on_undo(self, cwnd: int, ssthresh: int) -> None:
        # §4.9: a spurious reduction gives back the whole CUBIC state, not just the window
        # (else the plateau W_max stays at the cut and growth restarts its concave climb).
        super().on_undo(cwnd, ssthresh)
        if self._prior is not None:
            self._w_max, self._k, self._epoch, self._w_est, self._cwnd_prior = self._prior
            self._prior = None

    def on_timeout(self, flight: int, now: float) -> None:
        self._prior = None  # a timeout is never undone
        self._w_max = self._cwnd_prior = self.cwnd / self.mss
        super().on_timeout(flight, now)
        self.ssthresh = max(int(self._w_max * self.mss * self.BETA), 2 * self.mss)
        self._epoch = None


_ALGORITHMS: dict[str, Callable[[int, int], CongestionControl]] = {
    "newreno": NewReno,
    "cubic": Cubic,
}


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
