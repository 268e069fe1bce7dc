"""A connection's timers: one named deadline each, one place to list and cancel them.

Every timer of a connection is a deadline here, ``None`` when not armed. The connection
reports :meth:`Timers.earliest` as its next deadline (the endpoint keeps one real timer for
all its connections) and runs the expired ones in :meth:`Connection.handle_timer`. A timer
added here is seen by both :meth:`earliest` and :meth:`cancel_all`.
"""

from __future__ import annotations


class Timers:
    """The deadlines of one connection, in seconds of the caller's clock."""

    __slots__ = ("rto", "delack", "persist", "close", "keepalive", "pto", "rack", "pace")

    def __init__(self) -> None:
        #: Retransmission timeout (RFC 6298), SYN and SYN,ACK retransmission included.
        self.rto: float | None = None
        #: Delayed ACK (RFC 1122 §4.2.3.2).
        self.delack: float | None = None
        #: Persist timer: zero-window probes and the SWS override (RFC 9293 §3.8.6.1).
        self.persist: float | None = None
        #: 2 MSL in TIME-WAIT (§3.10.8), or the FIN-WAIT-2 timeout after close().
        self.close: float | None = None
        #: Keepalive probes (RFC 1122 §4.2.3.6).
        self.keepalive: float | None = None
        #: Tail loss probe (RFC 8985 §7).
        self.pto: float | None = None
        #: RACK reordering window (RFC 8985 §6.3).
        self.rack: float | None = None
        #: Pacing: when the token bucket has refilled for the next segment.
        self.pace: float | None = None

    def earliest(self) -> float | None:
        """The earliest armed deadline, or ``None`` when nothing is timed."""
        best: float | None = None
        for t in (
            self.rto,
            self.delack,
            self.persist,
            self.close,
            self.keepalive,
            self.pto,
            self.rack,
            self.pace,
        ):
            if t is not None and (best is None or t < best):
                best = t
        return best

    def cancel_all(self) -> None:
        """Disarm every timer."""
        self.rto = self.delack = self.persist = self.close = None
        self.keepalive = self.pto = self.rack = self.pace = None
