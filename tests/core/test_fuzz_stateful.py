"""A hostile peer that knows every sequence number, against one Connection.

Hypothesis drives a :class:`Connection` through a handshake with hostile SYN options (MSS
0, 1, 13 or 65535, window scale up to 255, timestamps about to wrap), then plays the
peer: acknowledgments old, duplicate, partial and from the future, SACK blocks inside,
outside, overlapping and below the cumulative ACK (and SACKing everything behind a tiny
window), shut and tiny windows, data with holes, retransmissions and overlaps, timestamps
old, missing and wrapping, and flag tricks (SYN+FIN, SYN+RST, RST in and out of the window,
FIN beyond the window, URG); meanwhile the application writes, shuts down, closes, aborts
and pauses reading, and virtual time passes. ``hostile_watch.Watch`` checks the
invariants after every step; at the end the peer falls silent and the connection must
reach CLOSED within hours of virtual time.

Short in CI (a fixed seed, so every run is the same). For a longer run::

    UDPTCP_FUZZ_EXAMPLES=20000 UDPTCP_FUZZ_SEED=$RANDOM \\
        python -m pytest -q -s tests/core/test_fuzz_stateful.py

The seed and the number of examples are printed either way.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter

import pytest
from hostile_watch import MASK, Pattern, Watch
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from support.segments import LOCAL, REMOTE, seg

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.segment import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG, Options, Segment
from udptcp.core.seq import seq_add, seq_diff

S = State
# What the runs reached (printed at the end, to see that the fuzz goes deep).
STATS: Counter[str] = Counter()
APP, PEER = Pattern(1), Pattern(2)
# Initial sequence numbers and timestamp clocks, some of them about to wrap past 2**32.
ISNS = st.sampled_from([1000, 0xFFFFFF00, 0x7FFFFFF0, 0])
TS_BASES = st.sampled_from([1, 0x7FFFFF00, 0xFFFFF000, 0xFFFFFFFF])

configs = st.builds(
    Config,
    sack=st.booleans(),
    timestamps=st.booleans(),
    window_scaling=st.booleans(),
    delayed_ack=st.sampled_from([0.0, 0.04]),
    receive_buffer=st.sampled_from([600, 4000, 65535, 300_000]),
    congestion_control=st.sampled_from(["cubic", "newreno"]),
    keepalive=st.booleans(),
    nagle=st.booleans(),
    pacing=st.booleans(),
    pmtu_max=st.sampled_from([None, None, 9000]),
    initial_window=st.sampled_from([1, 2, 10]),
)
peer_mss = st.one_of(
    st.none(), st.sampled_from([0, 1, 13, 48, 536, 1452, 65535]), st.integers(0, 65535)
)
peer_syn_options = st.builds(
    lambda mss, ws, sack, ts: Options(mss=mss, wscale=ws, sack_permitted=sack, timestamps=ts),
    peer_mss,
    st.one_of(st.none(), st.integers(0, 14), st.integers(0, 255)),
    st.booleans(),
    st.one_of(st.none(), st.tuples(st.integers(0, MASK), st.integers(0, MASK))),
)
windows = st.one_of(
    st.sampled_from([0, 1, 2, 3, 100, 1000, 8000, 65535, 65535, 65535]), st.integers(0, 65535)
)
small = st.integers(0, 70_000)
# How the peer picks the acknowledgment number: (kind, parameter).
acks = st.tuples(
    st.sampled_from(
        ["all", "all", "all", "una", "una", "nxt", "mid", "segment", "old", "ancient", "future"]
    ),
    small,
)
# SACK blocks: (kind, a, b).
sacks = st.one_of(
    st.none(),
    st.tuples(
        st.sampled_from(
            ["all", "inside", "beyond", "below", "overlap", "inverted", "sent", "many", "huge"]
        ),
        small,
        small,
    ),
)
ts_modes = st.sampled_from(["ok", "ok", "ok", "none", "old", "ancient", "future", "zero"])
# Where data goes relative to what the connection has received: (kind, parameter).
data_places = st.tuples(
    st.sampled_from(["next", "next", "hole", "hole", "edge", "beyond", "old", "overlap"]),
    st.integers(0, 5000),
)
data_sizes = st.one_of(st.sampled_from([1, 2, 13, 100, 536, 1452, 3000]), st.integers(1, 5000))
tricks = st.sampled_from(
    [
        "syn_fin",
        "syn_rst",
        "syn_in_window",
        "rst_exact",
        "rst_in_window",
        "rst_out_of_window",
        "fin_beyond_window",
        "urg",
        "data_without_ack",
        "all_flags",
        "no_flags",
        "syn_again",
        "synack_again",
        "ece_cwr",
    ]
)


# Any segment at all near the connection's sequence numbers.
ANYTHING_ARGS = dict(
    dseq=st.integers(-70000, 70000),
    dack=st.integers(-70000, 70000),
    flags=st.integers(0, 255),
    window=windows,
    size=st.sampled_from([0, 0, 1, 100, 1452]),
    mss=st.one_of(st.none(), peer_mss),
    wscale=st.one_of(st.none(), st.integers(0, 255)),
    sack=sacks,
    ts=ts_modes,
)
ANYTHING = st.fixed_dictionaries(ANYTHING_ARGS)
OPENING = dict(
    cfg=configs,
    active=st.booleans(),
    iss=ISNS,
    peer_iss=ISNS,
    ts_base=TS_BASES,
    mss=st.sampled_from([100, 536, 1452]),
    opts=peer_syn_options,
    window=windows,
    extra=st.sampled_from([0, 0, 0, FIN, PSH, URG, ECE | CWR]),
    syn_data=st.sampled_from([0, 0, 0, 10]),
    rtt=st.sampled_from([0.0005, 0.01, 0.2]),
    complete=st.sampled_from([True, True, True, True, False]),
)


def timed(rule_function):
    """Record the slowest run of each rule (the cost of a pathological sequence shows)."""

    @functools.wraps(rule_function)
    def run(self, **kwargs):
        start = time.perf_counter()
        rule_function(self, **kwargs)
        micros = int((time.perf_counter() - start) * 1e6)
        key = f"slowest {rule_function.__name__} (µs)"
        STATS[key] = max(STATS[key], micros)

    return run


# Every move but reopening needs a connection that is not over yet.
live = precondition(lambda self: self.conn.state is not S.CLOSED)


class HostilePeer(RuleBasedStateMachine):
    """One connection under test; every rule is a move of the peer or the application."""

    def __init__(self) -> None:
        super().__init__()
        self.w: Watch
        self.conn: Connection
        self.ts_base = 1
        self.tick: float | None = None

    # -- opening ------------------------------------------------------------------------

    @initialize(**OPENING)
    @timed
    def open(self, **kw):
        self.start(now=0.0, **kw)

    @precondition(lambda self: self.conn.state is S.CLOSED)
    @rule(**OPENING)
    @timed
    def reopen(self, **kw):
        """A connection that reached CLOSED is over: the fuzz goes on with a new one."""
        self.start(now=self.w.now + 1.0, **kw)

    def start(
        self,
        now,
        cfg,
        active,
        iss,
        peer_iss,
        ts_base,
        mss,
        opts,
        window,
        extra,
        syn_data,
        rtt,
        complete,
    ):
        self.ts_base = ts_base
        if opts.timestamps is not None:
            opts.timestamps = (self.tsval(now), opts.timestamps[1])
        payload = PEER.get(0, syn_data)
        if active:
            conn = Connection.connect(
                cfg, local_port=LOCAL, remote_port=REMOTE, iss=iss, mss=mss, now=now
            )
            self.w = Watch(conn, APP, PEER, peer_iss, now=now)
            self.conn = conn
            self.w.drain()
            self.w.advance(rtt)
            if complete and conn.state is S.SYN_SENT:
                if opts.timestamps is not None and self.w.last_tsval is not None:
                    opts.timestamps = (self.tsval(self.w.now), self.w.last_tsval)
                synack = seg(
                    SYN | ACK | extra,
                    seq=peer_iss,
                    ack=seq_add(iss, 1),
                    window=window,
                    options=opts,
                    payload=payload,
                )
                self.w.receive(synack)
                self.w.drain()
        else:
            syn = seg(SYN | extra, seq=peer_iss, window=window, options=opts, payload=payload)
            conn = Connection.accept(cfg, syn, iss=iss, mss=mss, now=now)
            self.w = Watch(conn, APP, PEER, peer_iss, now=now)
            self.w.note_peer(syn)
            self.conn = conn
            self.w.drain()
            self.w.advance(rtt)
            if complete and conn.state is S.SYN_RECEIVED:
                self.w.receive(self.segment(seq_add(iss, 1), ACK, window, ts="ok"))
                self.w.drain()

    # -- the peer's segments ------------------------------------------------------------

    @property
    def peer_iss(self) -> int:
        """The peer's ISN: where its stream starts (the Watch follows a SYN that moved it)."""
        return self.w.peer_iss

    def tsval(self, now: float) -> int:
        return (self.ts_base + int(now * 1000)) & MASK

    def rcv_off(self) -> int:
        """The connection's received offset in the peer's stream, as the peer sees it."""
        if self.conn.state in (S.SYN_SENT, S.CLOSED):
            return 0
        return (self.conn.rcv_nxt - self.peer_iss - 1) & MASK

    def ack_value(self, kind: str, k: int) -> int:
        c = self.conn
        flight = seq_diff(c.snd_max, c.snd_una)
        if kind == "all":
            return c.snd_max
        if kind == "una":
            return c.snd_una
        if kind == "nxt":
            return c.snd_nxt
        if kind == "mid":
            return seq_add(c.snd_una, k % (flight + 1))
        if kind == "segment" and self.w.sent_ranges:
            start, end = self.w.sent_ranges[k % len(self.w.sent_ranges)]
            return seq_add(c.iss, 1 + end)
        if kind == "old":
            return seq_add(c.snd_una, -1 - k)
        if kind == "ancient":
            return seq_add(c.snd_una, -(1 << 31) + k)
        return seq_add(c.snd_max, 1 + k)

    def sack_blocks(self, spec) -> tuple[tuple[int, int], ...]:
        if spec is None:
            return ()
        kind, a, b = spec
        c = self.conn
        una, top = c.snd_una, c.snd_max
        flight = max(seq_diff(top, una), 0)
        lo, hi = sorted((a % (flight + 1), b % (flight + 1)))
        if kind == "all":
            return ((una, top),)
        if kind == "inside":
            return ((seq_add(una, lo), seq_add(una, hi)),)
        if kind == "beyond":
            return ((seq_add(top, a), seq_add(top, a + b + 1)),)
        if kind == "below":
            return ((seq_add(una, -a - b - 1), seq_add(una, -a)),)
        if kind == "overlap":
            return ((seq_add(una, -a), seq_add(una, hi + 1)),)
        if kind == "inverted":
            return ((seq_add(una, hi + 1), seq_add(una, lo)),)
        if kind == "sent" and self.w.sent_ranges:
            ranges = list(self.w.sent_ranges)
            picked = [ranges[(a + i * (b + 1)) % len(ranges)] for i in range(1 + b % 4)]
            return tuple((seq_add(c.iss, 1 + s), seq_add(c.iss, 1 + e)) for s, e in picked)
        if kind == "many":
            return tuple(
                (seq_add(una, (a * i) % (flight + 1)), seq_add(una, (a * i + b) % (flight + 2)))
                for i in range(1, 5)
            )
        return (((a * 0x10001) & MASK, (b * 0x10001) & MASK),)  # "huge" and fallbacks

    def options(self, ts: str, sack=None, **syn_opts) -> Options | None:
        timestamps = None
        if ts != "none" and (self.conn.ts_enabled or ts != "ok"):
            val, echo = self.tsval(self.w.now), self.w.last_tsval or 0
            timestamps = {
                "ok": (val, echo),
                "old": (seq_add(val, -1000), echo),
                "ancient": (seq_add(val, -(1 << 31) + 1), echo),
                "future": (seq_add(val, 1 << 30), echo),
                "zero": (0, 0),
            }[ts]
        blocks = self.sack_blocks(sack)
        if timestamps is None and not blocks and not syn_opts:
            return None
        return Options(timestamps=timestamps, sack_blocks=blocks[:4], **syn_opts)

    def segment(
        self,
        ack: int,
        flags: int,
        window: int,
        *,
        seq: int | None = None,
        payload: bytes = b"",
        ts: str = "ok",
        sack=None,
    ) -> Segment:
        if seq is None:
            seq = self.conn.rcv_nxt if self.conn.state is not S.SYN_SENT else self.peer_iss
        return seg(
            flags, seq=seq, ack=ack, window=window, options=self.options(ts, sack), payload=payload
        )

    def data_segment(self, place, size, fin, ack, window, ts) -> Segment:
        kind, k = place
        off = self.rcv_off()
        wnd = max(self.conn.rcv_wnd, 1)
        if kind == "hole":
            off += 1 + k % wnd
        elif kind == "edge":
            off += max(wnd - size + k % 3 - 1, 0)
        elif kind == "beyond":
            off += wnd + k
        elif kind == "old":
            off = max(off - size - k, 0)
        elif kind == "overlap":
            off = max(off - 1 - k % size, 0)
        payload = PEER.get(off, size)
        seq = seq_add(self.peer_iss, 1 + off)
        return self.segment(
            self.ack_value(*ack),
            ACK | PSH | (FIN if fin else 0),
            window,
            seq=seq,
            payload=payload,
            ts=ts,
        )

    # -- rules: the peer ---------------------------------------------------------------

    @live
    @rule(ack=acks, window=windows, sack=sacks, ts=ts_modes)
    @timed
    def peer_acks(self, ack, window, sack, ts):
        self.w.receive(self.segment(self.ack_value(*ack), ACK, window, ts=ts, sack=sack))
        self.w.drain()

    @live
    @rule(ack=st.sampled_from(["all", "una", "segment"]), k=small, window=windows)
    @timed
    def peer_acks_well(self, ack, k, window):
        """A well-behaved ACK with a real window, so transfers make progress."""
        self.w.receive(self.segment(self.ack_value(ack, k), ACK, max(window, 8000), ts="ok"))
        self.w.drain()

    @live
    @rule(
        size=st.sampled_from([0, 0, 1, 536, 1452, 3000]),
        window=st.sampled_from([8000, 65535]),
        sack=st.sampled_from([None, None, ("sent", 0, 0), ("sent", 3, 1), ("inside", 1, 3000)]),
    )
    @timed
    def peer_behaves(self, size, window, sack):
        """A peer that ACKs what arrived and sends the next bytes in order, so transfers
        make progress between the tricks (a SACK sometimes: some segments were "lost")."""
        c = self.conn
        off = self.rcv_off()
        ack = c.snd_max if sack is None else c.snd_una
        segment = self.segment(
            ack, ACK | (PSH if size else 0), window, payload=PEER.get(off, size), sack=sack
        )
        self.w.receive(segment)
        self.w.drain()

    @live
    @rule(hole=st.integers(0, 63), holes=st.integers(1, 3), dt=st.sampled_from([0.0, 0.01]))
    @timed
    def peer_lost_a_segment(self, hole, holes, dt):
        """The ACK an honest SACK receiver sends when segments went missing: the cumulative
        ACK stops at the first hole, the blocks cover what arrived after it."""
        c, w = self.conn, self.w
        una = c._stream_offset(c.snd_una)
        top = c._stream_offset(c.snd_max)
        sent = sorted({r for r in w.sent_ranges if una <= r[0] and r[1] <= top})
        if len(sent) < 2:
            return
        lost = {(hole + i * 3) % len(sent) for i in range(holes)}
        blocks: list[tuple[int, int]] = []
        for i, (start, end) in enumerate(sent):
            if i in lost:
                continue
            if blocks and blocks[-1][1] == start:
                blocks[-1] = (blocks[-1][0], end)
            else:
                blocks.append((start, end))
        first = min(lost)
        ack_off = sent[0][0] if first else una
        # The newest block first (RFC 2018 §4), as many as fit.
        sack = tuple(
            (seq_add(c.iss, 1 + s), seq_add(c.iss, 1 + e)) for s, e in reversed(blocks[-3:])
        )
        w.advance(dt)
        segment = seg(
            ACK,
            seq=c.rcv_nxt,
            ack=seq_add(c.iss, 1 + ack_off),
            window=c.snd_wnd >> c.snd_wscale,
            options=self.options("ok") or Options(),
        )
        if segment.options is not None and c.sack_ok:
            segment.options.sack_blocks = sack
        w.receive(segment)
        w.drain()

    @live
    @rule(n=st.integers(1, 5))
    @timed
    def peer_sends_duplicate_acks(self, n):
        """Identical duplicate ACKs, window unchanged: fast retransmit without SACK."""
        c = self.conn
        for _ in range(n):
            segment = self.segment(c.snd_una, ACK, c.snd_wnd >> c.snd_wscale)
            self.w.receive(segment)
            self.w.drain()

    @live
    @rule(window=st.integers(0, 3), ts=ts_modes)
    @timed
    def sacks_everything_behind_a_tiny_window(self, window, ts):
        c = self.conn
        self.w.receive(self.segment(c.snd_una, ACK, window, ts=ts, sack=("all", 0, 0)))
        self.w.drain()

    @live
    @rule(
        place=data_places,
        size=data_sizes,
        fin=st.sampled_from([False, False, False, True]),
        ack=acks,
        window=windows,
        ts=ts_modes,
    )
    @timed
    def peer_sends_data(self, place, size, fin, ack, window, ts):
        self.w.receive(self.data_segment(place, size, fin, ack, window, ts))
        self.w.drain()

    @live
    @rule(
        items=st.lists(
            st.one_of(
                st.tuples(st.just("data"), data_places, data_sizes, st.booleans()),
                st.tuples(st.just("any"), ANYTHING),
            ),
            min_size=2,
            max_size=6,
        ),
        ack=acks,
        window=windows,
    )
    @timed
    def peer_sends_a_train(self, items, ack, window):
        """Segments that arrive together (receive_many), data and anything else mixed."""
        segs = []
        for i, item in enumerate(items):
            if item[0] == "data":
                _, place, size, fin = item
                last = i == len(items) - 1
                segs.append(self.data_segment(place, size, fin and last, ack, window, "ok"))
            else:
                kw = dict(item[1])
                if self.conn.state is S.SYN_SENT:
                    # A SYN here would move where the peer's stream starts under the
                    # data segments already built for the old start: a peer sending two
                    # streams at once, which no receiver could tell apart.
                    kw["flags"] &= ~SYN
                segs.append(self.anything_segment(**kw))
        self.w.receive_many(segs)
        self.w.drain()

    @live
    @rule(
        start=st.integers(0, 3000),
        count=st.integers(1, 400),
        stride=st.integers(2, 5),
    )
    @timed
    def peer_sends_one_byte_holes(self, start, count, stride):
        """Many one-byte pieces with a hole between each: the reassembly worst case."""
        base = self.rcv_off() + 1 + start
        for i in range(count):
            off = base + i * stride
            seq = seq_add(self.peer_iss, 1 + off)
            self.w.receive(
                self.segment(self.conn.snd_max, ACK, 65535, seq=seq, payload=PEER.get(off, 1))
            )
        self.w.drain()

    @live
    @rule(trick=tricks, k=small, size=data_sizes, window=windows)
    @timed
    def peer_plays_a_flag_trick(self, trick, k, size, window):
        c = self.conn
        nxt = c.rcv_nxt
        off = self.rcv_off()
        wnd = max(c.rcv_wnd, 1)
        ack = c.snd_max
        data = PEER.get(off, size)
        segment: Segment
        if trick == "syn_fin":
            segment = self.segment(ack, SYN | FIN | ACK, window, seq=seq_add(nxt, k % wnd))
        elif trick == "syn_rst":
            segment = self.segment(ack, SYN | RST, window, seq=seq_add(nxt, k % wnd))
        elif trick == "syn_in_window":
            segment = self.segment(0, SYN, window, seq=seq_add(nxt, k % wnd))
        elif trick == "rst_exact":
            if k % 8:
                return  # rarely: it ends the connection
            segment = self.segment(ack, RST | ACK, window, seq=nxt)
        elif trick == "rst_in_window":
            segment = self.segment(ack, RST, window, seq=seq_add(nxt, 1 + k % wnd))
        elif trick == "rst_out_of_window":
            segment = self.segment(ack, RST | ACK, window, seq=seq_add(nxt, wnd + 1 + k))
        elif trick == "fin_beyond_window":
            seq = seq_add(nxt, wnd + k)
            fin_data = PEER.get(off + wnd + k, size)
            segment = self.segment(ack, FIN | ACK, window, seq=seq, payload=fin_data)
        elif trick == "urg":
            segment = self.segment(ack, URG | ACK | PSH, window, payload=data)
        elif trick == "data_without_ack":
            segment = self.segment(0, PSH, window, payload=data)
        elif trick == "all_flags":
            segment = self.segment(ack, 0xFF, window, payload=data)
        elif trick == "no_flags":
            segment = self.segment(ack, 0, window, payload=data)
        elif trick == "syn_again":
            segment = seg(SYN, seq=self.peer_iss, window=window, mss=k % 65536)
        elif trick == "synack_again":
            segment = seg(
                SYN | ACK,
                seq=self.peer_iss,
                ack=seq_add(c.iss, 1),
                window=window,
                options=Options(mss=k % 65536, wscale=k % 256),
            )
        else:
            segment = self.segment(ack, ACK | ECE | CWR, window, payload=data)
        self.w.receive(segment)
        self.w.drain()

    def anything_segment(self, dseq, dack, flags, window, size, mss, wscale, sack, ts) -> Segment:
        c = self.conn
        seq = seq_add(c.rcv_nxt, dseq)
        if flags & SYN and c.state is S.SYN_SENT:
            off = 0  # a SYN it takes starts the peer's stream
        else:
            off = (seq - self.peer_iss - 1 + (1 if flags & SYN else 0)) & MASK
        opts = self.options(ts, sack, mss=mss, wscale=wscale)
        ack = seq_add(c.snd_nxt, dack)
        return seg(
            flags, seq=seq, ack=ack, window=window, options=opts, payload=PEER.get(off, size)
        )

    @live
    @rule(**ANYTHING_ARGS)
    @timed
    def peer_sends_anything(self, **kw):
        self.w.receive(self.anything_segment(**kw))
        self.w.drain()

    # -- rules: the application ----------------------------------------------------------

    @live
    @rule(n=st.one_of(st.sampled_from([1, 100, 1452, 5000, 70_000]), st.integers(1, 20_000)))
    @timed
    def app_writes(self, n):
        self.w.send(n)
        self.w.drain()

    @live
    @rule(n=st.sampled_from([1, 3000, 30_000]), dt=st.sampled_from([0.0, 0.01, 0.3]))
    @timed
    def app_writes_then_time_passes(self, n, dt):
        self.w.send(n)
        self.w.drain()
        self.w.advance(dt)

    @live
    @rule(k=st.integers(0, 3))
    @timed
    def app_shuts_down(self, k):
        if k == 0:  # not too soon: the exchange after it is shorter
            self.w.shutdown()
            self.w.drain()

    @live
    @rule(k=st.integers(0, 3))
    @timed
    def app_closes(self, k):
        if k == 0:  # not too soon: data arriving after it resets the connection
            self.w.close()
            self.w.drain()

    @live
    @rule(k=st.integers(0, 7))
    @timed
    def app_aborts(self, k):
        if k == 0:  # rarely: it ends the connection
            self.w.abort()
            self.w.drain()

    @live
    @rule()
    @timed
    def app_pauses_reading(self):
        self.conn.pause_reading()
        self.w.drain()

    @live
    @rule()
    @timed
    def app_resumes_reading(self):
        self.conn.resume_reading(self.w.now)
        self.w.drain()

    @live
    @rule()
    @timed
    def icmp_unreachable(self):
        self.conn.icmp_unreachable(self.w.now)
        self.w.drain()

    # -- rules: time ---------------------------------------------------------------------

    @live
    @rule(dt=st.sampled_from([0.0005, 0.005, 0.02, 0.1, 0.3, 1.0, 5.0, 30.0, 130.0]))
    @timed
    def time_passes(self, dt):
        self.w.advance(dt)

    @precondition(lambda self: self.conn.get_timer() is not None)
    @rule()
    @timed
    def next_deadline(self):
        self.w.next_timer()

    # -- checks --------------------------------------------------------------------------

    @invariant()
    def invariants_hold(self):
        self.w.check()
        # The wall time of the step just run (rule and checks), as a histogram.
        now = time.perf_counter()
        if self.tick is not None:
            elapsed = now - self.tick
            bucket = next(b for b in (0.001, 0.01, 0.1, 1.0, float("inf")) if elapsed < b)
            STATS[f"step time < {bucket * 1000:g} ms"] += 1
            STATS["slowest step (µs)"] = max(STATS["slowest step (µs)"], int(elapsed * 1e6))
        STATS["steps"] += 1
        c = self.conn
        STATS["state " + c.state.value] += 1
        for name in ("sack_ok", "ts_enabled", "wscale_ok", "_in_recovery", "_reassembly"):
            if getattr(c, name):
                STATS[name.strip("_")] += 1
        self.tick = time.perf_counter()

    def teardown(self):
        """Liveness: the peer falls silent; the connection must reach CLOSED."""
        w = getattr(self, "w", None)
        if w is None:
            return
        c = self.conn
        STATS["examples"] += 1
        if w.closed:
            STATS[f"closed early: {w.close_error!r}"[:60]] += 1
        STATS["bytes written"] += w.written
        STATS["bytes delivered"] += w.delivered
        for name, value in c.stats_counters.items():
            if value:
                STATS["had " + name] += 1
        w.advance(6 * 3600.0)
        pending = c.unsent_bytes or c.snd_una != c.snd_max or c._fin_unsent
        idle_ok = (
            not c.keepalive
            and c.state in (S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_2)
            and not pending
        )
        assert c.state is S.CLOSED or idle_ok, (
            f"{c.state} after 6 h of silence (keepalive {c.keepalive}, snd_wnd {c.snd_wnd}, "
            f"unsent {c.unsent_bytes}, outstanding {seq_diff(c.snd_max, c.snd_una)})"
        )
        w.close()
        w.drain()
        w.advance(6 * 3600.0)
        assert c.state is S.CLOSED, f"{c.state} 6 h after close() with a silent peer"


