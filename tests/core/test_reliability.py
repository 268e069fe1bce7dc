"""Retransmission, RTT/RTO, fast retransmit and recovery, reassembly, ACK policy, windows."""

from __future__ import annotations

import errno

import pytest
from support.segments import seg

from udptcp.core.config import Config
from udptcp.core.connection import State
from udptcp.core.events import ConnectionClosed, DataReceived, EofReceived
from udptcp.core.rtt import RttEstimator
from udptcp.core.segment import ACK, FIN, PSH

S = State
ISS, PEER = 100, 300  # data starts at 101; the peer's at 301


def _end(seg):
    return seg.seq + seg.seg_len


def test_rtt_estimator_follows_rfc6298():
    est = RttEstimator(rto_initial=1.0, rto_min=0.2, rto_max=60.0)
    assert est.rto == 1.0
    est.sample(0.5)
    assert est.srtt == 0.5 and est.rttvar == 0.25 and est.rto == pytest.approx(1.5)
    est.sample(0.1)
    # RTTVAR first, with the old SRTT: 0.75*0.25 + 0.25*|0.5-0.1| = 0.2875
    assert est.rttvar == pytest.approx(0.2875)
    assert est.srtt == pytest.approx(0.45)
    assert est.rto == pytest.approx(0.45 + 4 * 0.2875)
    est.back_off()
    est.back_off()
    assert est.rto == pytest.approx(4 * (0.45 + 4 * 0.2875))
    for _ in range(20):
        est.back_off()
    assert est.rto == 60.0
    est.sample(0.001)
    assert est.rto >= 0.2  # floor


def test_lost_segment_is_retransmitted_after_rto_with_backoff(script):
    conn = script.established()
    conn.send(b"a" * 100, script.now)
    first = script.one()
    rto = conn.get_timer() - script.now
    script.advance(rto)
    assert script.one() == first
    second = conn.get_timer() - script.now
    assert second == pytest.approx(2 * rto)
    script.advance(second)
    assert script.one() == first
    assert conn.stats()["timeouts"] == 2


def test_karns_rule_takes_no_sample_from_a_retransmitted_segment(script):
    conn = script.established()
    srtt_before = conn.rtt.srtt
    conn.send(b"a" * 100, script.now)
    script.out()
    script.advance(conn.get_timer() - script.now)
    script.out()
    script.advance(0.05)
    script.peer(PEER + 1, ISS + 101)
    assert conn.rtt.srtt == srtt_before  # ambiguous ACK: no measurement


def test_rtt_sample_from_an_acknowledged_segment(script):
    conn = script.established()
    conn.send(b"a" * 100, script.now)
    script.out()
    script.advance(0.15)  # below the 200 ms RTO floor: no retransmission
    script.peer(PEER + 1, ISS + 101)
    assert conn.rtt.latest == pytest.approx(0.15)


