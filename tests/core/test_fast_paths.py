"""The bulk-data fast paths and receive trains.

Header prediction (``Connection._predicted``) and sending runs of new segments
(``Connection._transmit`` with a count, with the window field and options a run shares) must change
nothing but speed: a differential test plays the same lossy, reordering exchange with them
and with the general path and compares every byte sent and every event. ``receive_many``
changes what it is meant to: one ACK per train for in-order data, one ``DataReceived``.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.child import python_json

import udptcp.core
from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.events import DataReceived, EofReceived, Event
from udptcp.core.segment import ACK, FIN, Segment, encode
from udptcp.tools.simnet import connected_pair

SEEDS = range(6)

# These tests replace Connection methods on the class to force the general path. A
# mypyc-compiled Connection accepts the assignment but its own calls between methods are
# native and never see it, so there the comparison would prove nothing. What they prove is a
# property of the source (the fast paths equal the general path), checked where the source
# runs: the UDPTCP_PURE=1 run, which CI makes over tests/core. That the compiled engine
# sends what the source sends is checked by `python -m benchmarks.core_micro --digest`.
replaces_methods = pytest.mark.skipif(
    udptcp.core.COMPILED,
    reason="replaces Connection methods, which a compiled Connection's native calls ignore; "
    "the UDPTCP_PURE=1 run checks the source's fast paths",
)


def _general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn the fast paths off: every segment goes through the general code."""
    monkeypatch.setattr(Connection, "_predicted", lambda self, seg, now: False)

    transmit = Connection._transmit

    def one_by_one(
        self: Connection, flags: int, seq: int, off: int, size: int, now: float, count: int = 1
    ) -> None:
        for i in range(count):
            transmit(self, flags, self.snd_nxt, off + i * size, size, now)

    monkeypatch.setattr(Connection, "_transmit", one_by_one)
    original = Connection._segment

    def fresh_segment(self: Connection, flags: int, seq: int, payload: bytes = b"") -> Segment:
        self._burst = None  # computed anew for every segment
        seg = original(self, flags, seq, payload)
        self._burst = None
        return seg

    monkeypatch.setattr(Connection, "_segment", fresh_segment)


def _exchange(seed: int, config: Config, trains: bool) -> tuple[list[bytes], list[Event]]:
    """Move 300 KB from a to b and 150 KB back over a scripted link that drops, duplicates,
    reorders and batches segments by a seeded plan; return every datagram both sent and
    b's events."""
    rng = random.Random(seed)
    a, b = connected_pair(config)
    now = 0.0
    wire: list[bytes] = []
    events: list[Event] = []
    a.send(bytes(rng.getrandbits(8) for _ in range(3000)) * 100, now)
    b.send(b"r" * 150_000, now)
    a.shutdown(now)
    in_flight: list[tuple[Connection, Segment]] = []
    for _step in range(4000):
        for src, dst in ((a, b), (b, a)):
            for seg in src.take_segments():
                wire.append(encode(seg))
                fate = rng.random()
                if fate < 0.03:
                    continue  # lost
                in_flight.append((dst, seg))
                if fate > 0.97:
                    in_flight.append((dst, seg))  # duplicated: D-SACK reports follow
        new_events = b.take_events()
        events.extend(new_events)
        if any(isinstance(ev, EofReceived) for ev in new_events):
            b.shutdown(now)  # the passive close: b's FIN follows its data
            continue
        a.take_events()
        if not in_flight:
            if a.state in (State.TIME_WAIT, State.CLOSED) and b.state is State.CLOSED:
                break
            deadline = min(t for t in (a.get_timer(), b.get_timer()) if t is not None)
            now = max(now, deadline)
            for conn in (a, b):
                timer = conn.get_timer()
                if timer is not None and timer <= now:
                    conn.handle_timer(now)
            continue
        now += 0.001
        if rng.random() < 0.1 and len(in_flight) > 1:
            i = rng.randrange(len(in_flight) - 1)  # two swap places
            in_flight[i], in_flight[i + 1] = in_flight[i + 1], in_flight[i]
        take = rng.randint(1, 40)
        batch, in_flight = in_flight[:take], in_flight[take:]
        for dst in (a, b):
            mine = [seg for conn, seg in batch if conn is dst]
            if not mine:
                continue
            if trains:
                dst.receive_many(mine, now)
            else:
                for seg in mine:
                    dst.receive(seg, now)
    assert b.state is State.CLOSED, (seed, a.state, b.state)
    return wire, events


