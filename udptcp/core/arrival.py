"""SEGMENT ARRIVES (RFC 9293 §3.10.7), step by step.

:meth:`Arrival.receive` takes one segment: in SYN-SENT §3.10.7.3, otherwise §3.10.7.4 in
its order: sequence number check (with PAWS, RFC 7323 §5), RST (RFC 5961 §3), SYN (RFC 5961
§4), ACK, text, FIN. The ACK step hands acknowledgments to :mod:`udptcp.core.recovery`, the
text and the FIN to :mod:`udptcp.core.receiver`. Header prediction (:meth:`Arrival._predicted`)
takes the next in-order segment of a bulk transfer past the general path when every step's
outcome is known beforehand. (A LISTEN socket's SYN is taken by ``Connection.accept``.)
"""

from __future__ import annotations

from collections.abc import Sequence

from .amplification import received_size
from .control import _INVALID_ACK_INTERVAL, _MASK, _MAX_WSCALE, C, S
from .errors import refused, reset
from .events import Connected, DataReceived
from .recovery import LossRecovery
from .segment import ACK, FIN, PSH, RST, SYN, Segment
from .seq import in_window, seq_add, seq_diff, seq_gt, seq_le, seq_lt
from .state import ACKS as _ACKS
from .state import KEEPALIVE_STATES as _KEEPALIVE_STATES
from .state import RECEIVES_TEXT as _RECEIVES_TEXT
from .state import Cause

# RFC 5961 §7: bound challenge ACKs so they cannot be used as an amplifier.
_CHALLENGE_ACKS_PER_SECOND = 10

# The states every segment is tested against, as plain names: an Enum member looked up
# on its class costs several times a global's lookup, and this runs per segment.
_ESTABLISHED = S.ESTABLISHED
_CLOSED = S.CLOSED

# Least time between two SYN-ACKs that duplicate SYNs earn in SYN-RECEIVED (Linux bounds
# such out-of-window answers by tcp_invalid_ratelimit, 500 ms): a burst of copies of one
# SYN gets one answer, not one each.
_SYNACK_MIN_INTERVAL = 0.5


