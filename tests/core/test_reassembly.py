"""Out-of-order data with many holes: SACK blocks chosen per RFC 2018 §4 / RFC 2883, pieces
that coalesce, the per-piece charge and cap (dropped and counted, never raised), and the
data structures behind them checked against naive models."""

from __future__ import annotations

import bisect
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.segments import seg

from udptcp.core.buffers import DROPPED, PIECE_OVERHEAD, ReassemblyQueue
from udptcp.core.config import Config
from udptcp.core.connection import State
from udptcp.core.events import DataReceived
from udptcp.core.rack import SentLog
from udptcp.core.sack import Scoreboard
from udptcp.core.segment import ACK, FIN, Options, Segment
from udptcp.core.seq import seq_add, seq_diff
from udptcp.core.sortedmap import LOAD, SortedMap
from udptcp.tools.simnet import connected_pair

CFG = Config(delayed_ack=0.0, timestamps=False, keepalive=False, pacing=False)
quick = settings(derandomize=True, max_examples=300, deadline=None)


class Peer:
    """Plays the sending peer of a passive connection, one hand-built segment at a time."""

    def __init__(self, config: Config = CFG) -> None:
        client, self.conn = connected_pair(config)
        self.seq0 = client.snd_nxt  # sequence number of stream offset 0
        self.ack = self.conn.snd_nxt
        self.ts = (self.conn.ts_recent, 0) if self.conn.ts_enabled else None
        self.data = bytearray()

    def seq(self, offset: int) -> int:
        return seq_add(self.seq0, offset)

    def send(self, offset: int, data: bytes, flags: int = ACK) -> Segment:
        """Hand ``data`` at stream ``offset`` to the connection; return its one answer."""
        options = Options(timestamps=self.ts) if self.ts is not None else None
        segment = seg(
            flags,
            seq=self.seq(offset),
            ack=self.ack,
            options=options,
            payload=data,
            src=1000,
            dst=2000,
        )
        self.conn.receive(segment, 0.0)
        for ev in self.conn.take_events():
            if isinstance(ev, DataReceived):
                self.data += ev.data
        (answer,) = self.conn.take_segments()
        return answer

    def block(self, start: int, end: int) -> tuple[int, int]:
        """The SACK block for stream offsets [start, end)."""
        return self.seq(start), self.seq(end)


def _byte(offset: int) -> bytes:
    """The stream's byte at ``offset``."""
    return bytes(((offset * 7 + 3) % 256,))


def _stream(n: int) -> bytes:
    return b"".join(_byte(i) for i in range(n))


# ----------------------------------------------------------------- SACK block choice


def test_with_many_holes_the_first_block_is_the_newest_arrival_then_the_ones_before():
    rng = random.Random(7)
    peer = Peer()
    offsets = [2 * k + 1 for k in range(300)]  # 300 one-byte pieces, a hole before each
    rng.shuffle(offsets)
    for n, off in enumerate(offsets):
        ack = peer.send(off, _byte(off))
        blocks = ack.options.sack_blocks
        # RFC 2018 §4: the block holding the segment that triggered this ACK comes first,
        # then the most recently reported others (here: the latest arrivals' runs).
        assert blocks[0] == peer.block(off, off + 1), f"arrival {n}"
        recent = offsets[max(0, n - 3) : n + 1][::-1]
        assert list(blocks) == [peer.block(o, o + 1) for o in recent], f"arrival {n}"
        assert ack.ack == peer.seq(0)
    assert peer.conn._reassembly.run_count == 300
    assert len(peer.conn._reassembly) == 300


def test_with_timestamps_three_blocks_fit_and_the_newest_is_still_first():
    peer = Peer(CFG.replace(timestamps=True))
    for off in (11, 31, 51, 71, 91):
        ack = peer.send(off, b"x")
    assert ack.options.timestamps is not None
    assert ack.options.sack_blocks == (peer.block(91, 92), peer.block(71, 72), peer.block(51, 52))


def test_runs_already_delivered_are_never_reported_and_the_highest_fill_the_rest():
    peer = Peer()
    stream = _stream(200)
    for off in (101, 103, 105, 1, 3, 5, 7, 9):  # the five latest sit above the first hole
        peer.send(off, stream[off : off + 1])
    ack = peer.send(3, stream[3:4])  # a duplicate: its run is the newest again
    assert ack.options.sack_blocks[:2] == (peer.block(3, 4), peer.block(3, 4))
    ack = peer.send(0, stream[0:9])  # fills [0, 9): delivers 0..9 with the piece at 9
    assert ack.ack == peer.seq(10) and peer.data == stream[:10]
    # Every recent arrival went with the data: the highest runs are reported instead.
    assert ack.options.sack_blocks == (
        peer.block(105, 106),
        peer.block(103, 104),
        peer.block(101, 102),
    )