@pytest.mark.parametrize("trains", [False, True], ids=["one-by-one", "trains"])
@pytest.mark.parametrize("seed", SEEDS)
@replaces_methods
def test_fast_paths_send_exactly_what_the_general_path_sends(
    monkeypatch: pytest.MonkeyPatch, seed: int, trains: bool
) -> None:
    config = Config(keepalive=False)
    fast = _exchange(seed, config, trains)
    with monkeypatch.context() as m:
        _general_path(m)
        general = _exchange(seed, config, trains)
    assert len(fast[0]) == len(general[0]), f"seed {seed}"
    for i, (x, y) in enumerate(zip(fast[0], general[0])):
        assert x == y, f"seed {seed}: datagram {i} differs"
    assert fast[1] == general[1], f"seed {seed}"
    received = b"".join(ev.data for ev in fast[1] if isinstance(ev, DataReceived))
    assert len(received) == 300_000 and EofReceived() in fast[1]


@replaces_methods
def test_the_fast_paths_are_taken_in_a_bulk_transfer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"predicted": 0, "runs": 0}
    predicted, transmit = Connection._predicted, Connection._transmit

    def counting_predicted(self: Connection, seg: Segment, now: float) -> bool:
        taken = predicted(self, seg, now)
        calls["predicted"] += taken
        return taken

    def counting_runs(
        self: Connection, flags: int, seq: int, off: int, size: int, now: float, count: int = 1
    ) -> None:
        calls["runs"] += count > 1
        transmit(self, flags, seq, off, size, now, count)

    monkeypatch.setattr(Connection, "_predicted", counting_predicted)
    monkeypatch.setattr(Connection, "_transmit", counting_runs)
    _exchange(0, Config(keepalive=False), trains=True)
    assert calls["predicted"] > 50 and calls["runs"] > 5


_SOURCES_RUN = """
import json, os, sys
sys.path[:0] = [sys.argv[1], os.path.dirname(sys.argv[1])]  # the test and tests/support
import udptcp.core
import test_fast_paths as t
assert not udptcp.core.COMPILED, "UDPTCP_PURE=1 did not load the sources"
print(json.dumps({f"{seed}-{trains}": t._digest(*t._exchange(seed, t.Config(keepalive=False), trains))
                  for seed in t.SEEDS for trains in (False, True)}))
"""


def _digest(wire: list[bytes], events: list[Event]) -> str:
    """One hash of every datagram, in order, and every event."""
    h = hashlib.sha256()
    for datagram in wire:
        h.update(len(datagram).to_bytes(4, "big") + datagram)
    h.update(repr(events).encode())
    return f"{len(wire)}:{len(events)}:{h.hexdigest()}"


@functools.cache
def _sources_digests() -> dict[str, str]:
    """The exchanges below played by the Python sources (UDPTCP_PURE=1, another process)."""
    result: dict[str, str] = python_json(_SOURCES_RUN, str(Path(__file__).parent), pure="1")
    return result


@pytest.mark.parametrize("trains", [False, True], ids=["one-by-one", "trains"])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.skipif(not udptcp.core.COMPILED, reason="needs the mypyc-compiled engine running")
def test_the_compiled_engine_sends_and_reports_what_its_sources_do(seed: int, trains: bool) -> None:
    """The compiled twin against the sources over the same lossy, reordering exchange:
    every datagram byte for byte and every event (the sources' fast paths are checked
    against their general path above, in the UDPTCP_PURE=1 run)."""
    compiled = _digest(*_exchange(seed, Config(keepalive=False), trains))
    assert compiled == _sources_digests()[f"{seed}-{trains}"], f"seed {seed}"


def _data(a: Connection, n: int, now: float = 0.0) -> list[Segment]:
    a.send(b"x" * n, now)
    return a.take_segments()


