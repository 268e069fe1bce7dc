"""The receiving half: reassembly, delivery, auto-tuning, delayed ACK, what SACK reports.

In-order text goes to the application (or is held while reading is paused), out-of-order
text waits in the reassembly queue (RFC 9293 §3.10.7.4, seventh step), and the peer's FIN
ends the stream (eighth step). This side also decides what our segments tell the peer
about it: the window (with receiver-side silly window avoidance, RFC 1122 §4.2.3.3, and
auto-tuning), when an ACK is owed (RFC 1122 §4.2.3.2, RFC 5681 §4.2) and which SACK blocks
to report (RFC 2018 §4, RFC 2883).
"""

from __future__ import annotations

from .buffers import DROPPED
from .control import _HALF, _MASK, _MAX_WINDOW_FIELD, C, ControlBlock, S
from .events import DataReceived, EofReceived
from .segment import FIN, RST, Segment
from .seq import seq_add, seq_diff, seq_gt

# Out-of-order arrivals remembered for SACK blocks: one more than the blocks that fit.
_SACK_RECENT = 5
#: In-order data of a train reaches the application as one DataReceived, joined, except
#: that a segment this large comes as its own: joining would copy it once more (path MTU
#: probing's 64 KB segments), while a default-size segment's extra call costs more than
#: its copy.
_OWN_EVENT = 16 * 1024


