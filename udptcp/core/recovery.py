"""Loss recovery: what the peer has, what was lost, what to resend, and the window's answer.

The owner of the sender's scoreboard (RFC 2018/6675 SACK), the sent log (RACK, RFC 8985),
the recovery point (RFC 6582 "recover"), the undo of a spurious response (RFC 3708 with
D-SACK, RFC 2883), proportional rate reduction (RFC 6937), tail loss probes (RFC 8985 §7)
and the retransmission timeout (RFC 6298). It is the only part that calls the congestion
controller (:mod:`udptcp.core.congestion`), which alone changes its window.
"""

from __future__ import annotations

from .congestion import create
from .control import _MASK, C, S
from .errors import timed_out
from .pmtu import PathMtu
from .sack import DUP_THRESH
from .segment import ACK, FIN, PSH
from .seq import seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt
from .state import SENDS_DATA as _SENDS_DATA

# RFC 8985 §7.2 adds a worst-case delayed-ACK time to a lone segment's probe timeout; it
# suggests 200 ms, but both udptcp (Config.delayed_ack) and Linux acknowledge within 40 ms.
_WC_DELACK = 0.04
# Probes allowed before the RTO takes over. RFC 8985 sends one; a second halves the
# chance that a lost probe (or its ACK) leaves the repair to the RTO on a lossy path.
_MAX_TLPS = 2