def test_a_duplicate_of_held_data_is_reported_first_then_the_run_that_holds_it():
    peer = Peer()
    peer.send(10, b"a" * 10)
    peer.send(30, b"b" * 10)
    ack = peer.send(12, b"a" * 2)  # already held
    # RFC 2883 §4: the D-SACK block first; the second is the block holding the duplicate.
    assert ack.options.sack_blocks[:2] == (peer.block(12, 14), peer.block(10, 20))
    assert ack.options.sack_blocks[2:] == (peer.block(30, 40),)
    # The D-SACK block is reported once; the next ACK is ordinary again.
    ack = peer.send(50, b"c")
    assert ack.options.sack_blocks == (peer.block(50, 51), peer.block(10, 20), peer.block(30, 40))


def test_a_duplicate_below_the_cumulative_ack_is_reported_before_the_held_runs():
    peer = Peer()
    peer.send(0, b"q" * 5)
    peer.send(20, b"r" * 5)
    ack = peer.send(0, b"q" * 5)  # an old duplicate
    assert ack.options.sack_blocks == (peer.block(0, 5), peer.block(20, 25))
    assert ack.ack == peer.seq(5)


# ----------------------------------------------------------------- pieces and their charge


def test_early_in_order_data_coalesces_into_one_piece_in_either_arrival_order():
    for order in ("forward", "backward"):
        peer = Peer()
        offsets = [1 + 10 * k for k in range(100)]  # 1000 bytes after a one-byte hole
        if order == "backward":
            offsets.reverse()
        for off in offsets:
            peer.send(off, b"z" * 10)
        q = peer.conn._reassembly
        assert (len(q), q.run_count, q.size) == (1, 1, 1000), order
        assert q.charge == 1000 + PIECE_OVERHEAD, order
        ack = peer.send(0, b"z")
        assert ack.ack == peer.seq(1001) and peer.data == b"z" * 1001, order
        assert (len(q), q.size, q.charge) == (0, 0, 0), order


def test_an_arrival_covering_several_pieces_replaces_them():
    peer = Peer()
    for off in (2, 4, 6):
        peer.send(off, _byte(off))
    q = peer.conn._reassembly
    assert len(q) == 3 and q.charge == 3 * (1 + PIECE_OVERHEAD)
    peer.send(1, _stream(9)[1:9])  # [1, 9) covers all three
    assert (len(q), q.size, q.charge) == (1, 8, 8 + PIECE_OVERHEAD)
    peer.send(0, _byte(0))
    assert peer.data == _stream(9)


def test_the_piece_cap_drops_and_counts_and_the_data_comes_through_when_resent():
    peer = Peer(CFG.replace(max_reassembly_pieces=8))
    for k in range(10):
        ack = peer.send(2 * k + 1, _byte(2 * k + 1))
        assert ack.flags & ACK and ack.ack == peer.seq(0)  # a duplicate ACK either way
    stats = peer.conn.stats()
    assert stats["reassembly_dropped"] == 2 and stats["reassembly_pieces"] == 8
    # What was dropped is not SACKed (the sender must send it again).
    assert peer.block(17, 18) not in ack.options.sack_blocks
    assert peer.block(19, 20) not in ack.options.sack_blocks
    for k in range(10):
        peer.send(2 * k, _byte(2 * k))
        if len(peer.data) == 2 * k + 1:  # the byte after this hole was dropped: resend
            peer.send(2 * k + 1, _byte(2 * k + 1))
    assert peer.data == _stream(20)
    assert len(peer.conn._reassembly) == 0


def test_a_fin_on_a_dropped_segment_is_not_taken():
    peer = Peer(CFG.replace(max_reassembly_pieces=1))
    peer.send(1, b"a")
    peer.send(3, b"b", ACK | FIN)  # no room: dropped with its FIN
    assert peer.conn.stats()["reassembly_dropped"] == 1
    peer.send(0, b"0")
    ack = peer.send(2, b"2")
    assert ack.ack == peer.seq(3)  # nothing beyond: no FIN was recorded
    ack = peer.send(3, b"b", ACK | FIN)
    assert ack.ack == peer.seq(5) and peer.conn.state is State.CLOSE_WAIT