def _acks(segments: Iterator[Segment] | list[Segment]) -> list[Segment]:
    return [s for s in segments if not s.payload and s.flags & ACK]


def test_a_train_of_in_order_data_is_acknowledged_once_and_delivered_as_one_event() -> None:
    a, b = connected_pair(Config(keepalive=False))
    segs = _data(a, 20 * 1400)
    assert len(segs) >= 10  # the initial window
    b.receive_many(segs, 0.001)
    acks = _acks(b.take_segments())
    assert len(acks) == 1 and acks[0].ack == a.snd_max
    events = b.take_events()
    assert events == [DataReceived(b"".join(seg.payload for seg in segs))]


def test_large_segments_of_a_train_are_delivered_one_event_each_without_a_join() -> None:
    # 20 KB segments (path MTU probing finds up to 64 KB): joining them would copy every
    # byte again, so each is its own event, the very payload object, still acknowledged once.
    config = Config(keepalive=False, receive_buffer=1 << 20)
    a, b = connected_pair(config, mss=20_000)
    segs = _data(a, 60_000)  # three full segments (the MSS less timestamps) and a bit
    assert len(segs) == 4 and all(len(seg.payload) > 16_384 for seg in segs[:3])
    b.receive_many(segs, 0.001)
    assert len(_acks(b.take_segments())) == 1
    events = b.take_events()
    assert events == [DataReceived(seg.payload) for seg in segs]
    assert all(ev.data is seg.payload for ev, seg in zip(events[:3], segs[:3], strict=True))


def test_one_by_one_the_same_data_is_acknowledged_every_second_segment() -> None:
    a, b = connected_pair(Config(keepalive=False))
    segs = _data(a, 20 * 1400)
    for seg in segs:
        b.receive(seg, 0.001)
    assert len(_acks(b.take_segments())) >= len(segs) // 2


def test_out_of_order_segments_in_a_train_still_get_an_ack_each() -> None:
    a, b = connected_pair(Config(keepalive=False))
    segs = _data(a, 8 * 1400)
    train = segs[1:]  # the first one is lost: every other one is out of order
    b.receive_many(train, 0.001)
    acks = _acks(b.take_segments())
    assert len(acks) == len(train)  # RFC 5681 §4.2: a duplicate ACK for each
    assert all(ack.ack == segs[0].seq for ack in acks)
    assert b.take_events() == []
    b.receive_many(segs[:1], 0.002)  # the gap fills: everything is delivered at once
    assert b.take_events() == [DataReceived(b"x" * 8 * 1400)]


def test_data_then_fin_in_one_train_keep_their_order() -> None:
    a, b = connected_pair(Config(keepalive=False))
    a.send(b"y" * 5000, 0.0)
    a.shutdown(0.0)
    segs = a.take_segments()
    assert segs[-1].flags & FIN
    b.receive_many(segs, 0.001)
    assert b.take_events() == [DataReceived(b"y" * 5000), EofReceived()]
    assert b.state is State.CLOSE_WAIT


def test_a_train_stops_at_the_segment_that_closes_the_connection() -> None:
    a, b = connected_pair(Config(keepalive=False))
    segs = _data(a, 3 * 1400)
    a.abort(0.0)
    rst = a.take_segments()
    taken = b.receive_many(segs + rst + segs[:1], 0.001)
    assert taken == len(segs) + 1 and b.state is State.CLOSED


def test_a_dsack_block_is_reported_by_the_first_segment_of_a_run_only() -> None:
    a, b = connected_pair(Config(keepalive=False))
    # A duplicate that arrived with the data that opened the window (a re-segmented
    # retransmission overlapping what we had) leaves a D-SACK block owed as a run starts.
    dup = (b.snd_una - 500, b.snd_una)
    a._dsack = dup
    segs = _data(a, 5 * 1400)
    assert len(segs) == 5
    assert segs[0].options is not None and segs[0].options.sack_blocks == (dup,)
    assert all(seg.options is None or not seg.options.sack_blocks for seg in segs[1:])


