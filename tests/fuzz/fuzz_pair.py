"""Coverage-guided fuzzing of two connections talking through a hostile network (atheris).

The fuzzer's bytes are a script (read by ``reader.Reader``): two configurations and ISNs,
then operations, each one byte plus arguments. A client and a server ``Connection`` (the
server created by ``accept`` when the client's SYN reaches it, as the endpoint does) talk
through two queues of segments the script delivers, drops, duplicates, reorders, delays
and tampers with (sequence and acknowledgment numbers, flags, windows, SACK blocks,
timestamps, SYN options, truncation), or into which it injects segments of its own; the
applications write, shut down, close, abort and pause; virtual time passes. Every segment
crosses the wire codec. ``hostile_watch.Watch`` checks both connections after every
operation (see its docstring); tampered data carries the sender's real bytes for its new
sequence number, so delivered data can be checked against what the other side wrote.

At the end, if the script only lost, duplicated, reordered and delayed segments (the
network an honest peer faces), the network turns reliable: everything written must arrive
intact, in order, with EOF after a shutdown. Then the network goes silent, both
applications close, and both connections must reach CLOSED within hours of virtual time.

Run (atheris is in the optional ``fuzz`` extra)::

    python tests/fuzz/fuzz_pair.py -max_total_time=600 tests/fuzz/corpus/pair
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _path in (HERE.parents[1], HERE.parent / "core", HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))  # this checkout's udptcp and the shared checks

from hostile_watch import MASK, Pattern, Watch  # noqa: E402
from reader import Reader  # noqa: E402

from udptcp.core.config import Config  # noqa: E402
from udptcp.core.connection import Connection, State  # noqa: E402
from udptcp.core.segment import (  # noqa: E402
    ACK,
    RST,
    SYN,
    Options,
    Segment,
    decode,
    encode,
)
from udptcp.core.seq import seq_add  # noqa: E402

S = State
CLIENT_PORT, SERVER_PORT = 1000, 2000
PATTERNS = (Pattern(11), Pattern(12))  # what the client and the server write
DELAYS = (0.0, 0.0001, 0.001, 0.005, 0.02, 0.05, 0.2, 1.0, 5.0, 30.0, 130.0)
WRITES = (1, 13, 100, 536, 1400, 1452, 3000, 20_000, 70_000)
WINDOWS = (0, 1, 2, 3, 100, 1000, 8000, 65535)
SILENCE = 4 * 3600.0


def _config(r: Reader) -> Config:
    bits = r.byte()
    return Config(
        sack=bool(bits & 1),
        timestamps=bool(bits & 2),
        window_scaling=bool(bits & 4),
        delayed_ack=0.04 if bits & 8 else 0.0,
        keepalive=bool(bits & 16),
        nagle=bool(bits & 32),
        pacing=bool(bits & 64),
        congestion_control="cubic" if bits & 128 else "newreno",
        receive_buffer=r.choice((600, 4000, 65535, 300_000)),
        initial_window=r.choice((1, 2, 10)),
        pmtu_max=r.choice((None, None, None, 9000)),
    )


class Pair:
    """The two connections, their watches and the two directions of the network."""

    def __init__(self, r: Reader) -> None:
        self.r = r
        cfg_c, cfg_s = _config(r), _config(r)
        self.cfg_s = cfg_s
        self.iss = (r.uint(4), r.uint(4))
        self.mss = (r.choice((100, 536, 1452)), r.choice((100, 536, 1452)))
        # Half the scripts face an honest network (loss, duplicates, reordering, delay
        # only): their transfers are checked end to end.
        self.hostile = r.flag()
        client = Connection.connect(
            cfg_c,
            local_port=CLIENT_PORT,
            remote_port=SERVER_PORT,
            iss=self.iss[0],
            mss=self.mss[0],
            now=0.0,
        )
        self.watches: list[Watch | None] = [
            Watch(client, PATTERNS[0], PATTERNS[1], self.iss[1]),
            None,  # the server exists once the client's SYN reaches it
        ]
        self.queues: tuple[list[Segment], list[Segment]] = ([], [])  # towards 1, towards 0
        self.now = 0.0
        self.honest = True  # only losses, duplicates, reordering and delay so far
        self.closed_by_app = [False, False]
        self.collect()

    # -- plumbing ---------------------------------------------------------------------------

    def collect(self) -> None:
        """Move what each connection emitted into the network (through the wire codec)."""
        for side, w in enumerate(self.watches):
            if w is not None:
                for seg in w.drain():
                    self.queues[side].append(decode(encode(seg)))

    def deliver(self, side: int, seg: Segment) -> None:
        """``seg`` reaches connection ``1 - side``."""
        to = 1 - side
        w = self.watches[to]
        if w is None:
            if seg.flags & (SYN | ACK | RST) == SYN and seg.seq == self.iss[0]:
                # The listener: a SYN makes the server connection (Connection.accept).
                server = Connection.accept(
                    self.cfg_s, seg, iss=self.iss[1], mss=self.mss[1], now=self.now
                )
                w = self.watches[1] = Watch(server, PATTERNS[1], PATTERNS[0], seg.seq, self.now)
                w.note_peer(seg)
                self.collect()
            return
        if w.conn.state is S.CLOSED:
            return  # the endpoint has forgotten it (it would answer with a RST)
        w.receive(seg)
        self.collect()

    def deliver_train(self, side: int, train: list[Segment]) -> None:
        """Segments that arrive together, handed over as the endpoint does (receive_many);
        a SYN for a server not yet made goes first on its own, as the endpoint routes it."""
        w = self.watches[1 - side]
        while train and (w is None or w.conn.state is S.CLOSED):
            self.deliver(side, train.pop(0))
            w = self.watches[1 - side]
        if train and w is not None:
            w.receive_many(train)
            self.collect()

    def set_time(self, now: float) -> None:
        """Advance every connection's clock to ``now``, firing timers in order."""
        for w in self.watches:
            if w is not None:
                w.advance(max(now - w.now, 0.0))
        self.now = now
        self.collect()

    def payload_for(self, side: int, seg: Segment, seq: int, size: int) -> bytes:
        """Bytes the sender ``side`` wrote at sequence number ``seq``: a tampered segment
        still carries the stream's real bytes for where it now claims to be."""
        off = (seq - self.iss[side] - 1 + (1 if seg.flags & SYN else 0)) & MASK
        return PATTERNS[side].get(off, size)

    # -- tampering --------------------------------------------------------------------------

    def tamper(self, side: int, seg: Segment) -> Segment:
        r = self.r
        self.honest = False
        what = r.byte() % 8
        seq, ack, flags, window = seg.seq, seg.ack, seg.flags, seg.window
        options = seg.options
        payload = seg.payload
        if what == 0 and not seg.flags & SYN:
            seq = seq_add(seq, r.signed(2))
            payload = self.payload_for(side, seg, seq, len(payload))
        elif what == 1:
            ack = seq_add(ack, r.signed(3))
        elif what == 2:
            flags ^= r.byte()
            if flags & SYN and not seg.flags & SYN:
                flags &= ~SYN  # a SYN at a data sequence number is injected, not tampered
        elif what == 3:
            window = r.choice(WINDOWS) if r.flag() else r.uint(2)
        elif what == 4:
            payload = payload[: r.uint(2) % (len(payload) + 1)]
        elif what == 5:
            options = self.hostile_options(seg, r)
        elif what == 6 and options is not None and options.timestamps is not None:
            tsval, tsecr = options.timestamps
            delta = r.signed(4)
            options = Options(
                timestamps=(seq_add(tsval, delta), tsecr) if r.flag() else None,
                sack_blocks=options.sack_blocks,
            )
        elif what == 7:
            if seg.flags & SYN:
                options = Options(
                    mss=r.choice((None, 0, 1, 13, 48, 536, 65535)),
                    wscale=r.choice((None, 0, 14, 15, 255)),
                    sack_permitted=r.flag(),
                    timestamps=(r.uint(4), r.uint(4)) if r.flag() else None,
                )
            else:
                seq = seq_add(seq, r.signed(4))  # anywhere at all
                payload = self.payload_for(side, seg, seq, len(payload))
        return Segment(seg.src_port, seg.dst_port, seq, ack, flags, window, options, payload)

    def hostile_options(self, seg: Segment, r: Reader) -> Options:
        """SACK blocks the receiving side will read as about its own data."""
        to = self.watches[1 - side_of(seg)]
        una = to.conn.snd_una if to is not None else 0
        top = to.conn.snd_max if to is not None else 0
        ts = seg.options.timestamps if seg.options is not None else None
        blocks = []
        # Four blocks fit in the 40 option bytes, three beside timestamps (RFC 2018 §3).
        for _ in range(r.byte() % (4 if ts is not None else 5)):
            kind = r.byte() % 4
            a, b = r.uint(2), r.uint(2)
            if kind == 0:
                blocks.append((una, top))  # everything
            elif kind == 1:
                blocks.append((seq_add(una, a), seq_add(una, a + b)))  # inside or beyond
            elif kind == 2:
                blocks.append((seq_add(una, -a - b), seq_add(una, -a)))  # below: D-SACK
            else:
                blocks.append((r.uint(4), r.uint(4)))  # anywhere
        return Options(timestamps=ts, sack_blocks=tuple(blocks))

    def inject(self, side: int) -> None:
        """A segment made up by the network, as if sent by ``side``, near the receiver's
        sequence numbers (a sequence-aware attacker)."""
        r = self.r
        to = self.watches[1 - side]
        if to is None:
            return
        self.honest = False
        c = to.conn
        seq = seq_add(c.rcv_nxt, r.signed(3))
        ack = seq_add(c.snd_una, r.signed(3))
        flags = r.byte()
        size = r.choice((0, 0, 1, 100, 1452))
        src, dst = (CLIENT_PORT, SERVER_PORT) if side == 0 else (SERVER_PORT, CLIENT_PORT)
        probe = Segment(src, dst, seq, ack, flags)
        payload = self.payload_for(side, probe, seq, size)
        options = self.hostile_options(probe, r) if r.flag() else None
        seg = Segment(src, dst, seq, ack, flags, r.choice(WINDOWS), options, payload)
        self.deliver(side, decode(encode(seg)))

    # -- the script -------------------------------------------------------------------------

    def step(self) -> None:
        r = self.r
        op = r.byte()
        side = op >> 4 & 1  # the low four bits say what, the fifth whose
        op &= 15
        queue = self.queues[side]
        w = self.watches[side]
        if op < 5:  # deliver the next segment (most operations are this)
            if queue:
                self.deliver(side, queue.pop(0))
        elif op == 5:  # deliver up to the next n as one train (one socket read burst)
            count = r.byte() % 8 + 1
            train, queue[:count] = queue[:count], []
            self.deliver_train(side, train)
        elif op < 8:  # lose one
            if queue:
                queue.pop(r.byte() % len(queue))
        elif op < 10:  # duplicate or reorder
            if queue:
                i = r.byte() % len(queue)
                if r.flag():
                    queue.append(queue[i])
                else:
                    queue.append(queue.pop(i))
        elif op < 12:  # time passes
            self.set_time(self.now + r.choice(DELAYS))
        elif op == 12:  # an application call
            if w is not None and w.conn.state is not S.CLOSED:
                call = r.byte() % 8
                if call < 4:
                    w.send(r.choice(WRITES))
                elif call == 4:
                    w.shutdown()
                elif call == 5:
                    self.closed_by_app[side] = True
                    w.close()
                elif call == 6:
                    w.conn.pause_reading()
                else:
                    w.conn.resume_reading(w.now)
                self.collect()
        elif op == 13:  # rarely: abort
            if w is not None and r.byte() % 8 == 0:
                self.closed_by_app[side] = True
                w.abort()
                self.collect()
        elif op >= 14 and not self.hostile:
            if queue:
                self.deliver(side, queue.pop(0))
        elif op == 14:  # tamper with a segment in flight
            if queue:
                i = r.byte() % len(queue)
                queue[i] = decode(encode(self.tamper(side, queue[i])))
        else:  # inject one
            self.inject(side)

    def finish(self) -> None:
        """Reliable delivery (for an honest network), then silence and the liveness check."""
        for w in self.watches:
            if w is not None:
                w.conn.resume_reading(w.now)
        self.collect()
        if self.honest and not any(self.closed_by_app):
            self.settle()
            client, server = self.watches
            assert server is not None or client is None or client.conn.state is S.CLOSED
            if client is not None and server is not None:
                for a, b in ((client, server), (server, client)):
                    if a.conn.state is S.CLOSED or b.conn.state is S.CLOSED:
                        continue  # e.g. the handshake timed out: nothing to check
                    assert b.delivered == a.written, (
                        f"{a.written} bytes written, {b.delivered} delivered "
                        f"({a.conn.state}, {b.conn.state})"
                    )
                    if a.shutdown_called:
                        assert b.eof_at == a.written
        self.queues[0].clear()
        self.queues[1].clear()
        for w in self.watches:
            if w is not None and w.conn.state is not S.CLOSED:
                w.close()
        for w in self.watches:
            if w is not None:
                w.drain()
                w.advance(SILENCE)
                assert w.conn.state is S.CLOSED, f"{w.conn.state} after {SILENCE} s of silence"

    def settle(self) -> None:
        """Carry every segment at once, and let time pass, until both sides are quiet."""
        for _ in range(20_000):
            if self.queues[0] or self.queues[1]:
                for side in (0, 1):
                    queue = self.queues[side]
                    while queue:
                        self.deliver(side, queue.pop(0))
                continue
            deadlines = [
                t
                for w in self.watches
                if w is not None and w.conn.state is not S.CLOSED
                for t in (w.conn.get_timer(),)
                if t is not None
            ]
            busy = any(
                w is not None
                and w.conn.state is not S.CLOSED
                and (w.conn.unsent_bytes or w.conn.snd_una != w.conn.snd_max or w.conn._fin_unsent)
                for w in self.watches
            )
            if not deadlines or (not busy and self.handshaken()):
                return
            self.set_time(max(min(deadlines), self.now))
        raise AssertionError("two honest connections never settled")

    def handshaken(self) -> bool:
        return all(w is not None and w.conn.state is not S.SYN_SENT for w in self.watches) and (
            self.watches[1] is not None and self.watches[1].conn.state is not S.SYN_RECEIVED
        )


