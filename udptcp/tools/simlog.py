"""Per-connection logs of the simulated network, and what can be read from them.

A :class:`FlowLog` is kept by :class:`~udptcp.tools.simnet.SimHost` for each connection.
On the sending side it records every transmission that occupies sequence space (time,
sequence range, whether it was a retransmission, the RTO and cwnd then), what became of each
copy on the way (arrived intact, or dropped where and why) and each advance of SND.UNA; on
the receiving side, the in-order bytes delivered to the application over time and their
SHA-256. From those it answers the questions tests ask: which retransmissions were needed,
how much arrived by a given time, how long a repair took.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import NamedTuple

from udptcp.core.connection import Connection
from udptcp.core.segment import FIN, Segment
from udptcp.core.seq import seq_diff

_MASK = 0xFFFFFFFF


class Transmission(NamedTuple):
    """One segment occupying sequence space, as the sending host put it on the wire."""

    time: float
    seq: int
    offset: int  # stream offset of ``seq`` (data starts at 0; the SYN is at -1)
    end: int  # stream offset just past the segment (SYN and FIN count one)
    flags: int
    retransmission: bool  # it starts below the highest sequence number sent before it
    rto: float  # the sender's retransmission timeout when it was sent
    cwnd: int  # the sender's congestion window when it was sent


class AckProgress(NamedTuple):
    """SND.UNA moved forward: everything before stream offset ``offset`` is acknowledged."""

    time: float
    offset: int
    rto: float  # the retransmission timeout then (the timer restarts from here)
    srtt: float | None


class Drop(NamedTuple):
    """A transmission (or one copy of it) that did not arrive intact."""

    time: float
    transmission: int  # index into ``FlowLog.sent``
    link: str
    fate: str


class Coverage:
    """A set of stream offsets held as sorted disjoint half-open intervals."""

    __slots__ = ("starts", "ends")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def covers(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self.starts, start) - 1
        return i >= 0 and self.ends[i] >= end

    def add(self, start: int, end: int) -> int:
        """Add ``[start, end)``; return how many offsets were not covered before."""
        starts, ends = self.starts, self.ends
        i = bisect.bisect_left(ends, start)  # first interval that ends at or after start
        j = bisect.bisect_right(starts, end)  # intervals before j start at or before end
        new = end - start
        for k in range(i, j):
            new -= max(min(ends[k], end) - max(starts[k], start), 0)
        if i < j:
            start = min(start, starts[i])
            end = max(end, ends[j - 1])
        starts[i:j] = [start]
        ends[i:j] = [end]
        return new


def buffer_figures(conn: Connection) -> tuple[int, int, int]:
    """(bytes in flight, largest window the peer offered, bytes held for reassembly).

    White-box: the reassembly size is read from the core's queue. This is the one place to
    change if the core renames it or exposes it in ``stats()``.
    """
    flight = seq_diff(conn.snd_max, conn.snd_una)
    reassembly = getattr(getattr(conn, "_reassembly", None), "size", 0)
    return flight, conn.max_snd_wnd, reassembly


class FlowLog:
    """Everything one host saw of one of its connections, for assertions after a run.

    Sender side: :attr:`sent` (every transmission occupying sequence space), :attr:`copies`
    (how many copies of each arrived intact at the peer host), :attr:`drops`, :attr:`acked`
    (each advance of SND.UNA), the largest bytes in flight and peer window. Receiver side:
    the in-order bytes delivered to the application over time, their SHA-256 and the largest
    reassembly queue.
    """

    def __init__(self, host: str, peer: str, conn: Connection) -> None:
        self.host = host
        self.peer = peer
        self.local_port = conn.local_port
        self.remote_port = conn.remote_port
        self._base = (conn.iss + 1) & _MASK
        self.sent: list[Transmission] = []
        self.copies: list[int] = []
        self.drops: list[Drop] = []
        self.high = -1  # stream offset past the highest byte sent
        self.segments_sent = 0  # every segment, pure ACKs included
        self.delivered_times: list[float] = []
        self.delivered_totals: list[int] = []
        self.bytes_delivered = 0
        self.sha256 = hashlib.sha256()
        self.max_flight = 0
        self.max_peer_window = 0
        self.max_reassembly = 0
        self.acked: list[AckProgress] = []
        self._una = conn.snd_una
        #: (time, index into ``sent``) of every copy that reached the peer host intact.
        self.arrivals: list[tuple[float, int]] = []
        self._arrived: tuple[int, list[float], list[int]] | None = None

    # -- recording (called by the simulator) ------------------------------------------

    def on_send(self, seg: Segment, conn: Connection, now: float) -> int:
        """Record a transmission; its index in :attr:`sent`, or -1 for a pure ACK."""
        self.segments_sent += 1
        n = seg.seg_len
        if n == 0:
            return -1
        off = seq_diff(seg.seq, self._base)
        end = off + n
        retx = off < self.high
        if end > self.high:
            self.high = end
        self.sent.append(
            Transmission(now, seg.seq, off, end, seg.flags, retx, conn.rtt.rto, conn.cc.cwnd)
        )
        self.copies.append(0)
        return len(self.sent) - 1

    def on_data(self, data: bytes, now: float) -> None:
        self.bytes_delivered += len(data)
        self.delivered_times.append(now)
        self.delivered_totals.append(self.bytes_delivered)
        self.sha256.update(data)

    def sample(self, conn: Connection, now: float) -> None:
        if conn.snd_una != self._una:
            self._una = conn.snd_una
            off = seq_diff(conn.snd_una, self._base)
            self.acked.append(AckProgress(now, off, conn.rtt.rto, conn.rtt.srtt))
        flight, window, reassembly = buffer_figures(conn)
        if window > self.max_peer_window:
            self.max_peer_window = window
        if window and flight > self.max_flight:
            self.max_flight = flight  # during the handshake (no window yet) the SYN is in flight
        if reassembly > self.max_reassembly:
            self.max_reassembly = reassembly

    # -- analysis --------------------------------------------------------------------

    @property
    def retransmissions(self) -> list[Transmission]:
        return [t for t in self.sent if t.retransmission]

    def spurious_retransmissions(self) -> list[Transmission]:
        """Retransmissions whose every byte had already reached the peer host intact, in a
        copy sent earlier (so the retransmission was not needed)."""
        have = Coverage()
        out = []
        for tx, copies in zip(self.sent, self.copies):
            if tx.retransmission and have.covers(tx.offset, tx.end):
                out.append(tx)
            if copies:
                have.add(tx.offset, tx.end)
        return out

    def acked_before(self, t: float) -> AckProgress | None:
        """The last advance of SND.UNA at or before time ``t``."""
        i = bisect.bisect_right([a.time for a in self.acked], t)
        return self.acked[i - 1] if i else None

    def arrived_at(self, t: float) -> int:
        """Distinct data bytes that had reached the peer host intact by time ``t``, in
        order or not: unlike :meth:`delivered_at` on the receiver's log, it does not
        jump when a hole fills, so it measures goodput over short windows faithfully."""
        cache = self._arrived
        if cache is None or cache[0] != len(self.arrivals):
            have = Coverage()
            times: list[float] = []
            totals: list[int] = []
            total = 0
            for when, i in self.arrivals:
                tx = self.sent[i]
                start = max(tx.offset, 0)  # the SYN is not data, nor the FIN
                end = tx.end - 1 if tx.flags & FIN else tx.end
                if end > start:
                    total += have.add(start, end)
                    times.append(when)
                    totals.append(total)
            cache = self._arrived = (len(self.arrivals), times, totals)
        i = bisect.bisect_right(cache[1], t)
        return cache[2][i - 1] if i else 0

    def transmissions_of(self, offset: int) -> list[Transmission]:
        """Every transmission carrying stream offset ``offset``, oldest first."""
        return [t for t in self.sent if t.offset <= offset < t.end]

    def delivered_at(self, t: float) -> int:
        """In-order bytes delivered to the application by time ``t``."""
        i = bisect.bisect_right(self.delivered_times, t)
        return self.delivered_totals[i - 1] if i else 0

    def time_delivered(self, nbytes: int) -> float | None:
        """When the application had received ``nbytes`` in order (None if never)."""
        i = bisect.bisect_left(self.delivered_totals, nbytes)
        return self.delivered_times[i] if i < len(self.delivered_times) else None

    def goodput(self, t0: float, t1: float) -> float:
        """Application bytes per second delivered in ``(t0, t1]``."""
        if t1 <= t0:
            return 0.0
        return (self.delivered_at(t1) - self.delivered_at(t0)) / (t1 - t0)