def fuzz_settings() -> tuple[settings, int]:
    """CI: a fixed seed and a few hundred examples; UDPTCP_FUZZ_EXAMPLES for more.

    Shrinking a failure to a minimal example can take minutes, so it is off unless
    UDPTCP_FUZZ_SHRINK=1: the example reported is longer but reproduces all the same.
    """
    examples = int(os.environ.get("UDPTCP_FUZZ_EXAMPLES", "100"))
    run_seed = int(os.environ.get("UDPTCP_FUZZ_SEED", "0"))
    phases = [Phase.explicit, Phase.reuse, Phase.generate]
    if os.environ.get("UDPTCP_FUZZ_SHRINK") == "1":
        phases.append(Phase.shrink)
    return (
        settings(
            max_examples=examples,
            stateful_step_count=int(os.environ.get("UDPTCP_FUZZ_STEPS", "40")),
            deadline=None,
            database=None,
            phases=phases,
            suppress_health_check=list(HealthCheck),
        ),
        run_seed,
    )


# A long run (UDPTCP_FUZZ_EXAMPLES) may take hours: no per-test timeout then.
@pytest.mark.timeout(0 if "UDPTCP_FUZZ_EXAMPLES" in os.environ else 120)
def test_a_hostile_peer_cannot_crash_hang_or_corrupt_a_connection():
    cfg, run_seed = fuzz_settings()
    print(
        f"hostile-peer fuzz: seed={run_seed} examples={cfg.max_examples} "
        f"steps<={cfg.stateful_step_count}"
    )
    start = time.perf_counter()
    try:
        run_state_machine_as_test(seed(run_seed)(HostilePeer), settings=cfg)
    finally:
        print(f"hostile-peer fuzz: seed={run_seed}, {time.perf_counter() - start:.1f} s")
        for key, value in sorted(STATS.items()):
            print(f"  {key}: {value}")