def test_the_charge_against_the_receive_buffer_drops_and_counts():
    buffer = 2000
    peer = Peer(CFG.replace(receive_buffer=buffer))
    for k in range(20):
        peer.send(2 * k + 1, _byte(2 * k + 1))
    q = peer.conn._reassembly
    fit = buffer // (1 + PIECE_OVERHEAD)
    assert len(q) == fit and q.charge == fit * (1 + PIECE_OVERHEAD) <= buffer
    assert peer.conn.stats()["reassembly_dropped"] == 20 - fit
    # Data that joins two held pieces costs only its bytes and frees one piece's charge.
    peer.send(2, _byte(2))
    assert len(q) == fit - 1 and q.size == fit + 1


def _edge_moved(pieces: int) -> tuple[int, Peer, int]:
    """Deliver two full segments after ``pieces`` one-byte pieces were left above them;
    return how far the right edge of the window moved, the peer and the first edge."""
    peer = Peer(CFG.replace(receive_buffer=65535, window_scaling=False))
    edge0 = seq_add(peer.seq(0), 65535)  # what the SYN,ACK offered
    for k in range(pieces):
        ack = peer.send(2905 + 2 * k, b"p")
        assert seq_add(ack.ack, ack.window) == edge0  # never left, and not right either
    for off in (0, 1452):
        ack = peer.send(off, b"d" * 1452)
    return seq_diff(seq_add(ack.ack, ack.window), edge0), peer, edge0


def test_the_window_offered_leaves_room_for_the_pieces_charge_without_moving_left():
    # Nothing held: delivering 2904 bytes moves the right edge 2904 bytes on.
    assert _edge_moved(0)[0] == 2904
    # 100 one-byte pieces are charged 25,700 bytes: the buffer could no longer hold a
    # whole window of pieces, so the edge holds still (RFC 9293 §3.8.6.2.1: it never
    # moves left) until they are delivered.
    moved, peer, edge0 = _edge_moved(100)
    assert moved == 0
    for k in range(100):
        ack = peer.send(2904 + 2 * k, b"f")
    assert ack.ack == peer.seq(3104)
    assert seq_diff(seq_add(ack.ack, ack.window), edge0) == 3104


# ----------------------------------------------------------------- many holes


def test_filling_ten_thousand_holes_delivers_every_byte_in_order():
    seed = 20260
    rng = random.Random(seed)
    peer = Peer(CFG.replace(receive_buffer=16 * 1024 * 1024, max_reassembly_pieces=20_000))
    pieces = [2 * k + 1 for k in range(10_000)]
    holes = [2 * k for k in range(10_000)]
    rng.shuffle(pieces)
    rng.shuffle(holes)
    stream = _stream(20_000)
    for off in pieces:
        peer.send(off, stream[off : off + 1])
    q = peer.conn._reassembly
    assert len(q) == 10_000 and q.run_count == 10_000, f"seed={seed}"
    for off in holes:
        peer.send(off, stream[off : off + 1])
    assert peer.data == stream, f"seed={seed}"
    assert (len(q), q.run_count, q.size, q.charge) == (0, 0, 0, 0)
    assert peer.conn.stats()["reassembly_dropped"] == 0


# ----------------------------------------------------------------- property tests

ops = st.lists(st.tuples(st.sampled_from("apc"), st.integers(0, 120), st.integers(0, 12)))


@quick
@given(ops)
def test_scoreboard_matches_a_set_of_bytes(steps):
    sb = Scoreboard()
    model: set[int] = set()
    floor = 0  # pruned below this
    for op, a, n in steps:
        if op == "p":
            floor = max(floor, a)
            sb.prune(floor)
            model = {x for x in model if x >= floor}
            continue
        start, end = max(a, floor), max(a, floor) + n
        fresh: list[tuple[int, int]] = []
        want = set(range(start, end)) - model
        cap = None if op == "a" else 3
        before = len(sb)
        got = sb.add(start, end, fresh, cap)
        if cap is not None and got == 0 and want and before >= cap:
            # Refused: only a block that would have added a range of its own.
            assert all(e < start or s > end for s, e in sb.ranges())
            continue
        assert got == len(want)
        assert [x for s, e in fresh for x in range(s, e)] == sorted(want)
        model |= want
        assert sb.sacked_bytes() == len(model)
        ranges = sb.ranges()
        assert {x for s, e in ranges for x in range(s, e)} == model
        # Disjoint, non-adjacent, ascending.
        assert all(e1 < s2 for (_, e1), (s2, _) in zip(ranges, ranges[1:]))
        assert all(s < e for s, e in ranges)
    for off in range(0, 140):
        inside = off in model
        assert (sb.find(off) is not None) == inside
        assert sb.skip_sacked(off) == next(x for x in range(off, 300) if x not in model)
        assert sb.covers(off, off + 1) == inside
        nxt = sb.next_sacked(off)
        starts = [s for s, _ in sb.ranges() if s > off]
        assert nxt == (starts[0] if starts else None)
    assert sb.highest(2) == sb.ranges()[::-1][:2]


