"""The RFC 9293 connection state machine, sans I/O.

A :class:`Connection` is fed segments (:meth:`Connection.receive`), application calls
(:meth:`send`, :meth:`shutdown`, :meth:`close`, :meth:`abort`) and timer expiries
(:meth:`handle_timer`), each with the current time as an argument. It answers with segments to
transmit (:meth:`take_segments`), events for the application (:meth:`take_events`) and its
next deadline (:meth:`get_timer`). It never touches a socket, an event loop or a clock.

Incoming segments are processed in the order of RFC 9293 §3.10.7.4 ("SEGMENT ARRIVES", other
states): sequence check, RST, SYN, ACK, text, FIN. Section numbers in comments refer to RFC 9293
unless another RFC is named.
"""

from __future__ import annotations

from collections.abc import Sequence

from .amplification import AmplificationBudget, received_size
from .config import Config
from .congestion import create
from .control import _wscale_for
from .cookies import encode_ts_choices
from .errors import refused, reset, timed_out
from .events import Connected, DataReceived, EofReceived, Event
from .recovery import LossRecovery
from .segment import ACK, FIN, PSH, RST, SYN, Options, Segment
from .seq import seq_add, seq_diff, seq_gt, seq_le, seq_lt
from .state import ACCEPTS_WRITES as _ACCEPTS_WRITES
from .state import ACKS as _ACKS
from .state import KEEPALIVE_STATES as _KEEPALIVE_STATES
from .state import RECEIVES_TEXT as _RECEIVES_TEXT
from .state import SYNCHRONIZED as _SYNCHRONIZED
from .state import TRANSITIONS, Cause, IllegalTransition, LocalProtocolError, State

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
    "State",
    "rst_for",
]

_MASK = 0xFFFFFFFF
_HALF = 0x80000000
# RFC 9293 §3.7.1: the MSS to assume when the peer sends no MSS option (IPv4).
_DEFAULT_PEER_MSS = 536
# The window field is 16 bits; RFC 7323 §2.3 caps the scale shift at 14.
_MAX_WINDOW_FIELD = 0xFFFF
_MAX_WSCALE = 14
# NOP, NOP, timestamps: what RFC 7323 Appendix A lays out on every segment once agreed.
_TIMESTAMPS_LEN = 12
# RFC 5961 §7: bound challenge ACKs so they cannot be used as an amplifier.
_CHALLENGE_ACKS_PER_SECOND = 10
# One ACK per this interval for unacceptable segments (out of window, PAWS-old, acknowledging
# unsent data), as Linux's net.ipv4.tcp_invalid_ratelimit (500 ms).
_INVALID_ACK_INTERVAL = 0.5
# Out-of-order arrivals remembered for SACK blocks: one more than the blocks that fit.
_SACK_RECENT = 5
# RFC 8985 §7.2 adds a worst-case delayed-ACK time to a lone segment's probe timeout; it
# suggests 200 ms, but both udptcp (Config.delayed_ack) and Linux acknowledge within 40 ms.
_WC_DELACK = 0.04
# Probes allowed before the RTO takes over. RFC 8985 sends one; a second halves the
# chance that a lost probe (or its ACK) leaves the repair to the RTO on a lossy path.
_MAX_TLPS = 2
# Receive-buffer auto-tuning starts from this much window and grows towards
# Config.receive_buffer as the application proves it consumes more per round trip.
_INITIAL_RCV_SPACE = 128 * 1024
# Persist timer bounds (RFC 1122 §4.2.2.17 leaves them open; Linux uses RTO-based backoff).
_PERSIST_MAX = 60.0
# Least time between two SYN-ACKs that duplicate SYNs earn in SYN-RECEIVED (Linux bounds
# such out-of-window answers by tcp_invalid_ratelimit, 500 ms): a burst of copies of one
# SYN gets one answer, not one each.
_SYNACK_MIN_INTERVAL = 0.5
#: Consecutive timer-driven retransmissions (RTO, zero-window or keepalive probe), each
#: answered by ICMP port unreachable with nothing from the peer meanwhile, after which a
#: connection is taken to be dead (see Connection.icmp_unreachable).
ICMP_DEAD_ROUNDS = 2
#: SYN transmissions answered only by datagrams that are not udptcp segments after which a
#: connect is refused (see Connection.foreign_datagram).
FOREIGN_SYN_ROUNDS = 2


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