class Arrival(LossRecovery):
    """Incoming segments in RFC 9293 §3.10.7 order (a Connection part)."""

    __slots__ = ()

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
        way); in-order data reaches the application as one ``DataReceived`` (a segment of
        16 KiB or more as its own, not copied into a joined one); and new data
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
        checked = len(events)  # events before this index are the caller's, or data
        self._batch = True
        try:
            for seg in segments:
                taken += 1
                self._receive_one(seg, now)
                if self.state is _CLOSED:
                    break
                count = len(events)
                if count > checked:
                    # Only the events new since the last look: the train's data is one
                    # event, appended once, so each event is looked at once (in a plain
                    # loop: a generator for any() costs more than the look).
                    while checked < count and type(events[checked]) is DataReceived:
                        checked += 1
                    if checked < count:
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
        if st is _ESTABLISHED and self._predicted(seg, now):
            pass
        elif st is S.SYN_SENT:
            self._receive_in_syn_sent(seg, now)
        elif st is not S.CLOSED and st is not S.LISTEN:
            if self._amp is not None:
                self._amp.credit(received_size(seg))
            self._receive_synchronizing(seg, now)
        if self.keepalive and self.state in _KEEPALIVE_STATES:
            # Any segment restarts the idle clock (timers.keepalive_deadline, inlined).
            grain = self._keepalive_grain
            self.timers.keepalive = (now + self._keepalive_wait) // grain * grain + grain

    def reflects_own_syn(self, seg: Segment) -> bool:
        """True if ``seg`` is this connection's own SYN, come back: a SYN, no ACK, and our
        ISS (a peer choosing the same ISN has a chance of 2**-32), while opening."""
        return (
            self.state is S.SYN_SENT
            and seg.flags & (SYN | ACK | RST) == SYN
            and seg.seq == self.iss
        )

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
        self._start_congestion_control()

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
            or self._reassembly.size > 0  # bool(), without the call
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
        """§3.10.7.4 for SYN-RECEIVED and the synchronized states, step by step: each step
        below either settles the segment (returns False: drop it, perhaps after an ACK) or
        passes it on to the next."""
        flags = seg.flags
        if self.state is S.SYN_RECEIVED and flags & SYN and seg.seq == self.irs:
            self._syn_again(seg, now)
            return
        ts = seg.options.timestamps if self.ts_enabled and seg.options is not None else None
        if not self._check_timestamps(flags, ts, now):
            return
        if not self._check_sequence(seg, now):  # first
            return
        if ts is not None:
            self._take_timestamps(seg, ts)
        if flags & RST:  # second (the third, security, has no meaning here)
            self._rst_arrives(seg, now)
            return
        if flags & SYN:
            # Fourth: SYN in a synchronized state gets a challenge ACK (RFC 5961 §4.2).
            self._challenge_ack(now)
            return
        if not flags & ACK or not self._ack_arrives(seg, now):  # fifth (sixth, URG: ignored)
            return
        st = self.state
        # Seventh: segment text. Eighth: FIN.
        if st in _RECEIVES_TEXT:
            self._receive_text(seg, now)
        elif flags & FIN and st is S.TIME_WAIT:
            self._restart_time_wait(now)
            self._ack_now = True

    def _syn_again(self, seg: Segment, now: float) -> None:
        """SYN-RECEIVED: the peer's SYN (its ISN) once more."""
        flags = seg.flags
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

    def _check_timestamps(self, flags: int, ts: tuple[int, int] | None, now: float) -> bool:
        """RFC 7323 before the first step: a timestamp required, and PAWS (§5.3)."""
        if self.ts_enabled and ts is None and not flags & RST:
            # RFC 7323 §3.2: once timestamps are agreed, a non-RST segment without one is
            # not from our peer's stack (or was mangled); drop it silently.
            self.stats_counters["missing_timestamp_dropped"] += 1
            return False
        if ts is not None and not flags & RST and seq_lt(ts[0], self.ts_recent):
            # RFC 7323 §5.3 PAWS: an old duplicate from an earlier pass over the sequence
            # space (or an earlier incarnation); acknowledge and drop it.
            self.stats_counters["paws_rejected"] += 1
            self._invalid_ack(now)
            return False
        return True

    def _check_sequence(self, seg: Segment, now: float) -> bool:
        """First step: the acceptability test; an unacceptable segment is answered with an
        ACK (unless it is a RST) and dropped."""
        wnd = max(seq_diff(self._rcv_adv, self.rcv_nxt), 0)
        seg_len = seg.seg_len
        if in_window(self.rcv_nxt, wnd, seg.seq, seg_len):
            return True
        flags = seg.flags
        if flags & RST:
            return False
        retransmission = False
        if seg.payload and seq_lt(seg.seq, self.rcv_nxt):
            # Data below RCV.NXT. Within a window's reach it is a retransmission our
            # ACK must answer at once (with a D-SACK, RFC 2883); further back it is
            # a guess at our sequence numbers, answered like any invalid segment.
            retransmission = seq_diff(self.rcv_nxt, seg.seq) <= max(self._rcv_space, wnd)
            self.stats_counters["duplicate_bytes_received"] += len(seg.payload)
            if retransmission:
                self._dsack = (seg.seq, seq_add(seg.seq, len(seg.payload)))
        if self.state is S.TIME_WAIT and flags & FIN and seq_add(seg.seq, seg_len) == self.rcv_nxt:
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
        return False

    def _rst_arrives(self, seg: Segment, now: float) -> None:
        """Second step: RST (RFC 5961 §3.2: only an exact match resets)."""
        st = self.state
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

    def _ack_arrives(self, seg: Segment, now: float) -> bool:
        """Fifth step: the ACK field; False when the segment goes no further."""
        if self.state is S.SYN_RECEIVED:
            if not (seq_lt(self.snd_una, seg.ack) and seq_le(seg.ack, self.snd_nxt)):
                self._emit(Segment(self.local_port, self.remote_port, seg.ack, 0, RST, 0), now)
                return False
            self._establish(seg, now)
        elif not self._process_ack(seg, now):
            return False
        return self.state is not S.CLOSED

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
            self._on_handshake_loss()

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