def test_three_duplicate_acks_trigger_fast_retransmit_and_newreno_recovery(script):
    conn = script.established()
    conn.send(b"x" * (1452 * 8), script.now)
    segs = script.out()
    assert len(segs) == 8
    # Segment 2 is lost; segments 3.. produce duplicate ACKs for its start.
    script.peer(PEER + 1, _end(segs[0]))
    for _ in range(2):
        script.peer(PEER + 1, _end(segs[0]))
    assert conn.stats()["fast_retransmits"] == 0
    script.peer(PEER + 1, _end(segs[0]))
    retx = script.out()
    assert retx[0] == segs[1]  # the hole is repaired at once, no RTO wait
    assert conn.stats()["fast_retransmits"] == 1
    ssthresh = conn.cc.ssthresh
    assert ssthresh == max((8 * 1452 - 1452) // 2, 2 * 1452)
    # A partial ACK (segment 4 was lost too) repairs the next hole right away (RFC 6582).
    script.peer(PEER + 1, _end(segs[2]))
    assert script.out()[0] == segs[3]
    # The full ACK ends recovery with cwnd <= ssthresh.
    script.peer(PEER + 1, _end(segs[7]))
    assert conn.cc.cwnd <= ssthresh
    assert conn.snd_una == _end(segs[7])


def test_limited_transmit_sends_new_data_on_the_first_duplicates(script):
    conn = script.established(window=65535)
    conn.cc.cwnd = 2 * 1452
    conn.send(b"y" * (1452 * 6), script.now)
    segs = script.out()
    assert len(segs) == 2
    script.peer(PEER + 1, ISS + 1)  # duplicate 1
    assert len(script.out()) == 1
    script.peer(PEER + 1, ISS + 1)  # duplicate 2
    assert len(script.out()) == 1


def test_user_timeout_fails_the_connection(script):
    script.config = script.config.replace(user_timeout=10.0, rto_max=2.0)
    conn = script.established()
    conn.send(b"z", script.now)
    script.advance(30)
    assert conn.state is S.CLOSED
    closed = [e for e in script.take_events() if isinstance(e, ConnectionClosed)]
    assert len(closed) == 1 and isinstance(closed[0].error, TimeoutError)
    assert closed[0].error.errno == errno.ETIMEDOUT


def test_out_of_order_data_is_reassembled_and_acked_at_once(script):
    conn = script.established()
    base = PEER + 1
    script.peer(base + 10, ISS + 1, payload=b"KLMNOPQRST")
    dup = script.one()
    assert dup.ack == base  # immediate duplicate ACK (RFC 5681 §4.2)
    assert script.take_events() == []
    script.peer(base + 30, ISS + 1, payload=b"4567")
    script.out()
    script.peer(base, ISS + 1, payload=b"ABCDEFGHIJ")
    ack = script.one()
    assert ack.ack == base + 20
    assert script.take_events() == [DataReceived(b"ABCDEFGHIJKLMNOPQRST")]
    script.peer(base + 20, ISS + 1, payload=b"uvwxyz0123")
    assert script.one().ack == base + 34
    assert script.take_events() == [DataReceived(b"uvwxyz01234567")]
    assert conn.stats()["out_of_order_segments"] == 2


def test_duplicate_and_overlapping_data_is_delivered_once(script):
    script.established()
    base = PEER + 1
    script.peer(base, ISS + 1, payload=b"hello")
    script.peer(base, ISS + 1, payload=b"hello")
    script.peer(base + 3, ISS + 1, payload=b"lo world")
    got = b"".join(e.data for e in script.take_events() if isinstance(e, DataReceived))
    assert got == b"hello world"


def test_out_of_order_fin_waits_for_the_gap(script):
    script.established()
    base = PEER + 1
    script.peer(base + 5, ISS + 1, ACK | FIN, payload=b"world")
    assert not any(isinstance(e, EofReceived) for e in script.take_events())
    script.peer(base, ISS + 1, payload=b"hello")
    evs = script.take_events()
    assert evs == [DataReceived(b"helloworld"), EofReceived()]
    assert script.conn.state is S.CLOSE_WAIT


def test_data_beyond_the_window_is_not_accepted(script):
    script.config = script.config.replace(receive_buffer=4000)
    conn = script.established()
    conn.pause_reading()
    script.peer(PEER + 1, ISS + 1, payload=b"a" * 3000)
    assert script.one().window == 1000
    script.peer(PEER + 3001, ISS + 1, payload=b"b" * 2000)
    ack = script.one()
    assert ack.ack == PEER + 1 + 4000 and ack.window == 0  # only 1000 of 2000 fit
    conn.resume_reading(script.now)
    evs = script.take_events()
    assert b"".join(e.data for e in evs) == b"a" * 3000 + b"b" * 1000
    assert script.one().window == 4000  # window update once the reader drained it


def test_delayed_ack_every_second_full_segment_or_after_the_timer():
    from udptcp.core.connection import Connection
    from udptcp.core.segment import SYN

    cfg = Config(delayed_ack=0.04)
    conn = Connection.connect(cfg, local_port=1, remote_port=2, iss=ISS, mss=1452, now=0.0)
    conn.take_segments()
    conn.receive(seg(SYN | ACK, seq=PEER, ack=ISS + 1, mss=1452, src=2, dst=1), 0.0)
    conn.take_segments()
    seq = PEER + 1
    conn.receive(seg(ACK, seq=seq, ack=ISS + 1, payload=b"a" * 1452, src=2, dst=1), 0.0)
    assert conn.take_segments() == []  # held back
    assert conn.get_timer() == pytest.approx(0.04)
    conn.receive(seg(ACK, seq=seq + 1452, ack=ISS + 1, payload=b"b" * 1452, src=2, dst=1), 0.01)
    (ack,) = conn.take_segments()  # second full segment: ACK now
    assert ack.ack == seq + 2904
    conn.receive(seg(ACK, seq=seq + 2904, ack=ISS + 1, payload=b"c" * 10, src=2, dst=1), 0.02)
    assert conn.take_segments() == []
    conn.handle_timer(0.06)
    (late,) = conn.take_segments()
    assert late.ack == seq + 2914


def test_sender_never_exceeds_the_advertised_window(script):
    conn = script.established(window=5000)
    conn.send(b"w" * 20000, script.now)
    segs = script.out()
    assert sum(len(s.payload) for s in segs) <= 5000
    end = _end(segs[-1])
    script.peer(PEER + 1, end, window=5000)
    segs = script.out()
    assert _end(segs[-1]) - end <= 5000


def test_zero_window_is_probed_by_the_persist_timer_and_reopens(script):
    conn = script.established(window=2904)
    conn.send(b"p" * 10000, script.now)
    segs = script.out()
    script.peer(PEER + 1, _end(segs[-1]), window=0)  # all acknowledged, window shut
    assert script.out() == []
    probes = []
    for _ in range(3):
        script.advance(conn.get_timer() - script.now)
        (probe,) = script.out()
        probes.append((script.now, probe))
        assert probe.seq == _end(segs[-1]) - 1 and probe.payload == b""
        script.peer(PEER + 1, _end(segs[-1]), window=0)  # still shut
    gaps = [b[0] - a[0] for a, b in zip(probes, probes[1:])]
    assert gaps[1] > gaps[0]  # the persist interval backs off
    assert conn.state is S.ESTABLISHED  # probing never times the connection out
    script.peer(PEER + 1, _end(segs[-1]), window=65535)  # the probe's answer reopens it
    assert len(script.out()) > 0


@pytest.mark.parametrize("nagle", [False, True])
def test_nagle_holds_small_segments_only_when_enabled(nagle):
    from udptcp.core.connection import Connection
    from udptcp.core.segment import SYN

    cfg = Config(nagle=nagle, delayed_ack=0.0)
    conn = Connection.connect(cfg, local_port=1, remote_port=2, iss=ISS, mss=1452, now=0.0)
    conn.take_segments()
    conn.receive(seg(SYN | ACK, seq=PEER, ack=ISS + 1, mss=1452, src=2, dst=1), 0.0)
    conn.take_segments()
    conn.send(b"a", 0.0)
    conn.send(b"b", 0.0)
    conn.send(b"c", 0.0)
    sent = conn.take_segments()
    if nagle:
        assert [s.payload for s in sent] == [b"a"]
        conn.receive(seg(ACK, seq=PEER + 1, ack=ISS + 2, src=2, dst=1), 0.01)
        assert [s.payload for s in conn.take_segments()] == [b"bc"]
    else:
        assert [s.payload for s in sent] == [b"a", b"b", b"c"]
        assert all(s.flags == ACK | PSH for s in sent)


def test_send_with_more_holds_only_a_short_last_segment_while_data_is_in_flight(script):
    conn = script.established()
    mss = conn.mss
    # Nothing in flight: a short write goes out at once, more=True or not.
    conn.send(b"r", script.now, more=True)
    assert [s.payload for s in script.out()] == [b"r"] and not conn.tail_held
    # With that in flight, a write of a segment and a bit: the segment goes, the bit waits
    # for the next write.
    conn.send(b"a" * (mss + 100), script.now, more=True)
    assert [len(s.payload) for s in script.out()] == [mss] and conn.tail_held
    assert conn.unsent_bytes == 100
    conn.send(b"b" * (mss - 100), script.now, more=True)
    sent = script.out()
    assert [len(s.payload) for s in sent] == [mss] and sent[0].payload == b"a" * 100 + b"b" * (
        mss - 100
    )
    assert not conn.tail_held and conn.unsent_bytes == 0  # that write left no short tail
    conn.send(b"c" * (mss + 7), script.now, more=True)
    assert [len(s.payload) for s in script.out()] == [mss] and conn.tail_held
    # push() (the driver calls it on its next turn) sends the held bit.
    conn.push(script.now)
    last = script.out()
    assert [len(s.payload) for s in last] == [7] and last[0].flags & PSH
    assert not conn.tail_held


def test_send_with_more_holds_nothing_of_a_write_made_with_nothing_in_flight(script):
    # A response of a few segments to a request: nothing of ours is in flight, so the
    # whole write goes at once, its short last segment too. Held until the driver's next
    # turn, it would reach the peer in a second read of its own, after the rest was
    # handled (a 4000-byte echo ping-pong took a third more CPU per round trip).
    conn = script.established()
    mss = conn.mss
    conn.send(b"a" * (2 * mss + 100), script.now, more=True)
    assert [len(s.payload) for s in script.out()] == [mss, mss, 100]
    assert not conn.tail_held and conn.unsent_bytes == 0


def test_a_held_short_segment_goes_with_the_fin_and_without_more_is_never_held(script):
    conn = script.established()
    mss = conn.mss
    conn.send(b"w", script.now)
    assert [s.payload for s in script.out()] == [b"w"]  # in flight
    conn.send(b"x" * (mss + 5), script.now, more=True)
    assert conn.tail_held
    conn.close(script.now)
    data, fin = script.out()
    assert len(data.payload) == mss and fin.payload == b"x" * 5 and fin.flags & FIN
    other = script.established(iss=ISS + 50_000)
    other.send(b"y" * (mss + 5), script.now)
    assert [len(s.payload) for s in script.out()] == [mss, 5] and not other.tail_held


def test_unsent_bytes_counts_what_the_window_holds_back(script):
    conn = script.established(window=3000)
    conn.send(b"u" * 10000, script.now)
    sent = sum(len(s.payload) for s in script.out())
    assert conn.unsent_bytes == 10000 - sent


def test_fin_takes_the_sequence_number_just_past_the_data(script):
    conn = script.established()
    conn.send(b"more", script.now)
    conn.close(script.now)
    data, fin = script.out()
    assert data.payload == b"more" and not data.flags & FIN
    assert fin.flags == ACK | FIN and fin.seq == ISS + 1 + 4 and fin.payload == b""


def test_fin_rides_on_data_held_back_by_the_window(script):
    conn = script.established(window=1000)
    conn.send(b"h" * 1500, script.now)
    conn.close(script.now)
    (first,) = script.out()
    assert len(first.payload) == 1000 and not first.flags & FIN
    script.peer(PEER + 1, _end(first), window=1000)
    (last,) = script.out()
    assert len(last.payload) == 500 and last.flags & FIN


def test_a_window_too_small_to_use_is_filled_after_the_sws_override_timeout(script):
    conn = script.established(window=65535)
    conn.send(b"s" * 70000, script.now)
    segs = script.out()
    end = _end(segs[-1])
    # The receiver acknowledges everything but has only 500 bytes of room left.
    script.peer(PEER + 1, end, window=500)
    assert script.out() == []  # silly window avoidance holds the small segment back
    script.advance(conn.get_timer() - script.now)
    (seg,) = script.out()
    assert len(seg.payload) == 500 and seg.seq == end


def test_two_rewound_senders_do_not_trade_acks_forever():
    """Both sides time out and rewind SND.NXT; their pure ACKs must still be acceptable."""
    from udptcp.core.connection import Connection

    cfg = Config(delayed_ack=0.0, keepalive=False, pacing=False)
    a = Connection.connect(cfg, local_port=1000, remote_port=2000, iss=100, mss=1452, now=0.0)
    b = Connection.accept(cfg, a.take_segments()[0], iss=900_000, mss=1452, now=0.0)
    for s in b.take_segments():
        a.receive(s, 0.0)
    for s in a.take_segments():
        b.receive(s, 0.0)
    a.send(b"a" * 4356, 0.0)
    b.send(b"b" * 4356, 0.0)
    to_b, to_a = a.take_segments(), b.take_segments()
    for s in to_b:
        b.receive(s, 0.0)
    for s in to_a:
        a.receive(s, 0.0)
    a.take_segments()  # every ACK of that data is lost
    b.take_segments()
    a.handle_timer(1.5)  # both time out and go back to SND.UNA
    b.handle_timer(1.5)
    exchanges = 0
    while exchanges < 1000:
        sa, sb = a.take_segments(), b.take_segments()
        if not sa and not sb:
            break
        exchanges += 1
        for s in sa:
            b.receive(s, 1.5)
        for s in sb:
            a.receive(s, 1.5)
    assert exchanges < 10  # quiet within a few exchanges
    assert a.snd_una == a.snd_max and b.snd_una == b.snd_max
    assert a.get_timer() is None and b.get_timer() is None
