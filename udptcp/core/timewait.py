"""A closed connection's TIME-WAIT as a small record, sans I/O.

Once a connection reaches TIME-WAIT (RFC 9293 §3.10.7.4) its application has been told it is
closed and nothing of its buffers, congestion state or logs matters any more: for 2 MSL it
only has to answer the few segments the RFC lists, and hold its 4-tuple against old
duplicates. Linux keeps a ``tcp_timewait_sock`` for this, a fraction of a full socket;
:class:`TimeWait` is the same idea: the sequence numbers, the timestamp state, the window it
advertised, the deadline and the rate limits of its answers, in one object with
``__slots__``. The endpoint keeps these records (bounded by ``Config.max_time_wait``) and lets
the :class:`~udptcp.core.connection.Connection` go.

The record answers exactly as the connection would have in TIME-WAIT (a differential test
pins the two together):

* a retransmitted FIN (the peer lost our last ACK) is acknowledged and restarts the 2 MSL
  timer (§3.10.7.4, eighth step); so is a FIN at RCV.NXT that passes the checks;
* an unacceptable segment draws an ACK (at most one per 500 ms, as the connection's own
  rule), a retransmission of old data one at once, with a D-SACK block when SACK is in use
  (RFC 2883);
* PAWS (RFC 7323 §5.3) and the "every segment carries a timestamp" rule (§3.2) apply as
  before;
* a RST is ignored (RFC 1337), or draws a challenge ACK when its sequence number is not
  RCV.NXT (RFC 5961 §3.2); a SYN that may not reopen the 4-tuple draws a challenge ACK
  (RFC 5961 §4.2); both rate-limited (RFC 5961 §7);
* an ACK of something never sent draws an ACK, one far below SND.UNA a challenge ACK
  (RFC 5961 §5.2);
* :meth:`TimeWait.accepts_reopen` / :meth:`TimeWait.reopen_iss` decide an RFC 6191 reopen
  as :meth:`Connection.accepts_reopen <udptcp.core.connection.Connection.accepts_reopen>`
  does.

A segment for the 4-tuple after the deadline finds no record and is answered as a closed
port answers it (RST, §3.10.7.1), by the endpoint.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING

from .segment import ACK, FIN, RST, SYN, Options, Segment
from .seq import in_window, seq_add, seq_diff, seq_gt, seq_le, seq_lt
from .state import State

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["TimeWait"]

_MASK = 0xFFFFFFFF
# The connection's own answer limits (connection.py): one ACK per 500 ms for unacceptable
# segments (Linux's tcp_invalid_ratelimit), ten challenge ACKs a second (RFC 5961 §7).
_INVALID_ACK_INTERVAL = 0.5
_CHALLENGE_ACKS_PER_SECOND = 10

Counters = MutableMapping[str, int]


class TimeWait:
    """What is left of a connection in TIME-WAIT: enough to answer its peer for 2 MSL.

    Build one with :meth:`from_connection`. :meth:`receive` takes a segment for the
    4-tuple and returns the ACK to send, if any; ``deadline`` is when the record may be
    forgotten (it moves when a retransmitted FIN restarts the timer).
    """

    __slots__ = (
        "local_port",
        "remote_port",
        "snd_nxt",
        "snd_una",
        "max_snd_wnd",
        "snd_wl1",
        "snd_wl2",
        "snd_wscale",
        "rcv_nxt",
        "rcv_wnd",
        "rcv_space",
        "window",
        "sack_ok",
        "ts_enabled",
        "ts_reopen",
        "ts_recent",
        "ts_offset",
        "ts_last",
        "last_ack_sent",
        "msl",
        "deadline",
        "_invalid_ack_time",
        "_challenge_window",
        "_challenge_count",
    )

    def __init__(
        self,
        *,
        local_port: int,
        remote_port: int,
        snd_nxt: int,
        rcv_nxt: int,
        window: int,
        deadline: float,
        msl: float,
        rcv_wnd: int = 0,
        rcv_space: int = 0,
        snd_una: int | None = None,
        max_snd_wnd: int = 0,
        snd_wl1: int = 0,
        snd_wl2: int = 0,
        snd_wscale: int = 0,
        sack_ok: bool = False,
        ts_enabled: bool = False,
        ts_reopen: bool = False,
        ts_recent: int = 0,
        ts_offset: int = 0,
        ts_last: int | None = None,
        last_ack_sent: int | None = None,
    ) -> None:
        self.local_port = local_port
        self.remote_port = remote_port
        #: SND.MAX of the old connection: every ACK carries it (our FIN is acknowledged).
        self.snd_nxt = snd_nxt & _MASK
        self.snd_una = self.snd_nxt if snd_una is None else snd_una & _MASK
        # The largest window the peer offered (RFC 5961 §5.2's bound on old ACKs), and what
        # decides whether a segment may still raise it (§3.10.7.4 fifth step).
        self.max_snd_wnd = max_snd_wnd
        self.snd_wl1 = snd_wl1
        self.snd_wl2 = snd_wl2
        self.snd_wscale = snd_wscale
        #: Just past the peer's FIN.
        self.rcv_nxt = rcv_nxt & _MASK
        #: The receive window last advertised (RCV.WND), for the acceptability test.
        self.rcv_wnd = max(rcv_wnd, 0)
        self.rcv_space = rcv_space
        #: The window field every answer carries (already scaled).
        self.window = window
        self.sack_ok = sack_ok
        self.ts_enabled = ts_enabled
        #: Whether RFC 6191 decides a reopen by timestamps.
        self.ts_reopen = ts_reopen
        self.ts_recent = ts_recent
        self.ts_offset = ts_offset
        self.ts_last = ts_last
        self.last_ack_sent = self.rcv_nxt if last_ack_sent is None else last_ack_sent & _MASK
        self.msl = msl
        self.deadline = deadline
        self._invalid_ack_time = -_INVALID_ACK_INTERVAL
        self._challenge_window = 0.0
        self._challenge_count = 0

    @classmethod
    def from_connection(cls, conn: Connection, now: float) -> TimeWait:
        """The record of ``conn``, which must be in TIME-WAIT (its deadline is kept).

        Reads the connection's private state: the record is its continuation, not a user
        of its API. The window field is computed as the connection's next ACK would.
        """
        if conn.state is not State.TIME_WAIT:
            raise ValueError(
                f"a TIME-WAIT record needs a connection in TIME-WAIT, not {conn.state}"
            )
        window = conn._window_field()  # records the edge it advertises, as an ACK would
        deadline = conn._close_deadline
        # Filled in directly rather than through __init__'s keywords (a record is made on
        # every active close); the values are the connection's own, already in range.
        record = cls.__new__(cls)
        record.local_port = conn.local_port
        record.remote_port = conn.remote_port
        record.snd_nxt = conn._ack_seq & _MASK
        record.snd_una = conn.snd_una & _MASK
        record.max_snd_wnd = conn.max_snd_wnd
        record.snd_wl1 = conn.snd_wl1
        record.snd_wl2 = conn.snd_wl2
        record.snd_wscale = conn.snd_wscale
        record.rcv_nxt = conn.rcv_nxt & _MASK
        record.rcv_wnd = max(seq_diff(conn._rcv_adv, conn.rcv_nxt), 0)
        record.rcv_space = conn._rcv_space
        record.window = window
        record.sack_ok = conn.sack_ok
        ts_enabled = record.ts_enabled = conn.ts_enabled
        record.ts_reopen = ts_enabled and conn.config.timestamps
        record.ts_recent = conn.ts_recent
        record.ts_offset = conn._ts_offset
        record.ts_last = conn._ts_last
        record.last_ack_sent = conn._last_ack_sent & _MASK
        msl = record.msl = conn.config.msl
        record.deadline = deadline if deadline is not None else now + 2 * msl
        record._invalid_ack_time = conn._invalid_ack_time
        record._challenge_window = conn._challenge_window
        record._challenge_count = conn._challenge_count
        return record

    def __repr__(self) -> str:
        return (
            f"<TimeWait vports={self.local_port}->{self.remote_port} snd={self.snd_nxt} "
            f"rcv={self.rcv_nxt} until={self.deadline:.3f}>"
        )

    # ------------------------------------------------------------------ RFC 6191 reopen

    def accepts_reopen(self, syn: Segment) -> bool:
        """May ``syn`` open a new incarnation of this 4-tuple? RFC 6191 §2 with timestamps
        (a newer TSval, or an equal one and a higher sequence number), else RFC 1122
        §4.2.2.13 (a sequence number beyond RCV.NXT)."""
        ts = syn.options.timestamps if syn.options is not None else None
        if self.ts_reopen and ts is not None:
            if seq_gt(ts[0], self.ts_recent):
                return True
            return ts[0] == self.ts_recent and seq_gt(syn.seq, self.rcv_nxt)
        return seq_gt(syn.seq, self.rcv_nxt)

    def reopen_iss(self) -> int:
        """The ISN of a reopened incarnation: beyond everything the old one sent."""
        return seq_add(self.snd_nxt, 65537)

    def expired(self, now: float) -> bool:
        """True once 2 MSL have passed since the last (re)start of the timer."""
        return now >= self.deadline

    # ------------------------------------------------------------------ segment arrival

    def receive(self, seg: Segment, now: float, counters: Counters | None = None) -> Segment | None:
        """Process ``seg`` (§3.10.7.4 for TIME-WAIT); return the ACK to send, or None.

        ``counters`` (optional) gets the connection's counter names for what was dropped
        or rate-limited. Never raises for peer input.
        """
        flags = seg.flags
        opts = seg.options
        ts = opts.timestamps if self.ts_enabled and opts is not None else None
        if self.ts_enabled and ts is None and not flags & RST:
            _count(counters, "missing_timestamp_dropped")  # RFC 7323 §3.2
            return None
        if ts is not None and not flags & RST and seq_lt(ts[0], self.ts_recent):
            _count(counters, "paws_rejected")  # RFC 7323 §5.3
            return self._invalid_ack(now, counters)

        seg_len = seg.seg_len
        wnd = self.rcv_wnd
        if not in_window(self.rcv_nxt, wnd, seg.seq, seg_len):
            if flags & RST:
                return None
            retransmission = False
            dsack = None
            rcv_nxt = self.rcv_nxt
            if seg.payload and seq_lt(seg.seq, rcv_nxt):
                retransmission = seq_diff(rcv_nxt, seg.seq) <= max(self.rcv_space, wnd)
                _count(counters, "duplicate_bytes_received", len(seg.payload))
                if retransmission:
                    dsack = (seg.seq, seq_add(seg.seq, len(seg.payload)))
            if flags & FIN and seq_add(seg.seq, seg_len) == rcv_nxt:
                # The peer lost our last ACK and sent its FIN again: ACK, restart 2 MSL.
                self.deadline = now + 2 * self.msl
                retransmission = True
            elif wnd == 0 and seg.seq == rcv_nxt and flags & ACK:
                self._check_ack(seg, now, counters)
                retransmission = True
            if retransmission:
                return self._ack(now, dsack)
            return self._invalid_ack(now, counters)

        if ts is not None and seq_le(seg.seq, self.last_ack_sent):
            self.ts_recent = ts[0]
        if flags & RST:
            if seg.seq != self.rcv_nxt:
                return self._challenge_ack(now, counters)  # RFC 5961 §3.2
            return None  # RFC 1337: a RST does not end TIME-WAIT early
        if flags & SYN:
            return self._challenge_ack(now, counters)  # RFC 5961 §4.2
        if not flags & ACK:
            return None
        refused, answer = self._check_ack(seg, now, counters)
        if refused:
            return answer
        if flags & FIN:
            self.deadline = now + 2 * self.msl
            return self._ack(now)
        return None

    def _check_ack(
        self, seg: Segment, now: float, counters: Counters | None
    ) -> tuple[bool, Segment | None]:
        """The fifth step: ``(True, answer)`` for an ACK field to refuse, ``(False, None)``
        when it is fine (our FIN is acknowledged already: nothing is left to learn)."""
        ack = seg.ack
        if seq_gt(ack, self.snd_nxt):
            return True, self._invalid_ack(now, counters)  # acknowledges what was never sent
        if seq_lt(ack, seq_add(self.snd_una, -self.max_snd_wnd)):
            return True, self._challenge_ack(now, counters)  # RFC 5961 §5.2
        if seq_lt(self.snd_wl1, seg.seq) or (self.snd_wl1 == seg.seq and seq_le(self.snd_wl2, ack)):
            # The window of a newer segment still raises the bound above (the connection
            # would take it; nothing else depends on it now).
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
            self.max_snd_wnd = max(self.max_snd_wnd, seg.window << self.snd_wscale)
        return False, None

    # ------------------------------------------------------------------ answers

    def _invalid_ack(self, now: float, counters: Counters | None) -> Segment | None:
        last = self._invalid_ack_time
        if now - last >= _INVALID_ACK_INTERVAL or now < last:
            self._invalid_ack_time = now
            return self._ack(now)
        _count(counters, "invalid_acks_suppressed")
        return None

    def _challenge_ack(self, now: float, counters: Counters | None) -> Segment | None:
        if now - self._challenge_window >= 1.0:
            self._challenge_window = now
            self._challenge_count = 0
        if self._challenge_count < _CHALLENGE_ACKS_PER_SECOND:
            self._challenge_count += 1
            _count(counters, "challenge_acks")
            return self._ack(now)
        return None

    def _ack(self, now: float, dsack: tuple[int, int] | None = None) -> Segment:
        blocks = (dsack,) if dsack is not None and self.sack_ok else ()
        options = None
        if self.ts_enabled or blocks:
            ts = (self._tsval(now), self.ts_recent) if self.ts_enabled else None
            options = Options(timestamps=ts, sack_blocks=blocks)
        self.last_ack_sent = self.rcv_nxt
        return Segment(
            self.local_port, self.remote_port, self.snd_nxt, self.rcv_nxt, ACK, self.window, options
        )

    def _tsval(self, now: float) -> int:
        """The old connection's timestamp clock, never going backwards (RFC 7323 §5.4)."""
        ts = (int(now * 1000) + self.ts_offset) & _MASK
        last = self.ts_last
        if last is not None and seq_lt(ts, last):
            return last
        self.ts_last = ts
        return ts


def _count(counters: Counters | None, name: str, n: int = 1) -> None:
    if counters is not None:
        counters[name] = counters.get(name, 0) + n