class LossRecovery(PathMtu):
    """Loss detection and repair, and every call into congestion control (a Connection part)."""

    __slots__ = ()

    def _start_congestion_control(self) -> None:
        """The peer's SYN made the segment size known: a fresh controller whose window
        counts in it (RFC 5681 SMSS). (No RTT sample exists yet: the first comes with the
        ACK of our SYN.)"""
        self.cc = create(self.config.congestion_control, self._eff_mss, self.config.initial_window)

    def _on_handshake_loss(self) -> None:
        """The SYN or SYN,ACK had to be sent again: the initial window is one segment (RFC
        5681 §3.1), and without an RTT sample the timeout restarts from 3 s (RFC 6298 §5.7;
        here three times the configured initial RTO, which is 1 s by default)."""
        self.cc.on_handshake_loss()
        if self.rtt.srtt is None:
            self.rtt.reinitialize(3 * self.config.rto_initial)

    def _mss_changed(self) -> None:
        """The size of our segments changed (path MTU search): tell congestion control."""
        self.cc.on_mss_change(self._eff_mss)

    def _ack_advances(self, ack: int, now: float, tsecr: int = 0) -> int:
        """Move SND.UNA to ``ack``: free acknowledged data, take an RTT sample, re-arm RTO."""
        acked = seq_diff(ack, self.snd_una)
        # Its stream offset, once (acknowledging moves the buffer's start, not the offset).
        off = self._stream_offset(ack)
        self.snd_una = ack
        if seq_lt(self.snd_nxt, ack):
            self.snd_nxt = ack  # after a go-back-N rewind, originals were acknowledged
        self._sendbuf.acknowledge(off)
        if self._sb:
            self._sb.prune(off)
        if self._log:
            self._log.acknowledge(off, now, self.rtt.min_rtt or 0.0)
        if self._probe is not None:
            self._probe_acknowledged(off)
        if self._rtt_seq is not None and seq_gt(ack, self._rtt_seq):
            self.rtt.sample(now - self._rtt_time)
            self.cc.on_rtt_sample(now - self._rtt_time, self.rtt.srtt)
            self._rtt_seq = None
        elif tsecr and seq_ge(tsecr, self._retx_tsval):
            # RFC 7323 §4: the echoed timestamp names the transmission being acknowledged,
            # so it measures RTT even for retransmitted data, where Karn's rule stops the
            # sequence-timed sample. An echo older than our last retransmission is skipped:
            # it answers an original whose ACK was lost, and would count our whole backoff
            # wait as path delay (seen as 4 s samples on a 200 ms path at 10% loss).
            elapsed = ((self._tsval() - tsecr) & _MASK) / 1000
            if elapsed < self.config.rto_max:
                self.rtt.sample(elapsed)
                self.cc.on_rtt_sample(elapsed, self.rtt.srtt)
        self._retries = 0
        # RFC 6298 §5.2/5.3: stop the timer when all is acknowledged, else restart it.
        self._tlp_out = 0
        if self.snd_una == self.snd_max:
            self.timers.rto = None
            self._una_since = None
            self.timers.pto = None
        else:
            self.timers.rto = now + self.rtt.rto
            self._una_since = now
            self._arm_tlp(now)
        return acked

    def _take_sack_blocks(self, blocks: tuple[tuple[int, int], ...], ack: int, now: float) -> int:
        """Merge the peer's SACK blocks into the scoreboard; return the bytes newly SACKed.

        A first block below the cumulative ACK, or inside the second block, is a D-SACK
        (RFC 2883 §4): a report of a duplicate, not of new data.
        """
        new = 0
        una_off = self._stream_offset(self.snd_una)
        max_off = self._stream_offset(self.snd_max)
        for i, (left, right) in enumerate(blocks):
            if i == 0 and (
                seq_le(right, ack)
                or (len(blocks) > 1 and seq_ge(left, blocks[1][0]) and seq_le(right, blocks[1][1]))
            ):
                self.stats_counters["dsacks_received"] += 1
                self._on_dsack(self._stream_offset(left))
                continue
            start, end = self._stream_offset(left), self._stream_offset(right)
            # Ignore blocks that do not lie within what is outstanding (RFC 2018 §3).
            start, end = max(start, una_off), min(end, max_off)
            if start < end:
                # A receiver's runs each hold at least one whole segment we logged, so more
                # ranges than twice that is a peer splitting them to make every ACK dearer:
                # a block that would add one more is ignored.
                fresh: list[tuple[int, int]] = []
                added = self._sb.add(start, end, fresh, 2 * len(self._log) + 8)
                if added:
                    new += added
                    # Only the newly SACKed sub-ranges can complete a segment: the log
                    # visits those, so a block repeated a byte longer each time stays cheap.
                    run = self._sb.find(start) or (start, end)  # the run the block joined
                    self._log.sack(run[0], run[1], now, self.rtt.min_rtt or 0.0, fresh)
                    if (
                        self._probe is not None
                        and start <= self._probe[0]
                        and self._probe[1] <= end
                    ):
                        self._probe_acknowledged(self._probe[1])
        return new

    def _on_dsack(self, start: int) -> None:
        """A duplicate of the data from stream offset ``start`` reached the peer: the path
        reorders or duplicates, or a retransmission was spurious.

        RFC 8985 §6.2: widen the reordering window. RFC 3708 §3: once every retransmission
        of the last recovery has come back as a duplicate, nothing had been lost; restore
        the congestion window the recovery cut. Only a D-SACK for a segment resent in that
        recovery counts (Linux's tcp_sacktag_one checks the same): a path that duplicates
        datagrams sends D-SACKs for originals, which prove nothing about the losses.
        """
        self._reo_mult = min(self._reo_mult + 1, 16)
        copies = self._undo_ranges.get(start)
        if self._undo_cwnd is None or not copies:
            return
        if copies > 1:
            self._undo_ranges[start] = copies - 1
        else:
            del self._undo_ranges[start]
        self._undo_retrans -= 1
        if self._undo_retrans == 0:
            self.cc.on_undo(self._undo_cwnd, self._undo_ssthresh)
            self._undo_cwnd = None
            self._undo_ranges.clear()
            self.stats_counters["spurious_recoveries_undone"] += 1

    def _on_new_ack(self, ack: int, now: float, tsecr: int = 0) -> None:
        acked = self._ack_advances(ack, now, tsecr)
        self.stats_counters["bytes_acked"] += acked
        cc = self.cc
        if self._in_recovery:
            if seq_ge(ack, self._recover):
                # RFC 6582 §3.2 step 3 / RFC 6675 §5: full acknowledgment ends recovery.
                self._in_recovery = False
                if not self.sack_ok:
                    cc.on_recovery_end(self._flight, now)
                elif self._undo_cwnd is not None:
                    # SACK recovery ends with cwnd = ssthresh (RFC 6675 §5; RFC 6937 §3),
                    # as Linux's does, unless D-SACKs undid its cut meanwhile. RFC 6582's
                    # min(ssthresh, FlightSize + SMSS) guards against the burst a window
                    # inflated by duplicate ACKs would release; sending by pipe inflates
                    # nothing, and a sender the peer's window held back ends recovery
                    # with little in flight, which the guard made a 1-segment window.
                    cc.on_recovery_end(cc.ssthresh, now)
            elif self.sack_ok:
                pass  # RFC 6675: the scoreboard decides; _output sends by pipe
            else:
                # Partial acknowledgment: the next hole was lost too; repair it now and
                # deflate the window by what was acknowledged (RFC 6582 §3.2 step 3).
                self._retransmit(self._stream_offset(self.snd_una), now, newreno=True)
                cc.on_partial_ack(acked)
        else:
            # RFC 9438 §5.8: no growth for a window the flight did not fill (a sender held
            # by the peer's window or the application would otherwise grow cwnd without
            # bound, and a loss would then cut nothing it actually sends). Slow start may
            # still grow to twice the largest flight of the window, as Linux lets it.
            if self._cwnd_limited or (cc.cwnd < cc.ssthresh and cc.cwnd < 2 * self._max_flight):
                cc.on_ack(acked, self._flight, now)
            if seq_gt(ack, self._recover):
                # Keep "recover" trailing SND.UNA so it never falls 2^31 behind and flips
                # the comparison above (FreeBSD pulls snd_recover forward the same way).
                self._recover = ack
        self._dupacks = 0

    def _on_duplicate_ack(self, now: float) -> None:
        """RFC 5681 §3.2 fast retransmit, RFC 6582 fast recovery, RFC 6675 SACK recovery."""
        self._dupacks += 1
        if self.sack_ok:
            return  # _process_ack runs loss detection on every ACK
        mss = self._eff_mss
        if self._in_recovery:
            # RFC 6582 §3.2 step 4: each further duplicate says a segment left the network.
            # An honest receiver sends one per segment that arrived above the hole, so the
            # inflation is bounded by what was outstanding at recovery entry; duplicates
            # beyond that (a receiver lying to grow our window) inflate nothing.
            if self._inflation_left >= mss:
                self._inflation_left -= mss
                self.cc.on_recovery_dup_ack()
            else:
                self.stats_counters["excess_duplicate_acks"] += 1
            return
        # RFC 6582 §3.2 step 2: only when the ACK covers more than "recover" (our
        # ``_recover`` is one past it: SND.MAX at the time, hence >=).
        if self._dupacks == 3 and seq_ge(self.snd_una, self._recover):
            self._in_recovery = True
            self._recover = self.snd_max
            self._inflation_left = max(self._flight - 3 * mss, 0)
            self.cc.on_loss(self._flight, now)
            self.stats_counters["fast_retransmits"] += 1
            self._retransmit(self._stream_offset(self.snd_una), now, newreno=True)

    def _detect_losses(self, now: float) -> None:
        """Deem outstanding segments lost (RACK, RFC 8985 §6; DupThresh, RFC 6675 §4) and
        enter recovery when something is (RFC 6675 §5, with RFC 6582's "recover" guard)."""
        log = self._log
        if not log:
            self.timers.rack = None
            return
        # RFC 8985 §6.2 step 4: until reordering has been seen, a loss is declared as soon
        # as DupThresh segments are SACKed (or during recovery); once it has, wait a
        # quarter of the minimum RTT for stragglers.
        if not log.reordering_seen and (self._in_recovery or log.sacked_segments() >= DUP_THRESH):
            reo_wnd = 0.0
        else:
            min_rtt = self.rtt.min_rtt or 0.0
            reo_wnd = min(min_rtt / 4 * self._reo_mult, self.rtt.srtt or 0.0)
        _newly, wait = log.detect_losses(now, reo_wnd)
        self.timers.rack = wait
        if self._dupacks >= 3 and not self._sb:
            # A peer that agreed to SACK but sends no blocks: classic fast retransmit.
            log.mark_lost_below(self._stream_offset(self.snd_una) + 1)
        first = log.first_lost()
        if first is None:
            return
        if self._probe is not None and first.start == self._probe[0]:
            # RFC 4821 §7.6.2: a lost probe says the packet was too big, not that the path
            # is congested. Resend its data at the proven size, outside loss recovery.
            probe_end = self._probe[1]
            self._probe_lost(now)
            if log.lost_bytes() == probe_end - first.start:
                off = first.start
                while off < probe_end and self._retransmit(off, now, probe_end):
                    off += min(self._eff_mss, probe_end - off)
                return
        if not self._in_recovery and seq_ge(self.snd_una, self._recover):
            self._in_recovery = True
            self._recover = self.snd_max
            self._undo_cwnd, self._undo_ssthresh = self.cc.cwnd, self.cc.ssthresh
            self._undo_retrans = 0
            self._undo_ranges.clear()
            self.cc.on_loss(self._flight, now)
            # RFC 6937: from here deliveries clock the sending, ssthresh / RecoverFS of
            # each (no window inflation, RFC 6675 §5 step 4.2, and no silence while the
            # flight drains to ssthresh either). Until an ACK reports one, nothing but
            # the retransmission below.
            self._prr_delivered = 0
            self._prr_out_base = self.stats_counters["bytes_sent"]
            self._recover_fs = max(self._flight, self._eff_mss)
            self.cc.on_recovery_window(log.pipe())
            self.stats_counters["fast_retransmits"] += 1
            self.stats_counters["sack_recoveries"] += 1
            # Step 4.3: the first segment deemed lost goes out whatever pipe says.
            first = log.first_lost()
            if first is not None:
                self._retransmit(first.start, now, first.end)

    def _prr_on_ack(self, delivered: int) -> None:
        """RFC 6937 §3.1: set cwnd for an ACK in SACK recovery that reported ``delivered``
        bytes (Linux's tcp_cwnd_reduction does the same in segments)."""
        if delivered <= 0:
            return
        self._prr_delivered += delivered
        cc = self.cc
        pipe = self._log.pipe()
        prr_out = self.stats_counters["bytes_sent"] - self._prr_out_base
        if pipe > cc.ssthresh:
            # Proportional: ssthresh / RecoverFS of what has been delivered (rounded up).
            sndcnt = -(-self._prr_delivered * cc.ssthresh // self._recover_fs) - prr_out
        else:
            # Slow start reduction bound: back towards ssthresh, no faster than slow start.
            bound = max(self._prr_delivered - prr_out, delivered) + self._eff_mss
            sndcnt = min(cc.ssthresh - pipe, bound)
        cc.on_recovery_window(pipe + max(sndcnt, 0))

    def _sack_send(self, now: float) -> None:
        """RFC 6675 §5 step (C): while cwnd - pipe >= 1 SMSS, send what NextSeg() picks."""
        mss = self._eff_mss
        while (
            self.cc.cwnd - self._log.pipe() >= mss
            and self._may_send(mss, now)
            and self._next_segment(now)
        ):
            pass
        if self.timers.pto is None and self.timers.rack is None:
            # Unlike RFC 8985 §7.2, probe in recovery too: with a small window, a lost
            # retransmission leaves nothing later in flight whose delivery would let RACK
            # see it, and only the RTO (200 RTTs on a 1 ms path) would otherwise repair it.
            self._arm_tlp(now)

    def _next_segment(self, now: float) -> bool:
        """RFC 6675 §4 NextSeg() with RACK's notion of lost; sends it and returns True.

        Rule 1: the lowest segment deemed lost (a lost retransmission included, which
        RACK finds and DupThresh cannot). Rule 2: new data the peer's window allows.
        (Rule 3's speculative retransmission is left to RACK's reordering timer.)
        """
        lost = self._log.first_lost()
        if lost is not None:
            return self._retransmit(lost.start, now, lost.end)
        una = self._stream_offset(self.snd_una)
        sent = self._stream_offset(self.snd_max)
        buf_end = self._sendbuf.end + (1 if self._fin_queued else 0)
        room = self.snd_wnd - (sent - una)
        if sent < buf_end and room > 0:
            size = min(self._eff_mss, self._sendbuf.end - sent, room)
            if size > 0 or sent == self._sendbuf.end:
                flags = ACK
                if sent + size == self._sendbuf.end:
                    flags |= PSH | (FIN if self._fin_queued else 0)
                self._transmit(flags, self.snd_max, sent, size, now)
                return True
        return False

    def _retransmit(
        self, off: int, now: float, end: int | None = None, *, newreno: bool = False
    ) -> bool:
        """Send again the data from stream offset ``off``, up to one segment (or ``end``),
        stopping at the next SACKed range; the FIN rides along when the data ends there.
        Returns False if there was nothing to send.

        ``newreno``: the repair of the first unacknowledged segment in recovery without
        SACK (RFC 6582 §3.2 steps 2 and 3). Nothing is SACKed there and RACK does not
        run, so the sent log and the timestamp of the latest retransmission are left as
        they are; and the retransmission timer restarts rather than keeps running.
        """
        buf = self._sendbuf
        sent_end = self._sent_end
        limit = self._sb.next_sacked(off)
        if end is not None:
            limit = end if limit is None else min(limit, end)
        # Only data sent before: a resend never carries bytes beyond SND.MAX, whatever a
        # peer's SACK blocks or window made of the log (new data goes by _transmit).
        size = min(self._eff_mss, sent_end - off, (limit - off) if limit is not None else 1 << 62)
        seq = seq_add(self.iss, 1 + off)
        # The FIN again only if it was sent (SND.MAX is past it).
        fin = self._fin_queued and seq_gt(self.snd_max, self._fin_seq)
        if size > 0:
            flags = ACK
            if off + size == buf.end:
                flags |= PSH | (FIN if fin else 0)
            seg = self._segment(flags, seq, buf.get(off, size))
        elif fin and off == buf.end:
            seg = self._segment(ACK | FIN, seq)
        else:
            return False
        if not newreno:
            self._log.record(off, off + size, now)
            self._retx_tsval = self._tsval()
        if self._undo_cwnd is not None and self._in_recovery:
            # Counted for RFC 3708 while the recovery lasts (a probe sent after it is not
            # one of its retransmissions, and would grow the record without bound).
            self._undo_retrans += 1
            self._undo_ranges[off] = self._undo_ranges.get(off, 0) + 1
        self._rtt_seq = None
        self.stats_counters["retransmits"] += 1
        self._emit(seg, now)
        if newreno or self.timers.rto is None:
            self.timers.rto = now + self.rtt.rto
        return True

    def _arm_tlp(self, now: float) -> None:
        """RFC 8985 §7.2: schedule a tail loss probe about two round trips out.

        If the last segments of a flight are lost, no duplicate ACK or SACK will ever
        announce it; the probe draws an ACK (with SACK information) that lets recovery
        start long before the retransmission timeout.
        """
        srtt = self.rtt.srtt
        timers = self.timers
        if not self.sack_ok or srtt is None or self._tlp_out >= _MAX_TLPS or self._retries:
            timers.pto = None
            return
        snd_una, snd_max = self.snd_una, self.snd_max
        if snd_una == snd_max:
            timers.pto = None
            return
        pto = 2 * srtt
        if seq_diff(snd_max, snd_una) <= self._eff_mss:  # the flight
            pto += _WC_DELACK  # a lone segment may be waiting on a delayed ACK
        if pto < 0.01:  # max() written out: this runs for every flight sent
            pto = 0.01
        deadline = now + pto
        rto = timers.rto
        if rto is not None and deadline > rto:
            # §7.2: if the RTO would fire first, the probe goes out at the RTO's time in its
            # place (and restarts it, §7.3). On a long path the RTO floor is below 2 SRTT:
            # without this, a lost ACK (one per train of a small window) or a lost
            # retransmission always ends in a timeout and a one-segment window.
            deadline = rto
        timers.pto = deadline

    def _send_tlp(self, now: float) -> None:
        """RFC 8985 §7.3: send one new segment if allowed, else the last one again."""
        self.timers.pto = None
        if self.state not in _SENDS_DATA or self.snd_una == self.snd_max:
            return
        self._tlp_out += 1
        self.stats_counters["tail_loss_probes"] += 1
        sent = self._stream_offset(self.snd_max)
        room = self.snd_wnd - self._flight
        if sent < self._sendbuf.end and room > 0:
            size = min(self._eff_mss, self._sendbuf.end - sent, room)
            flags = ACK | (PSH if sent + size == self._sendbuf.end else 0)
            self._transmit(flags, self.snd_max, sent, size, now)
        else:
            # The highest segment the peer has not SACKed, again: its ACK (or SACK, D-SACK)
            # says what the tail needs.
            unsacked = self._log.highest_unsacked()
            if unsacked is not None:
                self._retransmit(unsacked.start, now, unsacked.end)
            else:
                # Everything sent was SACKed (or only the FIN is outstanding): the last
                # segment sent, measured back from SND.MAX, never from the buffer's end.
                last = max(self._sent_end - self._eff_mss, self._stream_offset(self.snd_una))
                self._retransmit(last, now)
        self.timers.rto = now + self.rtt.rto  # §7.3: restart the RTO

    def _on_retransmission_timeout(self, now: float) -> None:
        st = self.state
        self.stats_counters["timeouts"] += 1
        self._rtt_seq = None  # Karn's rule: no sample from a retransmitted segment
        if st in (S.SYN_SENT, S.SYN_RECEIVED):
            limit = self.config.syn_retries if st is S.SYN_SENT else self.config.synack_retries
            if self._retries >= limit:
                what = "SYN" if st is S.SYN_SENT else "SYN,ACK"
                self._enter_closed(
                    timed_out(f"no answer to {self._retries + 1} {what}s"), C.TIMEOUT
                )
                return
            self._retries += 1
            self._silent_rounds += 1
            self._handshake_lost = True
            self.rtt.back_off()
            self.stats_counters["retransmits"] += 1
            self._send_syn(now)
            return
        if self.snd_una == self.snd_max:
            return  # everything was acknowledged meanwhile
        if self._una_since is not None and now - self._una_since >= self.config.user_timeout:
            self._enter_closed(
                timed_out(f"data unacknowledged for {now - self._una_since:.0f} s"), C.TIMEOUT
            )
            return
        # RFC 5681 §3.1: ssthresh is only reduced by the first timeout of a series.
        if self._retries == 0:
            self.cc.on_timeout(self._flight, now)
        else:
            self.cc.on_repeated_timeout()
            # RFC 2018 §8: a receiver may renege on what it SACKed; after repeated timeouts
            # stop trusting the scoreboard so go-back-N resends everything.
            self._sb.clear()
            self._log.forget_sacks()
        if self._probe is not None:
            self._probe_lost(now)
        self._black_hole_check()
        self._log.mark_all_lost()  # RFC 8985 §6.3
        self.timers.rack = None
        self._undo_cwnd = None  # a timeout is not undone
        self._undo_ranges.clear()
        self._retries += 1
        self._silent_rounds += 1
        self._in_recovery = False
        self._dupacks = 0
        self._recover = self.snd_max  # RFC 6582 §3.2 step 4 after a timeout
        self.rtt.back_off()
        # Go back N: everything outstanding is sent again as the window allows.
        self.snd_nxt = self.snd_una
        self._output(now)
        if self.timers.rto is None:
            self.timers.rto = now + self.rtt.rto