@quick
@given(
    st.lists(st.tuples(st.integers(1, 150), st.integers(1, 20)), max_size=60),
    st.integers(2, 40),
    st.integers(0, 6000),
)
def test_reassembly_queue_matches_a_map_of_bytes(arrivals, cap, budget):
    q = ReassemblyQueue()
    model: dict[int, int] = {}
    for start, n in arrivals:
        data = bytes((start + i) % 251 for i in range(n))
        new = {start + i for i in range(n)} - model.keys()
        charge, pieces = q.charge, len(q)
        got = q.add(start, data, budget, cap)
        if got == DROPPED:
            assert new and (q.charge, len(q)) == (charge, pieces)
            continue
        assert got == len(new)
        model.update((start + i, data[i]) for i in range(n))
        assert q.size == len(model) and len(q) <= cap
        assert q.charge == q.size + PIECE_OVERHEAD * len(q) and (got == 0 or q.charge <= budget)
        runs = q.runs()
        assert {x for s, e in runs for x in range(s, e)} == model.keys()
    # Delivery from offset 1 hands over exactly the bytes contiguous from there.
    n = 1
    while n in model:
        n += 1
    assert q.pop_from(1) == bytes(model[i] for i in range(1, n))
    rest = {x for x in model if x > n}
    assert q.size == len(rest) and {x for s, e in q.runs() for x in range(s, e)} == rest
    assert q.charge == q.size + PIECE_OVERHEAD * len(q)


@quick
@given(
    st.lists(st.tuples(st.integers(1, 150), st.integers(1, 20)), max_size=60),
    st.integers(0, 180),
    st.integers(0, 4000),
)
def test_truncating_at_a_fin_and_pruning_to_a_budget_match_a_map_of_bytes(arrivals, fin, budget):
    """The peer's FIN cuts the held data at its offset; pruning drops the highest pieces
    first until the charge fits (held in-order data wins over what lies beyond holes)."""
    q = ReassemblyQueue()
    model: dict[int, int] = {}
    for start, n in arrivals:
        data = bytes((start + i) % 251 for i in range(n))
        if q.add(start, data, 1 << 30, 1 << 30) != DROPPED:
            model.update((start + i, data[i]) for i in range(n))
    beyond = sum(1 for x in model if x >= fin)
    assert q.truncate(fin) == beyond
    model = {x: v for x, v in model.items() if x < fin}
    assert q.size == len(model) and {x for s, e in q.runs() for x in range(s, e)} == model.keys()
    assert q.charge == q.size + PIECE_OVERHEAD * len(q)
    pieces_before = len(q)
    dropped = q.prune_to(budget)
    assert q.charge <= budget or len(q) == 0
    kept = {x for s, e in q.runs() for x in range(s, e)}
    assert len(model) - len(kept) == dropped and kept <= model.keys()
    # Only the highest pieces go: whatever is kept lies below whatever was dropped.
    if kept and dropped:
        assert max(kept) < min(model.keys() - kept)
    assert len(q) <= pieces_before and q.charge == q.size + PIECE_OVERHEAD * len(q)
    if 1 in model:
        n = 1
        while n in model and n in kept:
            n += 1
        assert q.pop_from(1) == bytes(model[i] for i in range(1, n))


@quick
@given(st.lists(st.tuples(st.sampled_from("sdpl"), st.integers(0, 2000))))
def test_sorted_map_matches_a_dict(steps):
    m: SortedMap[int] = SortedMap()
    model: dict[int, int] = {}
    for op, key in steps:
        if op == "s":
            m[key] = key * 3
            model[key] = key * 3
        elif op == "d" and key in model:
            del m[key]
            del model[key]
        elif op == "p" and model:
            low = min(model)
            assert m.pop_first() == (low, model.pop(low))
        elif op == "l" and model:
            high = max(model)
            assert m.pop_last() == (high, model.pop(high))
        assert len(m) == len(model)
    assert list(m) == sorted(model.items())
    keys = sorted(model)
    for probe in (-1, 0, 7, 999, 2001, *keys[:50]):
        below = [k for k in keys if k <= probe]
        above = [k for k in keys if k > probe]
        assert m.floor(probe) == ((below[-1], model[below[-1]]) if below else None)
        assert m.higher(probe) == ((above[0], model[above[0]]) if above else None)
    assert m.last(3) == [(k, model[k]) for k in keys[::-1][:3]]