def test_a_train_pauses_after_an_event_other_than_data() -> None:
    a, b = connected_pair(Config(keepalive=False))
    a.send(b"y" * 100, 0.0)
    a.close(0.0)  # FIN after the data
    a.abort(0.0)  # then RST: it must wait until the application has seen the EOF
    segs = a.take_segments()
    assert segs[-1].flags & 0x04 and segs[-2].flags & FIN
    taken = b.receive_many(segs, 0.001)
    assert taken == len(segs) - 1 and b.state is State.CLOSE_WAIT
    assert b.take_events() == [DataReceived(b"y" * 100), EofReceived()]


def test_tsval_never_goes_backwards_when_a_timer_ran_early() -> None:
    # An event loop may run a timer up to a millisecond early and the endpoint then passes
    # the deadline itself; the next segment comes with the (earlier) loop time. A TSval
    # below the one just sent would make the peer drop the whole next flight (PAWS).
    a, b = connected_pair(Config(keepalive=False))
    t = 0.020
    a.send(b"x" * 20_000, t)
    for seg in a.take_segments():
        b.receive(seg, t)
    acks = b.take_segments()
    late = a.get_timer()
    assert late is not None
    a.handle_timer(late)  # a tail loss probe, at its deadline
    sent = a.take_segments()
    for ack in acks:
        a.receive(ack, late - 0.001)
    sent += a.take_segments()
    stamps = [seg.options.timestamps[0] for seg in sent if seg.options and seg.options.timestamps]
    assert len(stamps) >= 2 and stamps == sorted(stamps)
    for seg in sent:
        b.receive(seg, late)
    assert b.stats_counters["paws_rejected"] == 0


def _largest_window_offered(clamp: int | None) -> int:
    """Move 8 MB from a to b, a window per 10 ms round, and return the largest receive
    window b offered (b reads everything at once, so auto-tuning grows it)."""
    a, b = connected_pair(Config(keepalive=False, receive_buffer=1 << 20))
    if clamp is not None:
        b.set_window_clamp(clamp)
    largest, now = 0, 0.0
    while a.stats()["bytes_acked"] < 8_000_000:
        now += 0.01
        if a.unsent_bytes < 1 << 20:
            a.send(bytes(1 << 20), now)
        b.receive_many(a.take_segments(), now)
        b.take_events()
        largest = max(largest, b.stats()["rcv_wnd"])
        for seg in b.take_segments():
            a.receive(seg, now)
    return largest


def test_the_window_clamp_bounds_receive_window_auto_tuning() -> None:
    assert _largest_window_offered(None) > 500_000  # it grows towards receive_buffer
    assert 65_536 < _largest_window_offered(200_000) <= 200_000
    assert _largest_window_offered(1000) <= 65_536  # never below 64 KiB (MIN_WINDOW_CLAMP)


def test_a_window_clamp_set_late_never_moves_the_offered_right_edge_left() -> None:
    # RFC 9293 §3.8.6.2.1: a receiver must not shrink the window. A clamp below the window
    # already offered (with window scaling, RFC 7323) stops it growing; the edge stays.
    a, b = connected_pair(Config(keepalive=False, receive_buffer=1 << 20))
    assert b.rcv_wscale > 0
    now, edges = 0.0, []
    for round_ in range(60):
        now += 0.01
        if round_ == 30:
            assert b.stats()["rcv_wnd"] > 200_000  # auto-tuning grew it
            b.set_window_clamp(65_536)
            b.send(b"x", now)  # a segment at once, its window offered before new data came
        if a.unsent_bytes < 1 << 20:
            a.send(bytes(1 << 20), now)
        b.receive_many(a.take_segments(), now)
        b.take_events()
        for seg in b.take_segments():
            edges.append((seg.ack + (seg.window << b.rcv_wscale)) & 0xFFFFFFFF)
            a.receive(seg, now)
    # (sequence space: later - earlier modulo 2**32 is below 2**31)
    assert all((later - earlier) & 0xFFFFFFFF < 1 << 31 for earlier, later in zip(edges, edges[1:]))
    assert b.stats()["rcv_wnd"] <= 65_536 + (1 << b.rcv_wscale)  # it came down as data did
