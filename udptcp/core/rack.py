"""Time-based loss detection: RACK (RFC 8985 §6) over a log of outstanding segments.

Every data segment sent is logged with its stream-offset range and the time of its latest
transmission. When the peer acknowledges or SACKs a segment, every unSACKed segment that was
sent *before* it, and has had a round trip plus a reordering window to arrive, is deemed
lost. Unlike duplicate-ACK counting this also catches a lost retransmission and losses at
the tail of a flight, and it tolerates reordering shorter than the window.

The log also yields RFC 6675's ``pipe`` directly: the bytes sent that are neither SACKed nor
deemed lost.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Sequence


class Sent:
    """One logged transmission."""

    __slots__ = ("start", "end", "time", "order", "retransmitted", "lost", "sacked")

    def __init__(self, start: int, end: int, time: float, order: int) -> None:
        self.start = start
        self.end = end
        self.time = time
        self.order = order  # transmission count: orders sends that share a clock tick
        self.retransmitted = False
        self.lost = False
        self.sacked = False

    def __repr__(self) -> str:
        flags = "".join(
            c for c, on in (("R", self.retransmitted), ("L", self.lost), ("S", self.sacked)) if on
        )
        return f"<Sent [{self.start},{self.end}) t={self.time:.4f} {flags}>"


class SentLog:
    """Outstanding segments, ordered by offset, with RACK's view of which are lost.

    Byte counts of SACKed and lost segments are kept up to date as flags change, so
    ``pipe`` costs O(1). Two side structures keep loss detection from walking the whole
    log on every ACK (a hostile receiver could otherwise make each ACK cost the flight):
    transmissions in send order (RACK only ever looks at the oldest still-undecided
    ones, as Linux's time-sorted queue does) and a heap of lost segments by offset
    (RFC 6675 NextSeg's "lowest lost"). Both drop stale entries lazily, each entry
    leaving once, so the costs are amortised O(1) and O(log n).
    """

    __slots__ = (
        "_segs",
        "_starts",
        "_sends",
        "_bytes",
        "_sacked_bytes",
        "_sacked_count",
        "_lost_bytes",
        "rack_time",
        "rack_order",
        "rack_rtt",
        "reordering_seen",
        "_delivered_end",
        "_delivered_end_before",
        "_by_send",
        "_by_send_head",
        "_lost_heap",
        "_tickets",
    )

    def __init__(self) -> None:
        self._segs: list[Sent] = []
        self._starts: list[int] = []
        self._sends = 0
        self._bytes = 0  # total of every logged segment
        self._sacked_bytes = 0
        self._sacked_count = 0
        self._lost_bytes = 0  # lost and not SACKed
        #: Transmission time and order of the most recently *sent* segment known delivered.
        #: (RFC 8985 breaks ties in time by sequence number; a send counter also orders a
        #: retransmission after the data it follows when both fall in one clock tick.)
        self.rack_time = -1.0
        self.rack_order = -1
        #: RTT measured on that segment.
        self.rack_rtt = 0.0
        #: RFC 8985 §6.2 step 3: a segment never resent arrived after one sent later.
        self.reordering_seen = False
        self._delivered_end = -1
        self._delivered_end_before = -1
        #: (order, segment) per transmission, in send order; an entry is stale once its
        #: segment was sent again (a new order), SACKed, deemed lost or acknowledged.
        #: A list read from ``_by_send_head`` (a deque costs ~600 bytes per connection even
        #: when empty; the list's consumed head is cut off now and then instead).
        self._by_send: list[tuple[int, Sent]] = []
        self._by_send_head = 0
        #: (start, order, ticket, segment) for segments deemed lost; stale once resent or
        #: SACKed. The ticket keeps two entries for one segment from comparing segments.
        self._lost_heap: list[tuple[int, int, int, Sent]] = []
        self._tickets = 0

    def __len__(self) -> int:
        return len(self._segs)

    def segments(self) -> list[Sent]:
        return list(self._segs)

    # -- flag changes, keeping the counters -------------------------------------------

    def _set_lost(self, seg: Sent, lost: bool) -> None:
        if seg.lost != lost and not seg.sacked:
            self._lost_bytes += (seg.end - seg.start) * (1 if lost else -1)
            if lost:
                self._push_lost(seg.start, seg)
        seg.lost = lost

    def _push_lost(self, start: int, seg: Sent) -> None:
        self._tickets += 1
        heapq.heappush(self._lost_heap, (start, seg.order, self._tickets, seg))

    def _set_sacked(self, seg: Sent) -> None:
        if seg.lost:
            self._lost_bytes -= seg.end - seg.start
            seg.lost = False
        seg.sacked = True
        self._sacked_bytes += seg.end - seg.start
        self._sacked_count += 1

    def _forget(self, seg: Sent) -> None:
        size = seg.end - seg.start
        self._bytes -= size
        if seg.sacked:
            self._sacked_bytes -= size
            self._sacked_count -= 1
        elif seg.lost:
            self._lost_bytes -= size

    # -- recording ---------------------------------------------------------------------

    def record_run(self, start: int, size: int, count: int, now: float) -> None:
        """Log ``count`` new segments of ``size`` bytes from ``start``, sent together
        (the same as ``count`` calls of :meth:`record` at the top of the log)."""
        segs, starts = self._segs, self._starts
        if segs and start < segs[-1].end:
            # Not new data after all (the connection never does this): log it the slow way
            # rather than corrupt the log's order.
            for i in range(count):
                self.record(start + i * size, start + (i + 1) * size, now)
            return
        order = self._sends
        by_send = self._by_send
        for _ in range(count):
            order += 1
            seg = Sent(start, start + size, now, order)
            segs.append(seg)
            starts.append(start)
            by_send.append((order, seg))
            start += size
        self._sends = order
        self._bytes += count * size

    def record(self, start: int, end: int, now: float) -> None:
        """Log a transmission of ``[start, end)``: new data at the top, or a resend."""
        if end <= start:
            return
        self._sends += 1
        order = self._sends
        if not self._segs or start >= self._segs[-1].end:
            seg = Sent(start, end, now, order)
            self._segs.append(seg)
            self._starts.append(start)
            self._by_send.append((order, seg))
            self._bytes += end - start
            return
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        while i < len(self._segs) and self._segs[i].start < end:
            seg = self._segs[i]
            if seg.end > start and not seg.sacked:
                # A resend covering only part of a logged segment (re-segmented at a smaller
                # size, e.g. after a path MTU probe) splits it: the rest keeps its state.
                if seg.start < start:
                    self._split(i, start)
                    i += 1
                    seg = self._segs[i]
                if seg.end > end:
                    self._split(i, end)
                seg.time = now
                seg.order = order
                seg.retransmitted = True
                self._set_lost(seg, False)
                self._by_send.append((order, seg))
            i += 1
        if end > self._segs[-1].end:  # a resend that also carries new bytes
            top = self._segs[-1].end
            seg = Sent(top, end, now, order)
            self._segs.append(seg)
            self._starts.append(top)
            self._by_send.append((order, seg))
            self._bytes += end - top

    def _split(self, i: int, at: int) -> None:
        """Cut segment ``i`` at offset ``at``; both halves keep its flags and times."""
        seg = self._segs[i]
        tail = Sent(at, seg.end, seg.time, seg.order)
        tail.retransmitted, tail.lost, tail.sacked = seg.retransmitted, seg.lost, seg.sacked
        seg.end = at
        self._segs.insert(i + 1, tail)
        self._starts.insert(i + 1, at)
        if seg.sacked:
            self._sacked_count += 1
        elif seg.lost:
            self._push_lost(at, tail)
        # The tail's place in send order is its head's; splits are rare (a resend at a
        # smaller segment size), so the queue is rebuilt rather than searched.
        self._rebuild_by_send()

    def _rebuild_by_send(self) -> None:
        live = [seg for seg in self._segs if not seg.sacked and not seg.lost]
        live.sort(key=lambda seg: (seg.order, seg.start))
        self._by_send = [(seg.order, seg) for seg in live]
        self._by_send_head = 0

    def _advance_by_send(self, head: int) -> None:
        """The entries before ``head`` are consumed; cut them off once they are most of
        the list (amortised O(1) per entry)."""
        if head > 32 and 2 * head > len(self._by_send):
            del self._by_send[:head]
            head = 0
        self._by_send_head = head

    def acknowledge(self, una: int, now: float, min_rtt: float) -> None:
        """Drop what the cumulative ACK covers, letting RACK learn from it."""
        n = 0
        for seg in self._segs:
            if seg.end > una:
                break
            if not seg.sacked:
                self._delivered(seg, now, min_rtt)
            self._forget(seg)
            n += 1
        if n:
            del self._segs[:n]
            del self._starts[:n]
            # Acknowledged transmissions leave the send-order queue (oldest first, so this
            # is amortised O(1)); a queue nobody walks must not grow with the transfer.
            by_send, head = self._by_send, self._by_send_head
            while head < len(by_send) and (
                by_send[head][1].end <= una or by_send[head][1].order != by_send[head][0]
            ):
                head += 1
            self._advance_by_send(head)
            if not self._lost_bytes:
                self._lost_heap.clear()
        if self._segs and self._segs[0].start < una:
            first = self._segs[0]
            self._forget(first)
            first.start = una
            self._starts[0] = una
            self._bytes += first.end - una
            if first.sacked:
                self._sacked_bytes += first.end - una
                self._sacked_count += 1
            elif first.lost:
                self._lost_bytes += first.end - una
                self._push_lost(una, first)

    def sack(
        self,
        start: int,
        end: int,
        now: float,
        min_rtt: float,
        new: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        """Mark the segments lying wholly inside ``[start, end)`` as SACKed; RACK learns.

        ``new``, when given, lists the sub-ranges of ``[start, end)`` that were not SACKed
        before (the rest was, and marked then): only segments overlapping them can change,
        so only those are visited, and a SACK block that a peer repeats one byte longer
        each time costs O(log n), not a walk over the whole block.
        """
        segs, starts = self._segs, self._starts
        for lo, hi in new if new is not None else ((start, end),):
            i = max(bisect.bisect_right(starts, lo) - 1, 0)
            while i < len(segs) and segs[i].start < hi:
                seg = segs[i]
                if not seg.sacked and seg.end > lo and start <= seg.start and seg.end <= end:
                    self._set_sacked(seg)
                    self._delivered(seg, now, min_rtt)
                i += 1

    def start_ack(self) -> None:
        """Call before the SACK blocks and cumulative ACK of one incoming segment: what it
        reports arrived together, so only earlier ACKs can reveal reordering."""
        self._delivered_end_before = self._delivered_end

    def sacked_segments(self) -> int:
        return self._sacked_count

    def _delivered(self, seg: Sent, now: float, min_rtt: float) -> None:
        if not seg.retransmitted and seg.end < self._delivered_end_before:
            self.reordering_seen = True
        if seg.end > self._delivered_end:
            self._delivered_end = seg.end
        # RFC 8985 §6.2 step 2: an ACK arriving sooner than min_RTT after a retransmission
        # acknowledges the original, so it says nothing about this transmission's time.
        if seg.retransmitted and now - seg.time < min_rtt:
            return
        # (time, order) > (RACK.time, RACK.order), without building the tuples: per segment.
        rack_time = self.rack_time
        if seg.time > rack_time or (seg.time == rack_time and seg.order > self.rack_order):
            self.rack_time, self.rack_order = seg.time, seg.order
            self.rack_rtt = now - seg.time

    # -- loss --------------------------------------------------------------------------

    def detect_losses(self, now: float, reo_wnd: float) -> tuple[int, float | None]:
        """RFC 8985 §6.2 step 5: mark segments sent before the RACK segment as lost once
        RACK.rtt + reo_wnd has passed; return (how many newly lost, when to look again).

        Segments never resent are in send order along the log, and a resend is later than
        its original: so past the first never-resent segment sent after the RACK segment,
        nothing can have been sent before it, and the scan stops there.
        """
        newly = 0
        wait: float | None = None
        horizon = self.rack_rtt + reo_wnd
        rack_order = self.rack_order
        by_send, head = self._by_send, self._by_send_head
        una = self._segs[0].start if self._segs else None
        # Oldest transmission first: a segment sent at or after the RACK segment ends the
        # walk, and so does the first one not yet due (those sent later are due later).
        while head < len(by_send):
            order, seg = by_send[head]
            if seg.order != order or seg.sacked or seg.lost or una is None or seg.end <= una:
                head += 1  # sent again since, or decided: stale
                continue
            if order >= rack_order:
                break
            due = seg.time + horizon
            if due > now:
                wait = due
                break
            head += 1
            self._set_lost(seg, True)
            newly += 1
        self._advance_by_send(head)
        return newly, wait

    def mark_lost_below(self, offset: int) -> int:
        """Deem lost every unSACKed segment ending at or below ``offset``, except those
        already sent again (only time, i.e. RACK, tells whether a resend was lost)."""
        newly = 0
        for seg in self._segs:
            if seg.end > offset:
                break
            if not seg.sacked and not seg.lost and not seg.retransmitted:
                self._set_lost(seg, True)
                newly += 1
        return newly

    def mark_all_lost(self) -> None:
        """RFC 8985 §6.3: after a retransmission timeout everything unSACKed is lost."""
        for seg in self._segs:
            if not seg.sacked:
                self._set_lost(seg, True)

    def first_lost(self) -> Sent | None:
        """The lowest segment deemed lost and not SACKed (O(log n) amortised)."""
        heap = self._lost_heap
        if not self._lost_bytes:
            heap.clear()
            return None
        una = self._segs[0].start if self._segs else None
        while heap:
            start, order, _, seg = heap[0]
            if (
                seg.lost
                and not seg.sacked
                and seg.order == order
                and seg.start == start
                and una is not None
                and seg.end > una
            ):
                return seg
            heapq.heappop(heap)
        return None

    def highest_unsacked(self) -> Sent | None:
        for seg in reversed(self._segs):
            if not seg.sacked:
                return seg
        return None

    def lost_bytes(self) -> int:
        return self._lost_bytes

    def sacked_bytes(self) -> int:
        """Bytes above the cumulative ACK that the peer has SACKed."""
        return self._sacked_bytes

    def pipe(self) -> int:
        """Bytes in flight: sent, neither SACKed nor deemed lost (RFC 6675 §4 via RACK)."""
        return self._bytes - self._sacked_bytes - self._lost_bytes

    def forget_sacks(self) -> None:
        """The scoreboard was dropped (the peer may have reneged): nothing counts as SACKed."""
        for seg in self._segs:
            seg.sacked = False
        self._sacked_bytes = self._sacked_count = 0
        self._rebuild_by_send()