class Receiver(ControlBlock):
    """Receiving text and advertising the window and SACK blocks (a Connection part)."""

    __slots__ = ()

    # Declared here as real methods, not as typing-only stubs, so that a
    # compiled build (mypyc, which rejects statements in a class body) can call them.
    def _emit(self, seg: Segment, now: float) -> None:
        """Send ``seg`` (the sending part, above this one, defines it)."""
        raise NotImplementedError

    def _receive_text(self, seg: Segment, now: float) -> None:
        """Seventh and eighth steps: queue the data, then the FIN, in sequence order."""
        if (
            self._discard_input
            and seg.payload
            and seq_gt(seq_add(seg.seq, len(seg.payload)), self.rcv_nxt)
        ):
            # New data for an application that closed: nobody will read it. Reset, so
            # the sender's writes fail rather than vanish (RFC 1122 §4.2.2.13; Linux too).
            self._emit(Segment(self.local_port, self.remote_port, self.snd_max, 0, RST, 0), now)
            self._enter_closed(None, C.ABORT)
            return
        payload = seg.payload
        seq = seg.seq
        if not payload and not seg.flags & FIN:
            # A bare ACK queues nothing (most segments of a handshake and a close); one
            # from before RCV.NXT is a duplicate that earns an ACK, as the trim below says.
            if seq_diff(self.rcv_nxt, seq) > 0:
                self._ack_now = True
            return
        fin = bool(seg.flags & FIN)
        # Trim what we already have (§3.10.7.4: "already received" portion).
        early = seq_diff(self.rcv_nxt, seq)
        if early > 0:
            dup = min(early, len(payload))
            self.stats_counters["duplicate_bytes_received"] += dup
            if dup:
                self._dsack = (seq, seq_add(seq, dup))  # RFC 2883: report the duplicate
            payload = payload[early:]
            seq = self.rcv_nxt
            if early > len(seg.payload):
                fin = False  # the FIN itself was already processed
            self._ack_now = True
        # Trim what lies beyond the window; a FIN beyond it waits for a retransmission.
        room = seq_diff(self._rcv_adv, seq)
        if len(payload) > room:
            payload = payload[: max(room, 0)]
            fin = False
        if not payload and not fin:
            return
        offset = self._rcv_off + seq_diff(seq, self.rcv_nxt)
        fin_off = self._fin_off
        if fin:
            end = offset + len(payload)
            if fin_off is None:
                # The stream ends here (§3.10.7.4 eighth step): anything held beyond it is
                # no part of it, and nothing beyond it will be taken (Linux purges too).
                self._fin_off = fin_off = end
                # (size first: a close's FIN finds nothing held, and truncate() is 2 calls)
                if self._reassembly.size > 0 and self._reassembly.truncate(end):
                    self.stats_counters["beyond_fin_dropped"] += 1
            elif end != fin_off:
                fin = False  # a second FIN elsewhere: the first one stands
        if fin_off is not None and offset + len(payload) > fin_off:
            payload = payload[: max(fin_off - offset, 0)]
            self.stats_counters["beyond_fin_dropped"] += 1
            if not payload and not fin:
                return
        if offset > self._rcv_off:
            self._hold_out_of_order(offset, seq, payload)
            return
        filled_hole = self._reassembly.size > 0  # bool(), without the call
        if payload:
            more = self._reassembly.pop_from(offset + len(payload)) if filled_hole else b""
            self._accept_in_order(payload + more if more else payload)
            if filled_hole:
                self._ack_now = True  # RFC 5681 §4.2: ACK at once when a gap is filled
            else:
                self._schedule_ack(len(payload), now)
        if fin or (self._fin_off is not None and self._fin_off == self._rcv_off):
            self._receive_fin(now)

    def _hold_out_of_order(self, offset: int, seq: int, payload: bytes) -> None:
        """Text beyond RCV.NXT (trimmed to the window): hold it for reassembly and send a
        duplicate ACK at once (RFC 5681 §4.2)."""
        self.stats_counters["out_of_order_segments"] += 1
        self._ack_now = True
        if not payload:
            return
        kept = self._reassembly.add(
            offset,
            payload,
            self.config.receive_buffer - len(self._held),
            self.config.max_reassembly_pieces,
        )
        if kept == DROPPED:
            # No room (the per-piece charge or the piece cap): drop it, as Linux drops what
            # its receive buffer cannot take; it was not SACKed, so the sender will send it
            # again. The FIN, if any, comes again with it.
            self.stats_counters["reassembly_dropped"] += 1
            return
        if not kept:
            self._dsack = (seq, seq_add(seq, len(payload)))  # all of it held already
        self._note_ooo_arrival(offset)

    def _note_ooo_arrival(self, offset: int) -> None:
        """Remember an out-of-order arrival for the SACK blocks (RFC 2018 §4): it goes first,
        and earlier arrivals now in the same run (or beyond the five kept) drop out."""
        run = self._reassembly.run_at(offset)
        recent = [offset]
        for off in self._sack_recent:
            if len(recent) == _SACK_RECENT:
                break
            if run is None or not run[0] <= off < run[1]:
                recent.append(off)
        self._sack_recent = recent

    def _accept_in_order(self, data: bytes) -> None:
        n = len(data)
        self.rcv_nxt = seq_add(self.rcv_nxt, n)
        self._rcv_off += n
        self.stats_counters["bytes_received"] += n
        if self._reading and not self._discard_input:
            self._tune_receive_space(n)
        if self._discard_input:
            return
        if not self._reading:
            self._held += data
            reassembly = self._reassembly
            budget = self.config.receive_buffer - len(self._held)
            if reassembly and reassembly.charge > budget and reassembly.prune_to(budget):
                # Held data and the out-of-order queue together stay within receive_buffer:
                # what the window promised in order wins over what was SACKed beyond a hole.
                self.stats_counters["reassembly_pruned"] += 1
        elif not self._batch:
            self._events.append(DataReceived(data))
        elif n >= _OWN_EVENT:
            # Large enough that joining it to its neighbours would cost more (a copy of
            # every byte) than the application's extra data_received call saves.
            self._end_batch()
            self._events.append(DataReceived(data))
        else:
            events = self._events
            if self._rx_event is None or not events or events[-1] is not self._rx_event:
                self._end_batch()
                self._rx_event = DataReceived(b"")
                events.append(self._rx_event)
            self._rx_chunks.append(data)

    def _end_batch(self) -> None:
        """Hand the data a train delivered to the application as one event."""
        chunks = self._rx_chunks
        if chunks:
            assert self._rx_event is not None
            self._rx_event.data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._rx_chunks = []
        self._rx_event = None

    def _tune_receive_space(self, delivered: int) -> None:
        """Receive-buffer auto-tuning (the idea of Linux's tcp_rcv_space_adjust).

        Once per round trip, let the window grow to twice what the application consumed
        in the last one, up to ``Config.receive_buffer`` (or a lower clamp the driver set,
        :meth:`~udptcp.core.connection.Connection.set_window_clamp`): a fast reader on a long path gets
        the window it needs, while a slow one (or loopback, where a round trip is short)
        never has megabytes in flight that would only overflow socket buffers.

        A sender in slow start doubles its rate every round trip, and the window offered
        now is used a round later: twice the last round would hold it back to ~1.6x per
        round. So when consumption grew, the window grows by that ratio again, at most
        twice (Linux extrapolates the same way, by up to 3x): four times a doubling round
        keeps ahead of the sender, yet a noisy round on a short path adds little.
        """
        self._drs_bytes += delivered
        rtt = self._rcv_rtt or self.rtt.srtt or 0.1
        if self._now - self._drs_start < rtt:
            return
        copied = self._drs_bytes
        wanted = 2 * copied
        last = self._drs_last
        if last and copied > last:
            wanted += wanted * min(copied - last, last) // last
        if wanted > self._rcv_space:
            self._rcv_space = min(wanted, self._rcv_clamp)
        self._drs_last = copied
        self._drs_bytes = 0
        self._drs_start = self._now

    def _schedule_ack(self, nbytes: int, now: float) -> None:
        """Delayed ACK (RFC 1122 §4.2.3.2, RFC 5681 §4.2): at least every second full segment."""
        self._unacked_bytes += nbytes
        if self.config.delayed_ack <= 0 or self._unacked_bytes >= 2 * self._eff_mss:
            if self._batch:
                self._ack_owed = True  # once, after the train (receive_many)
            else:
                self._ack_now = True
        elif self.timers.delack is None:
            self.timers.delack = now + self.config.delayed_ack

    def _receive_fin(self, now: float) -> None:
        """Eighth step: the peer's FIN, in sequence."""
        self.rcv_nxt = seq_add(self.rcv_nxt, 1)
        self._fin_off = None
        self._ack_now = True
        if not self._discard_input:
            if self._held:
                self._eof_pending = True
            else:
                self._events.append(EofReceived())
        st = self.state
        if st is S.ESTABLISHED:
            self._transition(C.RCV_FIN)
        elif st is S.FIN_WAIT_1:
            if seq_gt(self.snd_una, self._fin_seq):
                self._enter_time_wait(now, C.RCV_FIN_ACKED)
            else:
                self._transition(C.RCV_FIN)  # simultaneous close (§3.6, Figure 13)
        elif st is S.FIN_WAIT_2:
            self._enter_time_wait(now, C.RCV_FIN)

    def _sack_blocks(self) -> tuple[tuple[int, int], ...]:
        """SACK blocks for the next segment (RFC 2018 §4, RFC 2883 §4).

        A D-SACK block comes first when a duplicate arrived; then the run holding the
        newest out-of-order data, then the runs of the arrivals before it, most recent
        first (so each run is reported in several ACKs, in case some are lost); any room
        left goes to the highest runs. Three fit beside timestamps in the 40 option bytes,
        four without. A few lookups, O(log n) each, whatever the number of runs.
        """
        reassembly = self._reassembly
        if not reassembly and self._dsack is None:
            return ()
        limit = 3 if self.ts_enabled else 4
        blocks: list[tuple[int, int]] = []
        if self._dsack is not None:
            blocks.append(self._dsack)
        if reassembly:
            runs: list[tuple[int, int]] = []
            want = limit - len(blocks)
            for off in self._sack_recent:
                run = reassembly.run_at(off)  # None once delivered
                if run is not None and run not in runs:
                    runs.append(run)
                    if len(runs) == want:
                        break
            if len(runs) < want:
                for run in reassembly.highest_runs(want):
                    if run not in runs:
                        runs.append(run)
                        if len(runs) == want:
                            break
            base_off, base_seq = self._rcv_off, self.rcv_nxt
            for start, end in runs:
                blocks.append(
                    (seq_add(base_seq, start - base_off), seq_add(base_seq, end - base_off))
                )
        return tuple(blocks)

    def _sack_option_len(self) -> int:
        """Bytes the SACK blocks add to a segment (NOP, NOP, kind, length, 8 per block)."""
        reassembly = self._reassembly
        if self._dsack is None and reassembly.size == 0:
            return 0  # nothing held, so no runs (asked per sending turn: spare the calls)
        n = (1 if self._dsack is not None else 0) + reassembly.run_count  # O(1)
        n = min(n, 3 if self.ts_enabled else 4)
        return 4 + 8 * n if n else 0

    def _receive_window(self, current: int | None = None) -> int:
        """Bytes of window to offer now, with receiver-side SWS avoidance (RFC 1122 §4.2.3.3).

        The right edge never moves left (§3.8.6.2.1); it moves right only in steps of at
        least min(buffer/2, MSS). ``current``: the window now offered, if the caller has it.
        (min/max are written out: this runs for every segment built.)
        """
        limit = _MAX_WINDOW_FIELD << self.rcv_wscale
        space = self._rcv_space
        free = space - len(self._held)
        if free > limit:
            free = limit
        reassembly = self._reassembly
        if reassembly.size > 0:  # bool(reassembly), without the call
            # Out-of-order pieces are charged their bookkeeping on top of their bytes
            # (buffers.PIECE_OVERHEAD): offer no more than the buffer can still hold if the
            # window fills. Never below the edge already offered (the return below and
            # _window_field keep it); arrivals that no longer fit are dropped, as Linux does.
            room = (
                self.config.receive_buffer - len(self._held) - reassembly.charge + reassembly.size
            )
            if room < free:
                free = room
        if current is None:
            current = max(seq_diff(self._rcv_adv, self.rcv_nxt), 0)
        step = space // 2
        mss = self.mss
        if free - current < (mss if mss < step else step) and free != current:
            return limit if limit < current else current
        return free if free > 0 else 0

    def _window_field(self, syn: bool = False) -> int:
        """The window field of an outgoing segment; records the right edge it advertises.

        Scaled by RFC 7323 except in SYNs. Scaling rounds down, so when the right edge must
        hold still the field rounds up instead (as Linux does): the edge never moves left.
        """
        shift = 0 if syn else self.rcv_wscale
        rcv_nxt = self.rcv_nxt
        current = ((self._rcv_adv - rcv_nxt + _HALF) & _MASK) - _HALF  # seq_diff, inline
        if current < 0:
            current = 0
        field = self._receive_window(current) >> shift
        held = -(-current >> shift)  # the edge already offered, rounded up
        if held > field:
            field = held
        if field > _MAX_WINDOW_FIELD:
            field = _MAX_WINDOW_FIELD
        edge = field << shift
        self._rcv_adv = (rcv_nxt + (edge if edge > current else current)) & _MASK  # seq_add
        return field

    def _window_update_due(self) -> bool:
        current = max(seq_diff(self._rcv_adv, self.rcv_nxt), 0)
        return self._receive_window() > current
