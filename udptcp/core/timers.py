"""A connection's timers: one named deadline each, one place to list and cancel them.

Every timer of a connection is a deadline here, ``None`` when not armed. The connection
reports :meth:`Timers.earliest` as its next deadline (the endpoint keeps one real timer for
all its connections) and runs the expired ones in :meth:`Connection.handle_timer`. A timer
added here is seen by both :meth:`earliest` and :meth:`cancel_all`.
"""

from __future__ import annotations

#: Keepalive deadlines are spread over this fraction of the idle time (see
#: :func:`keepalive_wait`) ...
KEEPALIVE_SPREAD = 1 / 16
#: ... and rounded up to a grid of this fraction of it: 64 steps across the spread.
KEEPALIVE_GRAIN = KEEPALIVE_SPREAD / 64


def keepalive_wait(idle: float, iss: int) -> float:
    """How long a connection waits in silence before its first keepalive probe: ``idle``
    plus a fixed share of ``idle * KEEPALIVE_SPREAD`` drawn from the connection's ISS.

    Connections opened together go idle together; without the spread their probes (and
    the peers' ACKs) would all fall due in the same instant, every idle period, and a
    burst of thousands of probes both overflows socket buffers and makes the two sides of
    a connection probe each other at once instead of one answering the other. The share
    only lengthens the wait, so RFC 1122 §4.2.3.6 still holds (no probe before ``idle``
    seconds of silence). The ISS is already unpredictable (RFC 6528) and the sans-I/O
    core takes no random source of its own; the multiplicative hash mixes its bits so
    ISSs that differ only in their high bits spread as well."""
    share = ((iss * 0x9E3779B1) & 0xFFFFFFFF) / 4294967296.0
    return idle + idle * KEEPALIVE_SPREAD * share


def keepalive_deadline(now: float, wait: float, grain: float) -> float:
    """The first probe's deadline after a segment at ``now``: ``now + wait`` rounded up to
    a multiple of ``grain`` (``idle * KEEPALIVE_GRAIN``).

    Spread deadlines each cost a wake-up of their own on both sides (the timer, then the
    probe's arrival, then its ACK's); on a grid the connections due in one step share
    them, as Linux rounds its keepalive timers to whole jiffies. The arrival path inlines
    the same expression (it runs for every segment)."""
    return (now + wait) // grain * grain + grain


#: The names of the deadlines a :class:`Timers` holds, in its slot order (the class's own
#: ``__slots__`` is not visible when the module is compiled with mypyc).
TIMER_NAMES = ("rto", "delack", "persist", "close", "keepalive", "pto", "rack", "pace")


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