class Connection(LossRecovery):
    """One TCP connection: the transmission control block and its state machine."""

    # ------------------------------------------------------------------ opening

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

    def _take_peer_syn(self, syn: Segment) -> None:
        # The window our own SYN offered (active side) holds from the peer's ISN + 1 on.
        offered = seq_diff(self._rcv_adv, self.rcv_nxt) if self.state is S.SYN_SENT else 0
        self.irs = syn.seq
        self.rcv_nxt = seq_add(syn.seq, 1)
        self._rcv_adv = seq_add(self.rcv_nxt, max(offered, 0))
        opts = syn.options
        cfg = self.config
        if opts is not None:
            if opts.mss is not None:
                # A hostile MSS (0, 1, 13 ...) would cost a segment per byte: raise it.
                self.peer_mss = max(opts.mss, cfg.min_mss)
                if opts.mss < cfg.min_mss:
                    self.stats_counters["peer_mss_clamped"] += 1
            # An option is in use only when both SYNs carried it (RFC 7323 §2.2, §3.2). On
            # the active side our SYN offered what the config enables; on the passive side
            # our SYN,ACK will answer exactly what is agreed here.
            if opts.wscale is not None and cfg.window_scaling:
                self.wscale_ok = True
                self.snd_wscale = min(opts.wscale, _MAX_WSCALE)
                self.rcv_wscale = self._wscale_offer
            if opts.sack_permitted and cfg.sack:
                self.sack_ok = True
            if opts.timestamps is not None and cfg.timestamps:
                self.ts_enabled = True
                self.ts_recent = opts.timestamps[0]
        # The SYN's window is never scaled (RFC 7323 §2.2).
        self.snd_wnd = syn.window
        self.snd_wl1 = syn.seq
        self.max_snd_wnd = syn.window
        # Now the segment size is known: the congestion window counts in it (RFC 5681 SMSS).
        self.cc = create(self.config.congestion_control, self._eff_mss, self.config.initial_window)
        self.cc.srtt = self.rtt.srtt

    # ------------------------------------------------------------------ application calls

    def send(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Queue ``data``; it is never dropped, only delayed by the windows (§3.10.2)."""
        self._now = now
        if self.state not in _ACCEPTS_WRITES or self._fin_queued:
            raise LocalProtocolError(f"cannot send in state {self.state.value}")
        if not data:
            return
        self._sendbuf.append(data)
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
        if interval is not None:
            self.keepalive_interval = interval
        if count is not None:
            self.keepalive_count = count
        if not enabled:
            self.timers.keepalive = None
        elif self.timers.keepalive is None and self.state in _KEEPALIVE_STATES:
            self.timers.keepalive = self._now + self.keepalive_idle

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

    def reflects_own_syn(self, seg: Segment) -> bool:
        """True if ``seg`` is this connection's own SYN, come back: a SYN, no ACK, and our
        ISS (a peer choosing the same ISN has a chance of 2**-32), while opening."""
        return (
            self.state is S.SYN_SENT
            and seg.flags & (SYN | ACK | RST) == SYN
            and seg.seq == self.iss
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

    # ------------------------------------------------------------------ outputs

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
        if self.state not in _SYNCHRONIZED and self.state is not S.SYN_RECEIVED:
            return len(self._sendbuf)
        sent = max(self._stream_offset(self.snd_max) - self._sendbuf.start, 0)
        return max(len(self._sendbuf) - sent, 0)

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

    # ------------------------------------------------------------------ timers

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
            self.timers.keepalive = now + self.keepalive_idle
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

    # ------------------------------------------------------------------ segment arrival

    def receive(self, seg: Segment, now: float) -> None:
        """Process one incoming segment addressed to this connection."""
        self._receive_one(seg, now)
        self._output(now)

    def receive_many(self, segments: Sequence[Segment], now: float) -> int:
        """Process a train of segments that arrived together (one socket read burst).

        The same as :meth:`receive` for each in turn, except for what a train allows: the
        ACK that the delayed-ACK rule owes for in-order data is sent once, after the
        train, rather than after every second segment (RFC 9293 §3.8.6.3 and RFC 1122
        §4.2.3.2 bound the delay, not the count; Linux acknowledges a GRO train the same
        way); in-order data reaches the application as one ``DataReceived``; and new data
        is sent once, with the whole train's acknowledgments taken into account. ACKs
        the RFCs want at once (out-of-order data, a filled gap, a duplicate, a window
        probe) still go out segment by segment, so duplicate-ACK counting is unchanged.

        Returns how many segments were taken. It stops after one that closed the
        connection (the caller treats the rest as addressed to a closed port) or that
        raised an event other than data (EOF, established): the caller delivers it and
        hands over the rest afterwards, so the application's reaction (closing on EOF,
        say) comes before later segments are processed, as it would one by one.
        """
        taken = 0
        events = self._events
        before = len(events)
        self._batch = True
        try:
            for seg in segments:
                taken += 1
                self._receive_one(seg, now)
                if self.state is S.CLOSED or (
                    len(events) > before
                    and any(type(ev) is not DataReceived for ev in events[before:])
                ):
                    break
                if self._ack_now and self.state in _ACKS:
                    self._emit(self._segment(ACK, self._ack_seq), now)
        finally:
            self._batch = False
            self._end_batch()
        if self._ack_owed:
            self._ack_owed = False
            self._ack_now = True
        self._output(now)
        return taken

    def _receive_one(self, seg: Segment, now: float) -> None:
        self._now = now
        self.stats_counters["segments_received"] += 1
        self._keepalive_unanswered = 0
        # The peer is there: ICMP errors from before this say nothing about it any more.
        self._silent_rounds = self._unreach_round = self._unreach_streak = 0
        self._probing_since = None
        st = self.state
        if st is S.ESTABLISHED and self._predicted(seg, now):
            pass
        elif st is S.SYN_SENT:
            self._receive_in_syn_sent(seg, now)
        elif st is not S.CLOSED and st is not S.LISTEN:
            if self._amp is not None:
                self._amp.credit(received_size(seg))
            self._receive_synchronizing(seg, now)
        if self.keepalive and self.state in _KEEPALIVE_STATES:
            self.timers.keepalive = now + self.keepalive_idle

    def _receive_in_syn_sent(self, seg: Segment, now: float) -> None:
        """§3.10.7.3."""
        flags = seg.flags
        # First: the ACK must acknowledge our SYN.
        if flags & ACK and (seq_le(seg.ack, self.iss) or seq_gt(seg.ack, self.snd_nxt)):
            if not flags & RST:
                self._emit(Segment(self.local_port, self.remote_port, seg.ack, 0, RST, 0), now)
            return
        # Second: a reset with an acceptable ACK refuses the connection.
        if flags & RST:
            if flags & ACK:
                self._enter_closed(
                    refused("RST answered the SYN: nothing listens on that port"), C.RCV_RST
                )
            return
        # Fourth: the SYN.
        if not flags & SYN:
            return
        if self.reflects_own_syn(seg):
            # Our SYN came back as sent: a UDP echo service, not udptcp. Without this it
            # would look like a simultaneous open with ourselves, and "connect".
            self._enter_closed(
                refused("the SYN came back unchanged: the UDP service there echoes datagrams"),
                C.FOREIGN_PEER,
            )
            return
        self._take_peer_syn(seg)
        if flags & ACK:
            self._ack_advances(seg.ack, now)
            self.snd_wl2 = seg.ack
            self._enter_established(C.RCV_SYN_ACK)
            self._ack_now = True  # third segment of the handshake: ACK ack=y+1
            if seg.payload or flags & FIN:
                # §3.10.7.3: text (or a FIN) on the SYN,ACK is processed from the sixth
                # step on, as in ESTABLISHED; it starts one past the SYN.
                text = Segment(
                    seg.src_port,
                    seg.dst_port,
                    seq_add(seg.seq, 1),
                    seg.ack,
                    flags & ~SYN,
                    seg.window,
                    seg.options,
                    seg.payload,
                )
                self._receive_text(text, now)
        else:
            # Simultaneous open (§3.5, Figure 8): SYN-RECEIVED, answer SYN,ACK with our ISS.
            self._transition(C.RCV_SYN)
            self._retries = 0
            self._send_syn(now)

    def _predicted(self, seg: Segment, now: float) -> bool:
        """Header prediction (Van Jacobson's, as BSD and Linux have it): take the next
        in-order segment of an established connection without the general path, when it
        is data, an ACK of new data, or both (bulk transfer, request and response).

        It applies only where every step of §3.10.7.4 has a foregone outcome: ACK (and
        PSH) only, exactly RCV.NXT, within the window, the same window, no SACK blocks,
        a timestamp passing PAWS, nothing held for reassembly, an application reading;
        an ACK that moves SND.UNA outside any loss recovery, or data while nothing of ours
        is outstanding. Returns False, having changed nothing, for anything else.
        """
        payload = seg.payload
        ack = seg.ack
        if (
            seg.flags & ~PSH != ACK
            or seg.seq != self.rcv_nxt
            or seg.window << self.snd_wscale != self.snd_wnd
            or self._fin_off is not None
        ):
            return False
        if payload and (
            len(payload) > seq_diff(self._rcv_adv, self.rcv_nxt)
            or self._reassembly
            or not self._reading
            or self._discard_input
        ):
            return False
        new_ack = ack != self.snd_una
        if new_ack:
            if (
                not seq_lt(self.snd_una, ack)
                or seq_gt(ack, self.snd_max)
                or self._in_recovery
                or self._sb
                or self._dupacks
                or self.timers.rack is not None
            ):
                return False
        elif not payload or self.snd_una != self.snd_max:
            return False  # a duplicate ACK, or data beside ours in flight: the general path
        options = seg.options
        if options is not None and options.sack_blocks:
            return False
        tsecr = 0
        if self.ts_enabled:
            ts = options.timestamps if options is not None else None
            if ts is None or seq_lt(ts[0], self.ts_recent):
                return False
            tsecr = ts[1]
            self._take_timestamps(seg, ts)
        # _process_ack, with its outcomes known: the window update (same window)...
        self._update_send_window(seg)
        if self._log:
            self._log.start_ack()
        if new_ack:
            self._on_new_ack(ack, now, tsecr)  # ...and new data acknowledged
        if payload:
            self._accept_in_order(payload)  # _receive_text, in sequence and in the window
            self._schedule_ack(len(payload), now)
        return True

    def _take_timestamps(self, seg: Segment, ts: tuple[int, int]) -> None:
        """Record an acceptable segment's timestamps, PAWS having passed (RFC 7323 §4.3)."""
        if seq_le(seg.seq, self._last_ack_sent):
            self.ts_recent = ts[0]
            if seg.payload and ts[1]:
                # Data echoing one of our timestamps: a receiver-side RTT sample, as
                # Linux's tcp_rcv_rtt_measure_ts takes for auto-tuning.
                sample = ((self._tsval() - ts[1]) & _MASK) / 1000
                if sample < 60:
                    self._rcv_rtt = max(sample, 0.001)

    def _receive_synchronizing(self, seg: Segment, now: float) -> None:
        """§3.10.7.4 for SYN-RECEIVED and the synchronized states."""
        st = self.state
        flags = seg.flags
        seg_len = seg.seg_len
        wnd = max(seq_diff(self._rcv_adv, self.rcv_nxt), 0)

        if st is S.SYN_RECEIVED and flags & SYN and seg.seq == self.irs:
            if flags & ACK and seg.ack == self.snd_nxt and not flags & RST:
                # Simultaneous open: the peer's SYN,ACK crossed ours; it acknowledges our SYN.
                self._establish(seg, now)
                self._ack_now = True
            elif not flags & (ACK | RST):
                # The peer's SYN again: our SYN,ACK was lost. Answer it again, but not every
                # copy of a burst (a forged one multiplies what goes to its victim).
                self._handshake_lost = True
                last = self._syn_sent_at
                if last is None or now - last >= _SYNACK_MIN_INTERVAL or now < last:
                    self._syn_sent_at = now
                    self._emit(self._syn_ack_again(), now)
                else:
                    self.stats_counters["syn_acks_rate_limited"] += 1
            return

        ts = seg.options.timestamps if self.ts_enabled and seg.options is not None else None
        if self.ts_enabled and ts is None and not flags & RST:
            # RFC 7323 §3.2: once timestamps are agreed, a non-RST segment without one is
            # not from our peer's stack (or was mangled); drop it silently.
            self.stats_counters["missing_timestamp_dropped"] += 1
            return
        if ts is not None and not flags & RST and seq_lt(ts[0], self.ts_recent):
            # RFC 7323 §5.3 PAWS: an old duplicate from an earlier pass over the sequence
            # space (or an earlier incarnation); acknowledge and drop it.
            self.stats_counters["paws_rejected"] += 1
            self._invalid_ack(now)
            return

        # First: sequence number check (§3.10.7.4 table).
        if not self._acceptable(seg.seq, seg_len, wnd):
            if flags & RST:
                return
            retransmission = False
            if seg.payload and seq_lt(seg.seq, self.rcv_nxt):
                # Data below RCV.NXT. Within a window's reach it is a retransmission our
                # ACK must answer at once (with a D-SACK, RFC 2883); further back it is
                # a guess at our sequence numbers, answered like any invalid segment.
                retransmission = seq_diff(self.rcv_nxt, seg.seq) <= max(self._rcv_space, wnd)
                self.stats_counters["duplicate_bytes_received"] += len(seg.payload)
                if retransmission:
                    self._dsack = (seg.seq, seq_add(seg.seq, len(seg.payload)))
            if st is S.TIME_WAIT and flags & FIN and seq_add(seg.seq, seg_len) == self.rcv_nxt:
                # A retransmitted FIN: the peer lost our last ACK. ACK again, restart 2 MSL.
                self._restart_time_wait(now)
                retransmission = True
            elif wnd == 0 and seg.seq == self.rcv_nxt and flags & ACK:
                # Zero window: the ACK field is still processed (§3.10.7.4 "special allowance"),
                # and the answer tells a probing sender the window is still shut.
                self._process_ack(seg, now)
                retransmission = True
            if retransmission:
                self._ack_now = True
            else:
                self._invalid_ack(now)
            return

        if ts is not None:
            self._take_timestamps(seg, ts)

        # Second: RST (RFC 5961 §3.2: only an exact match resets).
        if flags & RST:
            if seg.seq != self.rcv_nxt:
                self._challenge_ack(now)
                return
            if st is S.TIME_WAIT:
                return  # RFC 1337: ignore RST in TIME-WAIT
            if st is S.SYN_RECEIVED:
                self._enter_closed(refused("RST answered the SYN,ACK"), C.RCV_RST)
            elif st in (S.CLOSING, S.LAST_ACK):
                self._enter_closed(None, C.RCV_RST)
            else:
                self._enter_closed(reset("RST received"), C.RCV_RST)
            return

        # Fourth: SYN in a synchronized state gets a challenge ACK (RFC 5961 §4.2).
        if flags & SYN:
            self._challenge_ack(now)
            return

        # Fifth: ACK.
        if not flags & ACK:
            return
        if st is S.SYN_RECEIVED:
            if not (seq_lt(self.snd_una, seg.ack) and seq_le(seg.ack, self.snd_nxt)):
                self._emit(Segment(self.local_port, self.remote_port, seg.ack, 0, RST, 0), now)
                return
            self._establish(seg, now)
            st = self.state
        elif not self._process_ack(seg, now):
            return
        st = self.state
        if st is S.CLOSED:
            return

        # Seventh: segment text. Eighth: FIN.
        if st in _RECEIVES_TEXT:
            self._receive_text(seg, now)
        elif flags & FIN and st is S.TIME_WAIT:
            self._restart_time_wait(now)
            self._ack_now = True

    def _establish(self, seg: Segment, now: float) -> None:
        """SYN-RECEIVED -> ESTABLISHED on an ACK of our SYN (§3.10.7.4 fifth step)."""
        self._ack_advances(seg.ack, now)
        self.snd_wnd = seg.window << self.snd_wscale
        self.snd_wl1 = seg.seq
        self.snd_wl2 = seg.ack
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
        self._enter_established(C.RCV_ACK_OF_SYN)
        if self._fin_queued:
            self._transition(C.CLOSE)  # the FIN queued in SYN-RECEIVED (§3.10.4)

    def _enter_established(self, cause: Cause) -> None:
        self._transition(cause)
        self._amp = None  # the peer answered our ISN: its address is proven
        self._retries = 0
        self._events.append(Connected())
        if self._handshake_lost:
            # RFC 5681 §3.1: the initial window is one segment when the SYN or SYN,ACK was
            # lost. RFC 6298 §5.7: without an RTT sample, restart from a 3 s timeout (here
            # three times the configured initial RTO, which is 1 s by default).
            self.cc.cwnd = self._eff_mss
            if self.rtt.srtt is None:
                self.rtt.reinitialize(3 * self.config.rto_initial)

    def _acceptable(self, seq: int, seg_len: int, wnd: int) -> bool:
        """The four-case acceptability test of §3.10.7.4."""
        rcv_nxt = self.rcv_nxt
        if seg_len == 0:
            if wnd == 0:
                return seq == rcv_nxt
            # §3.10.7.4 says SEG.SEQ < RCV.NXT+RCV.WND; like Linux and BSD we also accept a
            # bare ACK at the right edge itself, which is where a sender that filled the
            # window puts it (our own ``_ack_seq`` does the same).
            return seq_le(rcv_nxt, seq) and seq_le(seq, seq_add(rcv_nxt, wnd))
        if wnd == 0:
            return False
        last = seq_add(seq, seg_len - 1)
        end = seq_add(rcv_nxt, wnd)
        return (seq_le(rcv_nxt, seq) and seq_lt(seq, end)) or (
            seq_le(rcv_nxt, last) and seq_lt(last, end)
        )

    def _invalid_ack(self, now: float) -> None:
        """The ACK an unacceptable segment asks for (§3.10.7.4), at most one per
        ``_INVALID_ACK_INTERVAL`` (as Linux's tcp_invalid_ratelimit): whoever sends
        out-of-window segments by the thousand, a blind attacker guessing sequence
        numbers among them, must not get one ACK back for each."""
        if now - self._invalid_ack_time >= _INVALID_ACK_INTERVAL or now < self._invalid_ack_time:
            self._invalid_ack_time = now
            self._ack_now = True
        else:
            self.stats_counters["invalid_acks_suppressed"] += 1

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 §3.2/§4.2 challenge ACK, rate-limited per RFC 5961 §7."""
        if now - self._challenge_window >= 1.0:
            self._challenge_window = now
            self._challenge_count = 0
        if self._challenge_count < _CHALLENGE_ACKS_PER_SECOND:
            self._challenge_count += 1
            self.stats_counters["challenge_acks"] += 1
            self._ack_now = True

    def _process_ack(self, seg: Segment, now: float) -> bool:
        """Fifth step for synchronized states; False when the segment must be dropped."""
        ack = seg.ack
        if seq_gt(ack, self.snd_max):
            # §3.10.7.4: it acknowledges something not yet sent: ACK and drop (within the
            # limit on ACKs that invalid segments draw).
            self._invalid_ack(now)
            return False
        if seq_lt(ack, seq_add(self.snd_una, -self.max_snd_wnd)):
            # RFC 5961 §5.2: far too old to be from this connection: a challenge ACK.
            self._challenge_ack(now)
            return False

        window_changed = self._update_send_window(seg)

        newly_sacked = 0
        una_before = self.snd_una
        sacked_before = self._log.sacked_bytes()
        if self._log:
            self._log.start_ack()
        if self.sack_ok and seg.options is not None and seg.options.sack_blocks:
            newly_sacked = self._take_sack_blocks(seg.options.sack_blocks, ack, now)
        if seq_gt(ack, self.snd_una):
            ts = seg.options.timestamps if self.ts_enabled and seg.options is not None else None
            self._on_new_ack(ack, now, ts[1] if ts is not None else 0)
        elif (
            ack == self.snd_una
            and self.snd_max != self.snd_una
            and (
                newly_sacked > 0  # RFC 6675 §2: an ACK bringing new SACK information
                or (not seg.payload and not seg.flags & (SYN | FIN) and not window_changed)
            )
        ):
            self._on_duplicate_ack(now)
        if self.sack_ok and (self._sb or self._in_recovery or self.timers.rack is not None):
            # RACK needs evidence: SACKed data, a recovery under way, or a pending timer.
            self._detect_losses(now)
            if self._in_recovery and self._undo_cwnd is not None:
                # What this ACK reports delivered: SND.UNA's advance plus the change in
                # SACKed bytes (RFC 6937 DeliveredData).
                delivered = seq_diff(self.snd_una, una_before)
                self._prr_on_ack(delivered + self._log.sacked_bytes() - sacked_before)

        st = self.state
        fin_acked = self._fin_queued and seq_gt(self.snd_una, self._fin_seq)
        if st is S.FIN_WAIT_1 and fin_acked:
            self._transition(C.RCV_ACK_OF_FIN)
            if self._app_closed:
                self.timers.close = now + self.config.fin_wait2_timeout
        elif st is S.CLOSING and fin_acked:
            self._enter_time_wait(now, C.RCV_ACK_OF_FIN)
        elif st is S.LAST_ACK and fin_acked:
            self._enter_closed(None, C.RCV_ACK_OF_FIN)
            return False
        return True

    def _update_send_window(self, seg: Segment) -> bool:
        """§3.10.7.4 fifth step: take the window from a segment newer than the last one
        that set it (SND.WL1/WL2). Returns True if the window changed."""
        ack = seg.ack
        if not (
            seq_lt(self.snd_wl1, seg.seq) or (self.snd_wl1 == seg.seq and seq_le(self.snd_wl2, ack))
        ):
            return False
        window = seg.window << self.snd_wscale  # RFC 7323 §2.3
        changed = window != self.snd_wnd
        self.snd_wnd = window
        self.snd_wl1 = seg.seq
        self.snd_wl2 = ack
        if window > self.max_snd_wnd:
            self.max_snd_wnd = window
        if window > 0:
            self.timers.persist = None
            self._persist_backoff = 1
        return changed

    # ------------------------------------------------------------------ sending

    # (Only _send_data runs this, and arms the tail loss probe after the whole run.)

    # ------------------------------------------------------------------ windows

    # ------------------------------------------------------------------ helpers