def test_sorted_map_matches_a_dict_across_many_blocks():
    # Thousands of entries, so blocks split, empty and merge; every lookup is checked
    # against a sorted list of the model's keys.
    seed = 5
    rng = random.Random(seed)
    m: SortedMap[int] = SortedMap()
    model: dict[int, int] = {}
    for step in range(30_000):
        key = rng.randrange(20_000)
        if rng.random() < (0.7 if step < 15_000 else 0.2):
            m[key] = -key
            model[key] = -key
        elif model and rng.random() < 0.3:
            low = min(model)
            assert m.pop_first() == (low, model.pop(low)), f"seed={seed} step={step}"
        elif key in model:
            del m[key]
            del model[key]
        if step % 1000 == 999:
            keys = sorted(model)
            assert list(m) == [(k, model[k]) for k in keys], f"seed={seed} step={step}"
            for probe in rng.sample(range(-1, 20_001), 200):
                i = bisect.bisect_right(keys, probe)
                want_floor = (keys[i - 1], model[keys[i - 1]]) if i else None
                want_higher = (keys[i], model[keys[i]]) if i < len(keys) else None
                assert m.floor(probe) == want_floor, f"seed={seed} step={step}"
                assert m.higher(probe) == want_higher, f"seed={seed} step={step}"
            assert m.last(5) == [(k, model[k]) for k in keys[::-1][:5]]
            # Blocks stay proportional to the entries (merges happen).
            assert len(m._keys) <= 1 + 4 * len(m) // LOAD, f"seed={seed} step={step}"
    assert len(m) == len(model) and len(model) < 5000  # the second half mostly deleted


def test_sorted_map_merges_blocks_that_deletions_thin_out():
    m: SortedMap[None] = SortedMap()
    for k in range(5000):
        m[k] = None
    assert len(m._keys) > 30  # split as it grew
    for k in range(5000):
        if k % 64:
            del m[k]
    assert [k for k, _ in m] == list(range(0, 5000, 64))
    assert len(m._keys) <= 1 + 4 * len(m) // LOAD  # thin blocks were merged


# ----------------------------------------------------------------- the sender's side


def test_a_sack_block_repeated_one_byte_longer_marks_the_segment_once_it_is_covered():
    log = SentLog()
    for i in range(50):
        log.record(i * 100, (i + 1) * 100, now=0.0)
    sb = Scoreboard()
    for right in range(1, 5001):
        fresh: list[tuple[int, int]] = []
        if sb.add(0, right, fresh):
            assert fresh == [(right - 1, right)]  # one new byte: one new sub-range
            log.sack(0, right, 0.01, 0.0, fresh)
        # Exactly the segments wholly inside [0, right) are SACKed.
        assert log.sacked_segments() == right // 100


def test_the_sender_refuses_sack_ranges_beyond_twice_its_segments():
    a, b = connected_pair(CFG)
    a.send(b"s" * 1452 * 4, 0.0)
    segs = a.take_segments()
    assert len(segs) == 4
    una = segs[0].seq
    # A receiver that SACKs every other byte of the flight: the scoreboard keeps at most
    # 2 * 4 + 8 ranges, whatever it is told.
    for k in range(40):
        blocks = tuple(
            (seq_add(una, 100 + 2 * j), seq_add(una, 101 + 2 * j)) for j in range(4 * k, 4 * k + 4)
        )
        a.receive(
            seg(
                ACK, seq=b.snd_nxt, ack=una, options=Options(sack_blocks=blocks), src=2000, dst=1000
            ),
            0.0,
        )
        a.take_segments()
    assert len(a._sb) == 2 * 4 + 8


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_a_piece_cap_below_one_is_refused_by_config(bad):
    with pytest.raises(ValueError, match="max_reassembly_pieces"):
        Config(max_reassembly_pieces=bad)


def test_the_default_piece_cap_is_where_a_default_buffer_of_one_byte_pieces_runs_out():
    c = Config()
    assert abs(c.max_reassembly_pieces - c.receive_buffer // (1 + PIECE_OVERHEAD)) < 64