def side_of(seg: Segment) -> int:
    return 0 if seg.src_port == CLIENT_PORT else 1


def one_input(data: bytes) -> None:
    """Run one script; any exception is a finding."""
    r = Reader(data)
    pair = Pair(r)
    for _ in range(400):
        if r.exhausted:
            break
        pair.step()
    pair.finish()


# Starting points for the fuzzer: handshake, transfers both ways, loss, shutdown. Each is
# the script format above: two configs (flag bits, buffer, initial window, PMTU), two ISNs,
# two MSS choices, a hostile-network flag, then operations (low four bits: what; bit 4:
# which side).
_DELIVER, _LOSE, _TIME, _APP = 0, 6, 10, 12
_CLEAN = bytes([0x0B, 2, 2, 0, 0x0B, 2, 2, 0]) + bytes(8) + bytes([2, 2, 0])
_SETTLE = bytes([_DELIVER, _DELIVER | 16] * 6 + [_TIME, 4] + [_DELIVER, _DELIVER | 16] * 6)
SEEDS = (
    _CLEAN + _SETTLE,
    _CLEAN + _SETTLE + bytes([_APP, 0, 6]) + _SETTLE * 3,
    _CLEAN + _SETTLE + bytes([_APP, 0, 7, _APP | 16, 1, 6, _LOSE, 0]) + _SETTLE * 3,
    _CLEAN + _SETTLE + bytes([_APP, 0, 5, _APP, 4]) + _SETTLE * 2 + bytes([_APP | 16, 4]),
    bytes([0xFF, 3, 0, 3, 0xFF, 3, 0, 3]) + b"\xff" * 8 + bytes([1, 1, 1]) + _SETTLE,
)


def main() -> None:
    import atheris

    for arg in sys.argv[1:]:
        corpus = Path(arg)
        if corpus.is_dir() and not any(corpus.iterdir()):
            for i, seed in enumerate(SEEDS):
                (corpus / f"seed-{i}").write_bytes(seed)
    atheris.instrument_all()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
