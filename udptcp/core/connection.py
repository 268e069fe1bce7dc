"""The RFC 9293 connection state machine, sans I/O.

A :class:`Connection` is fed segments (:meth:`Connection.receive`), application calls
(:meth:`send`, :meth:`shutdown`, :meth:`close`, :meth:`abort`) and timer expiries
(:meth:`handle_timer`), each with the current time as an argument. It answers with segments to
transmit (:meth:`take_segments`), events for the application (:meth:`take_events`) and its
next deadline (:meth:`get_timer`). It never touches a socket, an event loop or a clock.

This module holds the public face: opening (active, passive, from a SYN cookie), the
application's calls, ICMP reports, the timers' dispatch and the statistics. The work is done
by the parts it stands on, one responsibility each, from the bottom up:

* :mod:`.control` the transmission control block (the variables, in ``__slots__``) and the
  state transitions, decided by the table in :mod:`.state`;
* :mod:`.receiver` reassembly, delivery, receive window, delayed ACK, SACK blocks to send;
* :mod:`.sender` building and sending segments, Nagle, silly window avoidance, persist;
* :mod:`.pmtu` the path MTU search;
* :mod:`.recovery` loss detection and repair, TLP, RTO, and every call into congestion
  control;
* :mod:`.arrival` an incoming segment, in the order of RFC 9293 §3.10.7.

Section numbers in comments refer to RFC 9293 unless another RFC is named.
"""

from __future__ import annotations

from .amplification import AmplificationBudget, received_size
from .arrival import Arrival
from .config import Config
from .control import _HALF, _INITIAL_RCV_SPACE, _MASK, _MAX_WINDOW_FIELD, _MAX_WSCALE, _wscale_for
from .cookies import encode_ts_choices
from .errors import refused, reset, timed_out
from .events import DataReceived, EofReceived, Event
from .segment import ACK, RST, SYN, Options, Segment
from .seq import seq_add, seq_gt, seq_le
from .state import ACCEPTS_WRITES as _ACCEPTS_WRITES
from .state import KEEPALIVE_STATES as _KEEPALIVE_STATES
from .state import SYNCHRONIZED as _SYNCHRONIZED
from .state import TRANSITIONS, Cause, IllegalTransition, LocalProtocolError, State
from .timers import KEEPALIVE_GRAIN, keepalive_deadline, keepalive_wait

S = State
C = Cause
__all__ = [
    "FOREIGN_SYN_ROUNDS",
    "ICMP_DEAD_ROUNDS",
    "PEER_INPUT_COUNTERS",
    "TRANSITIONS",
    "Cause",
    "Connection",
    "IllegalTransition",
    "LocalProtocolError",
    "MIN_WINDOW_CLAMP",
    "State",
    "rst_for",
]

#: Consecutive timer-driven retransmissions (RTO, zero-window or keepalive probe), each
#: answered by ICMP port unreachable with nothing from the peer meanwhile, after which a
#: connection is taken to be dead (see Connection.icmp_unreachable).
ICMP_DEAD_ROUNDS = 2
#: SYN transmissions answered only by datagrams that are not udptcp segments after which a
#: connect is refused (see Connection.foreign_datagram).
FOREIGN_SYN_ROUNDS = 2
#: The lowest receive-window clamp set_window_clamp takes: 64 KiB, the largest window
#: without scaling (a socket buffer too small to hold even that drops what it must).
MIN_WINDOW_CLAMP = 64 * 1024


#: Connection counters of hostile or broken peer input (and the limits it hit), which an
#: endpoint also totals over all its connections (``Endpoint.statistics()``).
PEER_INPUT_COUNTERS = (
    "peer_mss_clamped",
    "challenge_acks",
    "invalid_acks_suppressed",
    "excess_duplicate_acks",
    "missing_timestamp_dropped",
    "paws_rejected",
    "reassembly_dropped",
    "reassembly_pruned",
    "beyond_fin_dropped",
    "icmp_rejected",
)


