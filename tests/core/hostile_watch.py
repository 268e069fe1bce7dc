"""Invariant checks on one Connection, seen from outside, for the fuzzers.

A :class:`Watch` stands between a fuzzer and one :class:`Connection`: the fuzzer hands it
the application's writes, the peer's segments and the passing of time, and after every
step it checks what the connection emitted and reported against a model of both byte
streams. Used by ``test_fuzz_stateful.py`` (a hostile peer against one connection) and by
the coverage-guided harnesses in ``tests/fuzz/`` (two connections, mutated segments).

What it asserts, each a property the core promises whatever the peer sends:

- nothing raises out of the core (the fuzzer just calls it);
- SND.UNA <= SND.NXT <= SND.MAX in sequence space, and nothing beyond SYN + data + FIN;
- every data segment carries the application's bytes at their own stream offsets, never a
  byte beyond what was written nor beyond SND.MAX (what it has sent as new data), and a FIN
  only just past the last byte written, after a shutdown;
- every emitted segment encodes and decodes back to itself;
- bytes delivered to the application are a prefix of the peer's stream, in order, an EOF
  comes only where the peer put a FIN, and nothing is reported after the close;
- every state change is one RFC 9293 allows;
- no deadline lies in the past, and after ``handle_timer(t)`` none is at or before ``t``
  (else an event loop would spin);
- held memory is bounded: reassembly plus held in-order data within the receive buffer,
  the sender's log and scoreboard within what is outstanding.
"""

from __future__ import annotations

import random
from collections import deque

from udptcp.core.connection import TRANSITIONS, Connection, LocalProtocolError, State
from udptcp.core.events import Connected, ConnectionClosed, DataReceived, EofReceived
from udptcp.core.segment import ACK, FIN, SYN, Segment, decode, encode
from udptcp.core.seq import seq_add, seq_diff, seq_le

MASK = 0xFFFFFFFF
S = State
_SYNCHRONIZED = {
    S.ESTABLISHED,
    S.FIN_WAIT_1,
    S.FIN_WAIT_2,
    S.CLOSE_WAIT,
    S.CLOSING,
    S.LAST_ACK,
    S.TIME_WAIT,
}
_ACCEPTS_WRITES = {S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT}
# Timer firings allowed within one advance() before it counts as a spinning timer.
_MAX_FIRINGS = 200_000


class Pattern:
    """A byte stream that is a function of the offset: what one side writes.

    Random bytes with a long odd period, so a segment carrying bytes from the wrong offset
    (or bytes never written) shows as a mismatch.
    """

    PERIOD = (1 << 20) + 7

    def __init__(self, seed: int) -> None:
        body = random.Random(seed).randbytes(self.PERIOD)
        self._bytes = body + body[: 1 << 17]

    def get(self, off: int, n: int) -> bytes:
        """``n`` bytes from stream offset ``off`` (``n`` below 128 KiB), the offset taken
        modulo 2**32 as sequence numbers are: a segment starting just below the stream's
        first byte carries the same bytes from offset 0 on as one starting there."""
        off &= MASK
        if off + n > MASK + 1:
            head = MASK + 1 - off
            return self.get(off, head) + self.get(0, n - head)
        i = off % self.PERIOD
        return self._bytes[i : i + n]


