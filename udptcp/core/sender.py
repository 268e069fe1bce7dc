"""The sending half: what goes out, how segments are built, and the send-side timers.

:meth:`Sender._output` runs after every input: new data as the send window, the congestion
window, silly window avoidance (RFC 1122 §4.2.3.4), Nagle (RFC 896) and pacing allow, then
any ACK still owed. Every segment is built by :meth:`Sender._segment` (our ACK, window and
options) and leaves through :meth:`Sender._emit`. The persist timer (§3.8.6.1) probes a shut
window. Retransmissions are decided by :mod:`udptcp.core.recovery`.
"""

from __future__ import annotations

from .amplification import sent_size
from .control import _MASK, C, S
from .errors import timed_out
from .receiver import Receiver
from .segment import ACK, FIN, PSH, SYN, Options, Segment
from .seq import seq_add, seq_diff, seq_ge, seq_gt, seq_lt, seq_min
from .state import ACKS as _ACKS
from .state import SENDS_DATA as _SENDS_DATA

# Persist timer bounds (RFC 1122 §4.2.2.17 leaves them open; Linux uses RTO-based backoff).
_PERSIST_MAX = 60.0


class Sender(Receiver):
    """Building and sending segments (a Connection part)."""

    __slots__ = ()

    # Declared here as real methods, not as typing-only stubs, so that a
    # compiled build (mypyc, which rejects statements in a class body) can call them.
    # The parts above this one in the Connection (loss recovery, path MTU probing)
    # define them.
    def _sack_send(self, now: float) -> None:
        raise NotImplementedError

    def _arm_tlp(self, now: float) -> None:
        raise NotImplementedError

    def _maybe_probe(self, off: int, now: float) -> bool:
        raise NotImplementedError

    def _output(self, now: float) -> None:
        """Send what the windows allow, then any ACK still owed."""
        if self.state in _SENDS_DATA:
            if self._in_recovery and self.sack_ok:
                self._sack_send(now)
            else:
                self._send_data(now)
        if self._ack_now and self.state in _ACKS:
            self._emit(self._segment(ACK, self._ack_seq), now)

    def _send_data(self, now: float, override_sws: bool = False) -> None:
        if not self._fin_queued and self._sendbuf.end == self._stream_offset(self.snd_nxt):
            self._note_cwnd_use()  # the application, not cwnd, limits this window
            return  # nothing to send (most ACKs of a request/response exchange)
        self._burst = None  # a run of segments starts: _segment may reuse what they share
        self._bursting = True
        sent = self.stats_counters["segments_sent"]
        try:
            self._send_run(now, override_sws)
        finally:
            self._bursting = False
            self._burst = None
        self._note_cwnd_use()
        if self.stats_counters["segments_sent"] != sent:
            self._arm_tlp(now)

    def _note_cwnd_use(self) -> None:
        """After sending: record whether cwnd bounded the flight (RFC 7661 §4.1's
        "validated" window), per window of data, keeping the strongest signal of it."""
        flight = seq_diff(self.snd_max, self.snd_una)  # self._flight, without the call
        limited = flight + self._eff_mss > self.cc.cwnd
        if (
            limited
            or seq_ge(self.snd_una, self._cwnd_usage_end)
            or (not self._cwnd_limited and flight > self._max_flight)
        ):
            self._cwnd_limited = limited
            self._max_flight = flight
            self._cwnd_usage_end = self.snd_max

    def _send_run(self, now: float, override_sws: bool) -> None:
        buf = self._sendbuf
        mss = self._eff_mss - (self._sack_option_len() if self.sack_ok else 0)
        sb = self._sb
        pacing = self.config.pacing  # _may_send() lets everything through without it
        while True:
            off = self._stream_offset(self.snd_nxt)
            unsent = buf.end - off
            run = unsent  # contiguous bytes this segment may take
            if sb and seq_lt(self.snd_nxt, self.snd_max):
                # Go-back-N after a timeout passes over what the peer already SACKed.
                skip = sb.skip_sacked(off)
                if skip > off:
                    self.snd_nxt = seq_min(seq_add(self.iss, 1 + skip), self.snd_max)
                    continue
                limit = sb.next_sacked(off)
                if limit is not None:
                    run = min(unsent, limit - off)
            if unsent > 0 and self._pmtu_high > self._pmtu_low and self._maybe_probe(off, now):
                continue
            cwnd = self.cc.cwnd
            dupacks = self._dupacks
            if 0 < dupacks < 3 and not self._in_recovery:
                # RFC 3042 limited transmit: each of the first two duplicate ACKs lets one
                # new segment out, so a small window still produces three duplicates.
                cwnd += dupacks * mss
            snd_wnd = self.snd_wnd
            # min() written out here and below: this runs for every segment sent.
            usable = (cwnd if cwnd < snd_wnd else snd_wnd) - seq_diff(self.snd_nxt, self.snd_una)
            if unsent > 0:
                size = mss if mss < run else run
                if usable < size:
                    size = usable
                if size <= 0:
                    break
                if size < run and size < mss and size < self.max_snd_wnd // 2 and not override_sws:
                    break  # sender-side silly window avoidance (RFC 1122 §4.2.3.4)
                if size < mss and self.snd_nxt != self.snd_una:
                    if not self.nodelay:
                        break  # Nagle (RFC 896): one small segment outstanding at a time
                    if (
                        self._more
                        and size == unsent
                        and not self._fin_queued
                        and not override_sws
                        and self.snd_nxt == self.snd_max
                    ):
                        # send(more=True): the short last piece waits for push() or for
                        # the next write to fill it (see Connection.send).
                        self.tail_held = True
                        break
                if pacing and not self._may_send(size, now):
                    break
                if size == mss < unsent and self.snd_nxt == self.snd_max and not sb:
                    # New data in full segments, more waiting behind them: send as many as
                    # the window allows in one go.
                    count = min((unsent - 1) // mss, usable // mss)
                    if not pacing and self._pmtu_high <= self._pmtu_low:
                        self._transmit(ACK, self.snd_nxt, off, mss, now, count)
                        continue
                flags = ACK
                last = size == unsent
                if last:
                    flags |= PSH
                    if self._fin_queued:
                        flags |= FIN
                self._transmit(flags, self.snd_nxt, off, size, now)
                if last:
                    if self._more:
                        self._more = self.tail_held = False  # the held piece is out
                    # All sent (the FIN too, if queued), and SND.NXT is now SND.MAX: another
                    # turn would find nothing to send and nothing to skip.
                    break
            elif self._fin_queued and self.snd_nxt == self._fin_seq and usable > 0:
                # The FIN takes a sequence number, so it waits for window like a data byte
                # (a shut window is probed by the persist timer instead).
                self._transmit(ACK | FIN, self.snd_nxt, off, 0, now)
            else:
                break
        # Persist timer (§3.8.6.1): data waits and nothing is outstanding, so no ACK will
        # come to open the window. With a shut window it sends probes; with a window too
        # small to use it is the SWS override timer.
        if (
            self.snd_nxt == self.snd_una
            and self.timers.persist is None
            and (buf.end > self._stream_offset(self.snd_nxt) or self._fin_unsent)
        ):
            self.timers.persist = now + self.rtt.rto

    def _may_send(self, size: int, now: float) -> bool:
        """Pacing (:mod:`udptcp.core.pacing`): False, with the refill time armed as a timer,
        when a ``size``-byte segment must wait."""
        srtt = self.rtt.srtt
        if not self.config.pacing or not srtt:
            return True
        cc = self.cc
        wait = self._pacer.wait(size, now, cc.cwnd, cc.ssthresh, srtt, self._eff_mss)
        if not wait:
            return True
        if self.timers.pace is None:
            self.timers.pace = now + wait
        return False

    def _transmit(
        self, flags: int, seq: int, off: int, size: int, now: float, count: int = 1
    ) -> None:
        """Send ``count`` segments of ``size`` bytes each from stream offset ``off``
        (sequence number ``seq``), every one with ``flags``, and do the sending bookkeeping
        once for all of them: SND.NXT and SND.MAX, the RTT sample (Karn's rule), the sent
        log, the timers. ``count`` > 1 only for full segments of new data (the run sender
        sends a window of them in one go); ``size`` 0 is a FIN alone."""
        get = self._sendbuf.get
        segment = self._segment
        if count == 1:
            payload = get(off, size) if size else b""
            size = len(payload)
            segs = [segment(flags, seq, payload)]
        else:
            segs = [
                segment(flags, (seq + i * size) & _MASK, get(off + i * size, size))
                for i in range(count)
            ]
        sent = count * size
        end = (seq + sent + (1 if flags & FIN else 0)) & _MASK
        snd_max = self.snd_max
        if seq_lt(seq, snd_max):
            self.stats_counters["retransmits"] += count
            self._retx_tsval = self._tsval()
        elif self._rtt_seq is None and self._retries == 0:
            self._rtt_seq, self._rtt_time = seq, now
        if self.snd_una == snd_max:
            self._una_since = now
        self.snd_nxt = end
        if seq_gt(end, snd_max):
            self.snd_max = end
        if size:
            if count == 1:
                self._log.record(off, off + size, now)
            else:
                self._log.record_run(off, size, count, now)
        if self._amp is None:
            # _emit() for each, in one pass: no amplification budget to spend, and every
            # segment carries the same ACK.
            self._out.extend(segs)
            if flags & ACK:
                self._ack_sent(self.rcv_nxt)
            counters = self.stats_counters
            counters["segments_sent"] += count
            counters["bytes_sent"] += sent
        else:
            for seg in segs:
                self._emit(seg, now)
        timers = self.timers
        if timers.rto is None:
            timers.rto = now + self.rtt.rto
        if not self._bursting:
            self._arm_tlp(now)  # a run arms it once, at its end

    def _segment(self, flags: int, seq: int, payload: bytes = b"") -> Segment:
        burst = self._burst
        if burst is not None and self._dsack is None:
            # The same instant and receive state as the run's previous segment: the same
            # window field and options (segments are never changed once built).
            window, options = burst
        else:
            options = None
            dsack = self._dsack is not None
            # _sack_blocks() has none without a D-SACK or held data (asked inline: per segment).
            blocks = (
                self._sack_blocks() if self.sack_ok and (dsack or self._reassembly.size > 0) else ()
            )
            if self.ts_enabled or blocks:
                # RFC 7323 §3.2: once agreed, every segment carries a timestamp.
                ts = (self._tsval(), self.ts_recent) if self.ts_enabled else None
                options = Options(timestamps=ts, sack_blocks=blocks)
                self._dsack = None
            window = self._window_field()
            if self._bursting and not dsack:
                self._burst = (window, options)  # a D-SACK block is reported once only
        return Segment(
            self.local_port, self.remote_port, seq, self.rcv_nxt, flags, window, options, payload
        )

    def _emit(self, seg: Segment, now: float) -> None:
        if self._amp is not None and not self._amp.spend(
            sent_size(seg) + (self._wire_syn_extra if seg.flags & SYN else self._wire_extra)
        ):
            # Beyond three times what the unproven address sent us (RFC 9000 §8.1): not
            # sent. A retransmitted SYN from a real peer earns the next SYN,ACK.
            self.stats_counters["amplification_limited"] += 1
            return
        if seg.flags & ACK:
            self._ack_sent(seg.ack)
        self.stats_counters["segments_sent"] += 1
        self.stats_counters["bytes_sent"] += len(seg.payload)
        self._out.append(seg)

    def _ack_sent(self, ack: int) -> None:
        """A segment carrying ACK went out: it settles what we owed (RFC 1122 §4.2.3.2)."""
        self._last_ack_sent = ack
        self._ack_now = self._ack_owed = False
        self.timers.delack = None
        self._unacked_bytes = 0

    def _send_syn(self, now: float) -> None:
        flags = SYN | ACK if self.state is S.SYN_RECEIVED else SYN
        seg = Segment(
            self.local_port,
            self.remote_port,
            self.iss,
            self.rcv_nxt if flags & ACK else 0,
            flags,
            self._window_field(syn=True),
            self._syn_options(),
        )
        if self._retries == 0:
            self._rtt_seq, self._rtt_time = self.iss, now
        self._syn_sent_at = now
        self.snd_nxt = seq_add(self.iss, 1)
        self.snd_max = self.snd_nxt
        self._emit(seg, now)
        self.timers.rto = now + self.rtt.rto

    def _syn_ack_again(self) -> Segment:
        return Segment(
            self.local_port,
            self.remote_port,
            self.iss,
            self.rcv_nxt,
            SYN | ACK,
            self._window_field(syn=True),
            self._syn_options(),
        )

    def _syn_options(self) -> Options:
        """Our SYN offers every option the config enables; a SYN,ACK answers only the ones
        the peer's SYN offered (which ``_take_peer_syn`` recorded)."""
        cfg = self.config
        answering = self.state is S.SYN_RECEIVED
        wscale = None
        if cfg.window_scaling and (not answering or self.wscale_ok):
            wscale = self._wscale_offer
        timestamps = None
        if cfg.timestamps and (not answering or self.ts_enabled):
            timestamps = (self._tsval(), self.ts_recent if answering else 0)
        sack_permitted = cfg.sack and (not answering or self.sack_ok)
        return Options(
            mss=self.mss, wscale=wscale, sack_permitted=sack_permitted, timestamps=timestamps
        )

    def _send_window_probe(self, now: float) -> None:
        """Persist timer expiry (§3.8.6.1): make the peer repeat its window.

        The probe carries an already-acknowledged sequence number (SND.UNA - 1), which any
        receiver must answer with an ACK stating its current window (§3.10.7.4 first step).
        Unlike a byte sent beyond the window, it never becomes outstanding data, so it
        cannot count as a duplicate ACK or a retransmission, and probing may go on for as
        long as the peer keeps answering (RFC 1122 §4.2.2.17).
        """
        if self.state not in _SENDS_DATA:
            return
        if self.snd_wnd > 0:
            # RFC 1122 §4.2.3.4 (d): the SWS override timeout. A window smaller than
            # both a segment and half the largest window was held back; fill it now.
            self._persist_backoff = 1
            self._send_data(now, override_sws=True)
            return
        # RFC 1122 §4.2.2.17 lets probing go on while the peer answers; one that falls
        # silent behind a shut window is dead, after user_timeout as with unacknowledged
        # data (Linux gives up after tcp_retries2 unanswered probes, or its user timeout).
        if self._probing_since is None:
            self._probing_since = now
        elif now - self._probing_since >= self.config.user_timeout:
            self.stats_counters["persist_timeouts"] += 1
            self._enter_closed(
                timed_out(f"window probes unanswered for {now - self._probing_since:.0f} s"),
                C.TIMEOUT,
            )
            return
        self.stats_counters["window_probes"] += 1
        self._silent_rounds += 1
        self._emit(self._segment(ACK, seq_add(self.snd_una, -1)), now)
        self._persist_backoff = min(self._persist_backoff * 2, 64)
        self.timers.persist = now + min(self.rtt.rto * self._persist_backoff, _PERSIST_MAX)