def rst_for(seg: Segment) -> Segment | None:
    """The reset a CLOSED port answers ``seg`` with (§3.10.7.1), or ``None`` for a RST."""
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return Segment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
    return Segment(seg.dst_port, seg.src_port, 0, seq_add(seg.seq, seg.seg_len), RST | ACK, 0)


class Connection(Arrival):
    """One TCP connection: the transmission control block and its state machine.

    The public face of the parts stacked under it (see :mod:`udptcp.core.control`). It keeps
    an instance ``__dict__`` so that tests and tools may wrap a method of one connection.
    """

    @classmethod
    def connect(
        cls, config: Config, *, local_port: int, remote_port: int, iss: int, mss: int, now: float
    ) -> Connection:
        """Active open (§3.10.1): send SYN, enter SYN-SENT."""
        conn = cls(config, local_port=local_port, remote_port=remote_port, iss=iss, mss=mss)
        conn._now = now
        conn._transition(C.ACTIVE_OPEN)
        conn._send_syn(now)
        return conn

    @classmethod
    def accept(
        cls,
        config: Config,
        syn: Segment,
        *,
        iss: int,
        mss: int,
        now: float,
        received: int | None = None,
        wire_extra: tuple[int, int] = (0, 0),
    ) -> Connection:
        """Passive open from a listener receiving ``syn`` (§3.10.7.2): answer SYN-ACK.

        ``received`` is the size of the datagram that carried ``syn`` (by default the
        least its segment can take): until the handshake completes, the connection sends
        the peer at most three times the bytes it received from it, SYN-ACK
        retransmissions and resets included (see :mod:`udptcp.core.amplification`).
        ``wire_extra`` is what the layer below adds to each SYN-ACK and to each other
        segment on its way out (secure mode), which that budget counts too.
        """
        conn = cls(
            config,
            local_port=syn.dst_port,
            remote_port=syn.src_port,
            iss=iss,
            mss=mss,
            passive=True,
        )
        conn._now = now
        conn._wire_syn_extra, conn._wire_extra = wire_extra
        conn._amp = AmplificationBudget(received if received is not None else received_size(syn))
        conn._take_peer_syn(syn)
        conn._transition(C.RCV_SYN)
        conn._send_syn(now)
        return conn

    @classmethod
    def from_cookie(
        cls,
        config: Config,
        ack: Segment,
        *,
        iss: int,
        mss: int,
        peer_mss: int,
        wscale: int | None,
        sack: bool,
        now: float,
    ) -> Connection:
        """Passive open completed by a SYN cookie (RFC 4987 §3.6).

        The caller has checked that ``ack`` acknowledges the cookie ``iss`` and recovered
        from it the peer's MSS and, from its timestamps, the peer's window-scale shift
        (``None``: no window scaling) and SACK-permitted choices. The connection is built
        as :meth:`accept` would have built it from that SYN, as though the SYN-ACK of
        :meth:`cookie_syn_ack` had been sent, and then takes ``ack`` as its final
        handshake segment: LISTEN, SYN-RECEIVED, ESTABLISHED, with data carried on the ACK
        delivered. It never holds an amplification budget: the ACK proved the address.
        """
        ts = ack.options.timestamps if ack.options is not None else None
        use_ts = ts is not None and config.timestamps
        syn = Segment(
            ack.src_port,
            ack.dst_port,
            seq_add(ack.seq, -1),
            0,
            SYN,
            0,
            Options(
                mss=peer_mss,
                wscale=wscale if use_ts else None,
                sack_permitted=sack and use_ts,
                timestamps=(ts[0], 0) if use_ts and ts is not None else None,
            ),
        )
        conn = cls(
            config,
            local_port=ack.dst_port,
            remote_port=ack.src_port,
            iss=iss,
            mss=mss,
            passive=True,
        )
        conn._now = now
        conn._take_peer_syn(syn)
        conn._transition(C.RCV_SYN)
        # What sending the cookie's SYN,ACK would have recorded: our SYN is outstanding,
        # the window it advertised (a fresh connection's, as in cookie_syn_ack), the ACK.
        conn.snd_nxt = conn.snd_max = seq_add(conn.iss, 1)
        conn._window_field(syn=True)
        conn._ack_sent(conn.rcv_nxt)
        conn.receive(ack, now)
        return conn

    @staticmethod
    def cookie_syn_ack(config: Config, syn: Segment, *, iss: int, mss: int, now: float) -> Segment:
        """The SYN-ACK that answers ``syn`` with SYN cookie ``iss``, keeping no state.

        It is the SYN-ACK :meth:`accept` would send (a fresh connection's window, our MSS,
        and only options the SYN offered), except that without timestamps it offers neither
        window scaling nor SACK, and with them its TSval carries the peer's window-scale
        and SACK choices (``udptcp.core.cookies.encode_ts_choices``) for the final ACK to
        echo back. :meth:`from_cookie` rebuilds the same connection from that ACK.
        """
        opts = syn.options
        our_mss = mss if config.pmtu_max is None else max(mss, config.pmtu_max - 20)
        wscale: int | None = None
        sack = False
        timestamps: tuple[int, int] | None = None
        if opts is not None and opts.timestamps is not None and config.timestamps:
            peer_wscale = opts.wscale if config.window_scaling else None
            sack = opts.sack_permitted and config.sack
            tsval = encode_ts_choices(
                (int(now * 1000) + iss) & _MASK,  # _tsval()'s clock with _ts_offset = iss
                None if peer_wscale is None else min(peer_wscale, _MAX_WSCALE),
                sack,
            )
            timestamps = (tsval, opts.timestamps[0])
            if peer_wscale is not None:
                wscale = _wscale_for(config.receive_buffer)
        window = min(config.receive_buffer, _INITIAL_RCV_SPACE, _MAX_WINDOW_FIELD)
        return Segment(
            syn.dst_port,
            syn.src_port,
            iss & _MASK,
            seq_add(syn.seq, 1),
            SYN | ACK,
            window,
            Options(mss=our_mss, wscale=wscale, sack_permitted=sack, timestamps=timestamps),
        )

    def send(self, data: bytes | bytearray | memoryview, now: float, more: bool = False) -> None:
        """Queue ``data``; it is never dropped, only delayed by the windows (§3.10.2).

        ``more=True`` says more data is likely to follow at once (Linux's ``MSG_MORE``, its
        "autocorking" made explicit): a last segment shorter than the MSS is then held back
        while earlier data is in flight, so that the next send fills it instead of the two
        going out as a full and a short segment. :attr:`tail_held` is then True and the
        caller must call :meth:`push` soon (the asyncio adapter does so on the event loop's
        next turn); until then, as with Nagle's algorithm, the short segment goes out only
        once nothing else is in flight. A write made with nothing in flight is sent whole,
        at once.
        """
        self._now = now
        if self.state not in _ACCEPTS_WRITES or self._fin_queued:
            raise LocalProtocolError(f"cannot send in state {self.state.value}")
        if not data:
            return
        # Only while an earlier write's data is in flight: a write made with nothing in
        # flight (a response, say) goes out whole, or its short last segment would reach the
        # peer in a read of its own, one driver turn later.
        if more and self.snd_una != self.snd_max:
            self._more = True
        self._sendbuf.append(data)
        self._output(now)
        if not self.tail_held:
            self._more = False  # nothing held: no push owed

    def push(self, now: float) -> None:
        """Send a short segment :meth:`send` held back (``more=True``), if the windows
        allow; ends the hold."""
        self._now = now
        self._more = self.tail_held = False
        self._output(now)

    def shutdown(self, now: float) -> None:
        """Half-close: send FIN after the queued data; keep receiving (§3.10.4)."""
        self._now = now
        if self._fin_queued:
            return
        st = self.state
        if st in (S.SYN_SENT, S.LISTEN, S.CLOSED):
            # §3.10.4: no data could have been sent yet; there is nobody to tell.
            self._enter_closed(None, C.CLOSE)
            return
        if st not in (S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT):
            return
        self._fin_queued = True
        if st is not S.SYN_RECEIVED:
            self._transition(C.CLOSE)  # FIN-WAIT-1, or LAST-ACK from CLOSE-WAIT
        # In SYN-RECEIVED the FIN waits for ESTABLISHED (§3.10.4), then FIN-WAIT-1.
        self._output(now)

    def close(self, now: float) -> None:
        """Close: FIN after queued data; the application reads nothing more.

        Closing with received data still unread resets the connection instead, and so does
        new data arriving after the close: the peer must learn that what it sent was not
        read (RFC 9293 §3.10.4 and RFC 2525 §2.17; RFC 1122 §4.2.2.13), as kernel TCP does.
        """
        self._now = now
        self._app_closed = True
        self._discard_input = True
        self._eof_pending = False  # nothing is reported to an application that closed
        if self._held and self.state in _SYNCHRONIZED | {S.SYN_RECEIVED}:
            self._held.clear()
            self.abort(now)
            return
        self._held.clear()
        self.shutdown(now)
        if self.state is S.FIN_WAIT_2 and self.timers.close is None:
            self.timers.close = now + self.config.fin_wait2_timeout

    def abort(self, now: float) -> None:
        """Reset the connection (§3.10.5): RST to the peer when synchronized, then CLOSED."""
        self._now = now
        if self.state in (S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT):
            # SND.MAX, not the possibly rewound SND.NXT, so the peer finds it in its window.
            self._emit(Segment(self.local_port, self.remote_port, self.snd_max, 0, RST, 0), now)
        self._enter_closed(None, C.ABORT)

    def fail(self, error: BaseException, now: float) -> None:
        """End the connection at once with ``error``, sending nothing: a layer above the
        state machine (secure mode) refused the peer and has answered it itself."""
        self._now = now
        if self.state is not S.CLOSED:
            self._enter_closed(error, C.ABORT)

    def pause_reading(self) -> None:
        """Hold in-order data in the core; the advertised window shrinks as it fills."""
        self._reading = False

    def resume_reading(self, now: float) -> None:
        """Deliver held data and reopen the window, telling the peer if it had closed."""
        self._now = now
        if self._reading:
            return
        self._reading = True
        if self._held:
            data = bytes(self._held)
            self._held.clear()
            self._events.append(DataReceived(data))
        if self._eof_pending:
            self._eof_pending = False
            self._events.append(EofReceived())
        # §3.8.6.2.2: tell the peer once the window has opened by a useful amount.
        if self.state in _SYNCHRONIZED and self._window_update_due():
            self._ack_now = True
        self._output(now)

    def set_keepalive(
        self,
        enabled: bool,
        idle: float | None = None,
        interval: float | None = None,
        count: int | None = None,
    ) -> None:
        """Turn keepalive on or off and change its timing (``SO_KEEPALIVE``, ``TCP_KEEPIDLE``,
        ``TCP_KEEPINTVL``, ``TCP_KEEPCNT``); takes effect from the next segment or timer."""
        self.keepalive = enabled
        if idle is not None:
            self.keepalive_idle = idle
            self._keepalive_wait = keepalive_wait(idle, self.iss)
            self._keepalive_grain = idle * KEEPALIVE_GRAIN
        if interval is not None:
            self.keepalive_interval = interval
        if count is not None:
            self.keepalive_count = count
        if not enabled:
            self.timers.keepalive = None
        elif self.timers.keepalive is None and self.state in _KEEPALIVE_STATES:
            self.timers.keepalive = keepalive_deadline(
                self._now, self._keepalive_wait, self._keepalive_grain
            )

    def set_window_clamp(self, limit: int) -> None:
        """Let the receive window grow to ``limit`` bytes at most, below
        ``Config.receive_buffer`` (Linux's ``TCP_WINDOW_CLAMP``); at least 64 KiB. The
        asyncio adapter sets half the UDP socket's receive buffer, so that a window's worth
        of datagrams fits there. A window already offered is not taken back (its right
        edge never moves left, RFC 9293 §3.8.6.2.1); it stops growing until data is read.
        """
        clamp = min(self.config.receive_buffer, max(limit, MIN_WINDOW_CLAMP))
        self._rcv_clamp = clamp
        if self._rcv_space > clamp:
            self._rcv_space = clamp

    def set_nodelay(self, nodelay: bool) -> None:
        """Turn Nagle's algorithm off (``True``) or on (``False``)."""
        self.nodelay = nodelay

    def accepts_reopen(self, syn: Segment) -> bool:
        """In TIME-WAIT: may ``syn`` open a new incarnation of this connection's 4-tuple?

        RFC 6191 §2: when timestamps would be in use for the new incarnation (the old one
        had them and the SYN carries one), a SYN is new if its TSval is newer than the
        last one seen, or equal with a higher sequence number; otherwise (RFC 1122
        §4.2.2.13) its sequence number must lie beyond RCV.NXT. Anything else is left to
        TIME-WAIT's own handling (an old duplicate SYN draws a challenge ACK).
        """
        if self.state is not S.TIME_WAIT:
            return False
        ts = syn.options.timestamps if syn.options is not None else None
        if self.ts_enabled and ts is not None and self.config.timestamps:
            if seq_gt(ts[0], self.ts_recent):
                return True
            return ts[0] == self.ts_recent and seq_gt(syn.seq, self.rcv_nxt)
        return seq_gt(syn.seq, self.rcv_nxt)

    def reopen_iss(self) -> int:
        """The ISN for a new incarnation reopened from this TIME-WAIT connection: beyond
        every sequence number the old one used, so no old duplicate of ours lands in the
        new window (RFC 1122 §4.2.2.13). Linux steps SND.NXT + 65537 past it likewise."""
        return seq_add(self.snd_max, 65537)

    def icmp_unreachable(self, now: float, seq: int | None = None) -> None:
        """The peer's UDP port answered a datagram of ours with ICMP port unreachable.

        ``seq`` is the sequence number of the segment the ICMP message quotes, when it
        quotes one; an error that quotes a segment this connection cannot have sent
        recently (outside SND.UNA - 1 .. SND.MAX, where probes and ACKs sit; the ISS in
        SYN-SENT) is ignored, as RFC 5927 §4.1 asks of TCP, so that a blind attacker must
        guess sequence numbers to forge one.

        * SYN-SENT: the connection is refused (RFC 1122 §4.2.3.9 allows a port
          unreachable to abort a connection being opened; kernel TCP does).
        * Other states: one unreachable is soft (RFC 1122 §4.2.3.9, RFC 5461): a
          transient routing change, a NAT rebooting, a forged message. But a port
          unreachable from the peer's own host means no socket is bound to the port any
          more: the peer process died without a FIN or RST. The connection fails with
          ``ConnectionResetError`` once unreachables have answered ``ICMP_DEAD_ROUNDS``
          (2) consecutive timer-driven retransmissions (RTO retransmissions, zero-window
          probes or keepalive probes), with no segment at all from the peer since the
          first of them. Unreachables answering the original transmission or a tail-loss
          probe do not count. With the default timers that is about three RTOs after the
          first loss (RTO, then the backed-off 2 RTO) instead of the user timeout.
        """
        self._now = now
        st = self.state
        if st in (S.CLOSED, S.LISTEN, S.TIME_WAIT) or not self._icmp_quote_ok(seq):
            return
        if st is S.SYN_SENT:
            self._enter_closed(
                refused("ICMP port unreachable: nothing is bound to that UDP port"), C.ICMP_ERROR
            )
            return
        self.soft_error = "port unreachable"
        rounds = self._silent_rounds
        if rounds == 0 or rounds == self._unreach_round:
            return  # the first transmission's answer, or this round already counted
        if rounds == self._unreach_round + 1:
            self._unreach_streak += 1
        else:
            self._unreach_streak = 1
        self._unreach_round = rounds
        if self._unreach_streak >= ICMP_DEAD_ROUNDS:
            self._enter_closed(
                reset(
                    f"ICMP port unreachable answered {self._unreach_streak} retransmissions "
                    "in a row: the peer's endpoint is gone"
                ),
                C.ICMP_ERROR,
            )

    def icmp_soft_error(self, now: float, detail: str, seq: int | None = None) -> None:
        """An ICMP error other than port unreachable (host or network unreachable, time
        exceeded, ...) about a datagram of ours: remembered in :attr:`soft_error`, never
        fatal (RFC 1122 §4.2.3.9: these are soft errors, the retransmissions go on)."""
        self._now = now
        if self.state not in (S.CLOSED, S.LISTEN) and self._icmp_quote_ok(seq):
            self.soft_error = detail

    def foreign_datagram(self, now: float) -> None:
        """A datagram that is not a udptcp segment (too short, bad header or options, bad
        checksum) came from the peer's UDP address while this connection was opening.

        Something other than udptcp answers at that address (a DNS server, a game
        server, any UDP service), and left alone the connect would retransmit its SYN
        into it for the whole SYN timeout (63 s by default). The connect is refused
        once such datagrams have answered ``FOREIGN_SYN_ROUNDS`` (2) different
        transmissions of the SYN (the first and a retransmission, so about one initial
        RTO after the connect began) and no segment from the peer has ended SYN-SENT.
        Only in SYN-SENT: an established connection only counts and drops them.

        Why two, and why only here: one corrupted SYN,ACK on a lossy path must not fail
        a good connect (it takes answers to two SYNs in a row corrupted, with no valid
        one between, to do it); and anyone can send a datagram with the peer's source
        address, so this is kept to the few seconds a connection is opening, where a
        forged ICMP error or a RST acknowledging the SYN already ends it.
        """
        self._now = now
        if self.state is not S.SYN_SENT:
            return
        transmission = self._retries + 1
        if transmission != self._foreign_round:
            self._foreign_round = transmission
            self._foreign_rounds += 1
        if self._foreign_rounds >= FOREIGN_SYN_ROUNDS:
            self._enter_closed(
                refused(
                    f"the UDP service there answered {self._foreign_rounds} SYNs with "
                    "datagrams that are not udptcp segments"
                ),
                C.FOREIGN_PEER,
            )

    def _icmp_quote_ok(self, seq: int | None) -> bool:
        if seq is None:
            return True
        if self.state is S.SYN_SENT:
            ok = seq == self.iss
        else:
            ok = seq_le(seq_add(self.snd_una, -1), seq) and seq_le(seq, self.snd_max)
        if not ok:
            self.stats_counters["icmp_rejected"] += 1
        return ok

    def take_segments(self) -> list[Segment]:
        """Segments to transmit, oldest first; the queue is emptied."""
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[Event]:
        """Events for the application, oldest first; the queue is emptied."""
        events, self._events = self._events, []
        return events

    def get_timer(self) -> float | None:
        """The earliest pending deadline, or ``None`` when nothing is timed."""
        return self.timers.earliest()

    @property
    def unsent_bytes(self) -> int:
        """Bytes written by the application and not yet transmitted once."""
        # Asked after every write (the transport's high-water mark): ESTABLISHED first,
        # _stream_offset(snd_max) - start and the max()es written out.
        buf = self._sendbuf
        held = len(buf)
        st = self.state
        if st is not S.ESTABLISHED and st not in _SYNCHRONIZED and st is not S.SYN_RECEIVED:
            return held
        sent = ((self.snd_max - self.iss - 1 - buf.start + _HALF) & _MASK) - _HALF
        if sent <= 0:
            return held
        return held - sent if held > sent else 0

    @property
    def _close_deadline(self) -> float | None:
        """TIME-WAIT's 2 MSL (or FIN-WAIT-2's) deadline: ``timers.close`` under the name it
        had before the timers became one value (read by code that copies a TIME-WAIT
        connection into a smaller record)."""
        return self.timers.close

    @property
    def is_closed(self) -> bool:
        """True once the connection reached CLOSED and can be forgotten."""
        return self.state is S.CLOSED

    @property
    def rcv_wnd(self) -> int:
        """Receive window the connection would advertise now."""
        return self._receive_window()

    def stats(self) -> dict[str, float | int | str | None]:
        """Counters and estimator state, for ``get_extra_info`` and the demo."""
        out: dict[str, float | int | str | None] = dict(self.stats_counters)
        out.update(
            state=self.state.value,
            srtt=self.rtt.srtt,
            rttvar=self.rtt.rttvar,
            min_rtt=self.rtt.min_rtt,
            rto=self.rtt.rto,
            cwnd=self.cc.cwnd,
            ssthresh=self.cc.ssthresh,
            snd_wnd=self.snd_wnd,
            rcv_wnd=self.rcv_wnd,
            mss=self._eff_mss,
            pmtu=self._send_cap + 20,
            bytes_in_flight=self._flight,
            reassembly_pieces=len(self._reassembly),
            reassembly_bytes=self._reassembly.size,
            reassembly_charge=self._reassembly.charge,
        )
        return out

    def handle_timer(self, now: float) -> None:
        """Run every timer whose deadline is at or before ``now``."""
        self._now = now
        if self.timers.close is not None and now >= self.timers.close:
            self.timers.close = None
            if self.state is S.TIME_WAIT:
                self._enter_closed(None, C.TIMEOUT)  # §3.10.8: 2 MSL elapsed
                return
            if self.state is S.FIN_WAIT_2:
                self._enter_closed(None, C.TIMEOUT)  # the peer never sent its FIN
                return
        if (
            self.timers.pto is not None
            and now >= self.timers.pto
            and (self.timers.rto is None or self.timers.pto <= self.timers.rto)
        ):
            self._send_tlp(now)  # a probe due with (or before) the RTO replaces it (§7.2)
        if self.timers.rto is not None and now >= self.timers.rto:
            self.timers.rto = None
            self._on_retransmission_timeout(now)
            if self.state is S.CLOSED:
                return
        if self.timers.persist is not None and now >= self.timers.persist:
            self.timers.persist = None
            self._send_window_probe(now)
        if self.timers.delack is not None and now >= self.timers.delack:
            self.timers.delack = None
            self._ack_now = True
        if self.timers.pace is not None and now >= self.timers.pace:
            self.timers.pace = None  # the credit has grown: _output below sends
        if self.timers.rack is not None and now >= self.timers.rack:
            self.timers.rack = None
            self._detect_losses(now)  # RFC 8985 §6.3 reordering timer
        if self.timers.pto is not None and now >= self.timers.pto:
            self._send_tlp(now)
        if self.timers.keepalive is not None and now >= self.timers.keepalive:
            self._on_keepalive_timer(now)
            if self.state is S.CLOSED:
                return
        self._output(now)

    def _on_keepalive_timer(self, now: float) -> None:
        """RFC 1122 §4.2.3.6: probe an idle peer; fail after enough silence."""
        self.timers.keepalive = None
        if not self.keepalive or self.state not in _KEEPALIVE_STATES:
            return
        if self.snd_una != self.snd_max or self.unsent_bytes:
            # Data is outstanding: the retransmission or persist timer speaks for us.
            self.timers.keepalive = keepalive_deadline(
                now, self._keepalive_wait, self._keepalive_grain
            )
            return
        if self._keepalive_unanswered >= self.keepalive_count:
            self._enter_closed(
                timed_out(f"{self._keepalive_unanswered} keepalive probes unanswered"),
                C.TIMEOUT,
            )
            return
        # An already-acknowledged sequence number with no data: any live peer answers with
        # an ACK (§3.10.7.4), and the probe needs no window.
        self._keepalive_unanswered += 1
        self._silent_rounds += 1
        self.stats_counters["keepalive_probes"] += 1
        self._emit(self._segment(ACK, seq_add(self.snd_una, -1)), now)
        self.timers.keepalive = now + self.keepalive_interval