class Watch:
    """One connection under test with the models of what was written and delivered.

    ``app`` is what the local application writes; ``peer`` is what the peer's segments
    carry at each offset of its stream, which starts at ``peer_iss + 1``.
    """

    def __init__(
        self, conn: Connection, app: Pattern, peer: Pattern, peer_iss: int, now: float = 0.0
    ) -> None:
        self.conn = conn
        self.app = app
        self.peer = peer
        self.peer_iss = peer_iss & MASK
        self.now = now
        self.written = 0  # bytes the application wrote
        self.delivered = 0  # bytes handed to the application
        self.eof_at: int | None = None
        self.closed = False
        self.close_error: BaseException | None = None
        self.connected = False
        self.fin_offsets: set[int] = set()  # stream offsets where the peer sent a FIN
        # How far the peer's segments reached: stream offset past the last byte (or FIN)
        # it sent. The connection may acknowledge nothing beyond it.
        self.peer_end = 0
        self.rcv_edge: int | None = None  # right edge of the window last advertised
        self.outbox: list[Segment] = []  # emitted, not yet returned by drain()
        self._history_checked = 0  # state transitions already checked
        self.shutdown_called = False
        self.last_tsval: int | None = None  # latest TSval the connection sent
        # The latest data ranges emitted (stream offsets), for a peer choosing SACK blocks.
        self.sent_ranges: deque[tuple[int, int]] = deque(maxlen=64)

    # -- driving --------------------------------------------------------------------------

    def send(self, n: int) -> bool:
        """The application writes ``n`` more bytes; False (and nothing written) when the
        state does not take writes, which must then raise ``LocalProtocolError``."""
        conn = self.conn
        if conn.state in _ACCEPTS_WRITES and not conn._fin_queued:
            conn.send(self.app.get(self.written, n), self.now)
            self.written += n
            return True
        try:
            conn.send(b"x", self.now)
        except LocalProtocolError:
            return False
        raise AssertionError(f"send() in {conn.state} accepted data")

    def shutdown(self) -> None:
        self.shutdown_called = True
        self.conn.shutdown(self.now)

    def close(self) -> None:
        self.shutdown_called = True
        self.conn.close(self.now)

    def abort(self) -> None:
        self.conn.abort(self.now)

    def note_peer(self, seg: Segment) -> None:
        """Record how far the peer's segments reach and where they put a FIN."""
        iss = seg.seq if self._syncs(seg) else self.peer_iss
        end = (seq_add(seg.seq, seg.seg_len) - iss - 1) & MASK
        if seg.flags & FIN:
            self.fin_offsets.add((end - 1) & MASK)
        if end < 1 << 31 and iss == self.peer_iss:
            self.peer_end = max(self.peer_end, end)

    def _syncs(self, seg: Segment) -> bool:
        """Would ``seg`` give the connection the peer's ISN (a SYN while in SYN-SENT)?"""
        return bool(seg.flags & SYN) and self.conn.state is S.SYN_SENT

    def receive(self, seg: Segment) -> None:
        syncs = self._syncs(seg)
        self.note_peer(seg)
        self.conn.receive(seg, self.now)
        if syncs and self.conn.state is not S.SYN_SENT and self.conn.irs == seg.seq:
            # Whatever the peer's ISN was meant to be, this SYN set where its stream starts.
            self.peer_iss = seg.seq
            self.peer_end = seg.seg_len - 1

    def receive_many(self, segs: list[Segment]) -> None:
        """A train, handed over the way the endpoint's transport does."""
        connecting = self.conn.state is S.SYN_SENT
        for seg in segs:
            self.note_peer(seg)
        total = 0
        while total < len(segs):
            total += self.conn.receive_many(segs[total:], self.now)
            if connecting and self.conn.state is not S.SYN_SENT:
                connecting = False
                irs = self.conn.irs
                if irs != self.peer_iss and any(g.flags & SYN and g.seq == irs for g in segs):
                    # A SYN in the train set where the peer's stream starts: measure
                    # from there.
                    self.peer_iss = self.conn.irs
                    self.peer_end = 0
                    for seg in segs:
                        self.note_peer(seg)
            self._take()
            if self.conn.state is S.CLOSED:
                break

    def advance(self, seconds: float) -> None:
        """Move the virtual clock, firing every deadline on the way, in order."""
        end = self.now + seconds
        conn = self.conn
        for _ in range(_MAX_FIRINGS):
            t = conn.get_timer()
            if t is None or t > end:
                break
            assert t >= self.now - 1e-9, f"deadline {t} in the past at {self.now}"
            self.now = max(self.now, t)
            conn.handle_timer(self.now)
            after = conn.get_timer()
            assert after is None or after > self.now, (
                f"handle_timer({self.now}) left a deadline at {after}: the timer would spin"
            )
            self._take()
        else:
            raise AssertionError(f"more than {_MAX_FIRINGS} timer firings in {seconds} s")
        self.now = end

    def next_timer(self) -> None:
        """Advance exactly to the next deadline, if any."""
        t = self.conn.get_timer()
        if t is not None:
            self.advance(max(t - self.now, 0.0))

    # -- checking -------------------------------------------------------------------------

    def drain(self) -> list[Segment]:
        """Take what the connection emitted and reported, checking every item.

        Returns the segments emitted since the last call, including those that steps
        inside the watch (timers fired by :meth:`advance`, a train) took on the way.
        """
        self._take()
        out, self.outbox = self.outbox, []
        return out

    def _take(self) -> None:
        conn = self.conn
        segs = conn.take_segments()
        for seg in segs:
            self._check_segment(seg)
        self.outbox += segs
        for seg in segs:
            if seg.payload:
                off = (seg.seq - conn.iss - 1) & MASK
                self.sent_ranges.append((off, off + len(seg.payload)))
            if seg.options is not None and seg.options.timestamps is not None:
                self.last_tsval = seg.options.timestamps[0]
        for ev in conn.take_events():
            assert not self.closed, f"{ev!r} after ConnectionClosed"
            if isinstance(ev, DataReceived):
                assert self.eof_at is None, "data after EOF"
                data = bytes(ev.data)
                assert data, "empty DataReceived"
                expect = self.peer.get(self.delivered, len(data))
                assert data == expect, (
                    f"delivered bytes at offset {self.delivered} are not the peer's "
                    f"({len(data)} bytes)"
                )
                self.delivered += len(data)
            elif isinstance(ev, EofReceived):
                assert self.eof_at is None, "second EOF"
                assert self.delivered in self.fin_offsets, (
                    f"EOF after {self.delivered} bytes; the peer put FINs at {self.fin_offsets}"
                )
                self.eof_at = self.delivered
            elif isinstance(ev, Connected):
                assert not self.connected, "second Connected"
                self.connected = True
            elif isinstance(ev, ConnectionClosed):
                self.closed = True
                self.close_error = ev.error
        self.check()

    def _check_segment(self, seg: Segment) -> None:
        conn = self.conn
        assert decode(encode(seg)) == seg, f"{seg!r} does not survive the wire"
        n = len(seg.payload)
        if seg.flags & SYN:
            assert seg.seq == conn.iss and n == 0, seg
            return
        if seg.flags & ACK and conn.state is not S.SYN_SENT:
            ack_off = (seg.ack - self.peer_iss - 1) & MASK
            assert ack_off <= self.peer_end, (
                f"{seg!r} acknowledges peer offset {ack_off}; the peer sent up to {self.peer_end}"
            )
            # RFC 9293 §3.8.6.2.1 (and the code's promise): the right edge never moves left.
            edge = seq_add(seg.ack, seg.window << conn.rcv_wscale)
            if self.rcv_edge is not None:
                assert seq_le(self.rcv_edge, edge), f"{seg!r}: window edge moved left"
            self.rcv_edge = edge
        if n:
            off = (seg.seq - conn.iss - 1) & MASK
            assert off + n <= self.written, (
                f"{seg!r} carries stream bytes [{off}, {off + n}), only {self.written} written"
            )
            assert seg.payload == self.app.get(off, n), f"{seg!r}: not the bytes at {off}"
            assert seq_le(seq_add(seg.seq, seg.seg_len), conn.snd_max), (
                f"{seg!r} reaches beyond SND.MAX {conn.snd_max}"
            )
            assert conn.peer_mss <= 0 or n <= conn.peer_mss, (
                f"{n} bytes of data, the peer's MSS is {conn.peer_mss}"
            )
        if seg.flags & FIN:
            assert self.shutdown_called, f"{seg!r}: FIN without shutdown or close"
            assert seq_add(seg.seq, n) == seq_add(conn.iss, 1 + self.written), (
                f"{seg!r}: FIN not just past the {self.written} bytes written"
            )

    def check(self) -> None:
        """State-wide invariants, after every step."""
        conn = self.conn
        hist = conn.state_history
        for i in range(max(self._history_checked, 1), len(hist)):
            assert hist[i] in TRANSITIONS[hist[i - 1]], f"{hist[i - 1]} -> {hist[i]} in {hist}"
        self._history_checked = len(hist)
        if conn.state in _SYNCHRONIZED:
            assert seq_le(conn.snd_una, conn.snd_nxt), (conn.snd_una, conn.snd_nxt)
            assert seq_le(conn.snd_nxt, conn.snd_max), (conn.snd_nxt, conn.snd_max)
            # SYN, every byte written, FIN: nothing else occupies sequence space.
            assert 0 <= seq_diff(conn.snd_max, conn.iss) <= self.written + 2
        # Held memory: out-of-order pieces (charged per piece) plus in-order data a paused
        # reader holds, within the receive buffer; pieces within their cap.
        cfg = conn.config
        queue = conn._reassembly
        held = queue.charge + len(conn._held)
        assert held <= cfg.receive_buffer, (
            f"{held} bytes charged ({queue.size} out of order in {len(queue)} pieces, "
            f"{len(conn._held)} in order), receive buffer {cfg.receive_buffer}"
        )
        assert len(queue) <= min(cfg.max_reassembly_pieces, queue.size), "pieces"
        # The sender keeps records only of what is outstanding.
        buf = conn._sendbuf
        assert buf.end == self.written, (buf.end, self.written)
        if conn.state in _SYNCHRONIZED:
            una = conn._stream_offset(conn.snd_una)
            top = conn._stream_offset(conn.snd_max)
            # Both are kept in offset order: the ends of each say where all of it lies.
            log = conn._log.segments() if len(conn._log) < 64 else []
            if len(conn._log):
                first, last = conn._log._segs[0], conn._log._segs[-1]
                assert una <= first.start and last.end <= top, (first, last, una, top)
            for sent in log:
                assert una <= sent.start < sent.end <= top, (sent, una, top)
            sb = conn._sb
            if sb:
                low, high = sb._map.first(), sb._map.last(1)[0]
                assert low is not None and una <= low[0] and high[1] <= top, (low, high, una, top)
        deadline = conn.get_timer()
        if conn.state is S.CLOSED:
            assert deadline is None, f"CLOSED with a deadline at {deadline}"
        else:
            assert deadline is None or deadline >= self.now - 1e-9, (deadline, self.now)
        assert not conn._out and not conn._events, "undrained output"
