"""Opening a connection: the seed's three-way handshake, field by field, and its failures."""

from __future__ import annotations

import errno

import pytest
from support.segments import seg

from udptcp.core.connection import FOREIGN_SYN_ROUNDS, State, rst_for
from udptcp.core.events import Connected, ConnectionClosed
from udptcp.core.segment import ACK, FIN, RST, SYN, Options
from udptcp.core.seq import seq_add
from udptcp.tools.simnet import Link, SimNet

S = State


def test_active_open_sends_syn_seq_x_and_acks_y_plus_1(script):
    # Seed, first handshake: SYN=1, seq=x.
    conn = script.active(iss=1000)
    syn = script.one()
    assert syn.flags == SYN
    assert syn.seq == 1000
    assert syn.options is not None and syn.options.mss == script.MSS
    assert conn.state is S.SYN_SENT
    # Second: SYN=1, ACK=1, ack=x+1, seq=y.  Third: ACK=1, ack=y+1 (seq=x+1).
    script.feed(seg(SYN | ACK, seq=5000, ack=1001, mss=1200))
    ack = script.one()
    assert ack.flags == ACK
    assert (ack.seq, ack.ack) == (1001, 5001)
    assert conn.state is S.ESTABLISHED
    assert script.take_events() == [Connected()]
    assert conn.peer_mss == 1200


def test_passive_open_answers_syn_ack_with_ack_x_plus_1(script):
    conn = script.passive(peer_iss=7000, iss=300)
    synack = script.one()
    assert synack.flags == SYN | ACK
    assert (synack.seq, synack.ack) == (300, 7001)
    assert conn.state is S.SYN_RECEIVED
    assert script.take_events() == []  # not established until the third segment
    script.peer(7001, 301)
    assert conn.state is S.ESTABLISHED
    assert script.take_events() == [Connected()]
    assert conn.state_history == [S.LISTEN, S.SYN_RECEIVED, S.ESTABLISHED]


def test_seed_handshake_on_the_wire_between_two_connections():
    net = SimNet(seed=3)
    a, b = net.host("a"), net.host("b", listening=True)
    net.connect_hosts(a, b, Link(delay=0.01), Link(delay=0.01))
    client = a.connect(b, 80, iss=4242)
    net.run_until(lambda: client.state is S.ESTABLISHED and bool(b.accepted))
    net.run_for(0.05)
    server = b.accepted[0]
    wire = [(e.sender, e.segment) for e in net.trace]
    assert len(wire) == 3
    (s1, syn), (s2, synack), (s3, ack) = wire
    x, y = syn.seq, synack.seq
    assert (s1, syn.flag_names(), x) == ("a", "SYN", 4242)
    assert (s2, synack.has(SYN), synack.has(ACK), synack.ack) == ("b", True, True, x + 1)
    assert (s3, ack.flags, ack.seq, ack.ack) == ("a", ACK, x + 1, y + 1)
    assert server.state is S.ESTABLISHED
    assert server.irs == x and client.irs == y


def test_syn_is_retransmitted_with_backoff_then_times_out(script):
    script.config = script.config.replace(syn_retries=3, rto_initial=1.0)
    script.active(iss=10)
    times = []
    first = script.one()
    for _ in range(3):
        deadline = script.conn.get_timer()
        script.advance(deadline - script.now)
        again = script.one()
        assert again == first  # same ISN each time
        times.append(script.now)
    assert times == [1.0, 3.0, 7.0]  # RFC 6298 §5.5: the timeout doubles
    script.advance(script.conn.get_timer() - script.now)
    assert script.conn.state is S.CLOSED
    (closed,) = script.take_events()
    assert isinstance(closed.error, TimeoutError)
    assert closed.error.errno == errno.ETIMEDOUT  # as kernel TCP's connect()
    assert "no answer to 4 SYNs" in closed.error.strerror


def test_rst_answering_syn_refuses_the_connection(script):
    script.active(iss=10)
    script.out()
    script.feed(seg(RST | ACK, seq=0, ack=11, window=0))
    assert script.conn.state is S.CLOSED
    (closed,) = script.take_events()
    assert isinstance(closed.error, ConnectionRefusedError)
    assert closed.error.errno == errno.ECONNREFUSED


def test_our_own_syn_echoed_back_refuses_the_connection(script):
    # A UDP echo service returns the SYN as sent; with equal virtual ports it reaches the
    # connection, and would pass for a simultaneous open with itself.
    conn = script.active(iss=10)
    syn = script.one()
    script.feed(syn)
    assert conn.state is S.CLOSED
    assert script.out() == []  # no SYN,ACK (or RST) for the echo to return again
    (closed,) = script.take_events()
    assert isinstance(closed.error, ConnectionRefusedError)
    assert closed.error.errno == errno.ECONNREFUSED
    assert "echoes datagrams" in closed.error.strerror


def test_a_peer_syn_with_another_isn_is_still_a_simultaneous_open(script):
    conn = script.active(iss=10)
    syn = script.one()
    script.feed(seg(SYN, seq=11, options=syn.options, src=syn.src_port, dst=syn.dst_port))
    assert conn.state is S.SYN_RECEIVED


def test_datagrams_that_are_not_segments_answering_two_syns_refuse_the_connect(script):
    conn = script.active(iss=10)
    script.one()
    for _ in range(3):  # however many answer one SYN, they count once
        conn.foreign_datagram(script.now)
    assert conn.state is S.SYN_SENT
    for _ in range(FOREIGN_SYN_ROUNDS - 1):
        script.advance(conn.get_timer() - script.now)
        assert script.one().flags == SYN  # the retransmission
        conn.foreign_datagram(script.now)
    assert conn.state is S.CLOSED
    assert script.now == script.config.rto_initial  # not the whole SYN timeout
    (closed,) = script.take_events()
    assert isinstance(closed.error, ConnectionRefusedError)
    assert closed.error.errno == errno.ECONNREFUSED
    assert "not udptcp segments" in closed.error.strerror


def test_one_corrupted_answer_does_not_fail_a_good_connect(script):
    conn = script.active(iss=10)
    script.one()
    conn.foreign_datagram(script.now)  # the SYN,ACK, corrupted on the way
    script.advance(conn.get_timer() - script.now)
    script.one()
    script.feed(seg(SYN | ACK, seq=5000, ack=11, mss=1200))
    assert conn.state is S.ESTABLISHED
    for _ in range(FOREIGN_SYN_ROUNDS + 1):
        conn.foreign_datagram(script.now)  # once established: not counted
    assert conn.state is S.ESTABLISHED


def test_rst_with_wrong_ack_in_syn_sent_is_ignored(script):
    script.active(iss=10)
    script.out()
    script.feed(seg(RST | ACK, seq=0, ack=999, window=0))
    assert script.conn.state is S.SYN_SENT
    assert script.take_events() == []


def test_syn_sent_answers_unacceptable_ack_with_rst_seq_ack(script):
    script.active(iss=10)
    script.out()
    script.feed(seg(SYN | ACK, seq=555, ack=77, window=1000))
    rst = script.one()
    assert (rst.flags, rst.seq) == (RST, 77)
    assert script.conn.state is S.SYN_SENT


def test_lost_syn_ack_is_sent_again_on_a_repeated_syn(script):
    script.passive(peer_iss=50, iss=900)
    first = script.one()
    script.advance(0.6)  # a peer's SYN retransmission comes after its RTO, not at once
    script.feed(seg(SYN, seq=50, mss=1452))
    assert script.one() == first
    assert script.conn.state is S.SYN_RECEIVED


def test_syn_ack_is_retransmitted_then_the_half_open_connection_dropped(script):
    script.config = script.config.replace(synack_retries=2)
    script.passive()
    script.out()
    script.advance(10)
    sent = script.out()
    assert len(sent) == 2 and all(s.flags == SYN | ACK for s in sent)
    assert script.conn.state is S.CLOSED


def test_bad_ack_in_syn_received_gets_rst(script):
    script.passive(peer_iss=50, iss=900)
    script.out()
    script.peer(51, 12345)
    rst = script.one()
    assert (rst.flags, rst.seq) == (RST, 12345)
    assert script.conn.state is S.SYN_RECEIVED


def test_peer_without_mss_option_gets_536_byte_segments(script):
    conn = script.active(iss=1)
    script.out()
    script.feed(seg(SYN | ACK, seq=9, ack=2))
    script.out()
    conn.send(b"x" * 2000, script.now)
    sizes = [len(s.payload) for s in script.out()]
    assert sizes == [536, 536, 536, 392]


def test_options_we_do_not_implement_are_not_answered(script):
    offered = Options(mss=1400, wscale=7, sack_permitted=True, timestamps=(1, 0))
    syn = seg(SYN, seq=10, options=offered)
    from udptcp.core.connection import Connection

    conn = Connection.accept(script.config, syn, iss=5, mss=1452, now=0.0)
    (synack,) = conn.take_segments()
    assert synack.options == Options(mss=1452)
    conn.receive(seg(ACK, seq=11, ack=6), 0.0)
    conn.send(b"y" * 3000, 0.0)
    assert [len(s.payload) for s in conn.take_segments()] == [1400, 1400, 200]


def test_simultaneous_open_goes_through_syn_received_on_both_sides():
    net = SimNet(seed=5)
    a, b = net.host("a"), net.host("b")  # neither listens: both actively open
    net.connect_hosts(a, b, Link(delay=0.02), Link(delay=0.02))
    ca = a.connect(b, 7000, local_port=6000)
    cb = b.connect(a, 6000, local_port=7000)
    net.run_until(lambda: ca.state is S.ESTABLISHED and cb.state is S.ESTABLISHED)
    for c in (ca, cb):
        assert c.state_history == [S.CLOSED, S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED]
    # Each side sent SYN, then SYN,ACK with the same ISN, and no RST anywhere.
    flags = [(e.sender, e.segment.flag_names()) for e in net.trace]
    assert ("a", "SYN") in flags and ("b", "SYN") in flags
    assert ("a", "SYN,ACK") in flags and ("b", "SYN,ACK") in flags
    assert not any(e.segment.has(RST) for e in net.trace)
    a.send(ca, b"ping")
    net.run_until(lambda: bytes(b.received[cb]) == b"ping")


def test_simultaneous_open_survives_a_lost_syn():
    net = SimNet(seed=9)
    a, b = net.host("a"), net.host("b")
    net.connect_hosts(a, b, Link(delay=0.02, loss=1.0), Link(delay=0.02))
    ca = a.connect(b, 7000, local_port=6000)
    net.link("a", "b").loss = 0.0  # a's first SYN is gone
    cb = b.connect(a, 6000, local_port=7000)
    net.run_until(lambda: ca.state is S.ESTABLISHED and cb.state is S.ESTABLISHED)
    assert S.ESTABLISHED in ca.state_history and S.ESTABLISHED in cb.state_history


def test_rst_for_follows_the_closed_state_rules():
    with_ack = seg(ACK, seq=10, ack=20, window=0, payload=b"abc", src=1, dst=2)
    rst = rst_for(with_ack)
    assert (rst.src_port, rst.dst_port, rst.seq, rst.flags) == (2, 1, 20, RST)
    syn = seg(SYN, seq=0xFFFFFFFF, window=0, src=1, dst=2)
    rst = rst_for(syn)
    assert (rst.seq, rst.ack, rst.flags) == (0, 0, RST | ACK)  # ack wraps: seq + 1
    fin = seg(FIN, seq=5, window=0, payload=b"ab", src=1, dst=2)
    assert rst_for(fin).ack == seq_add(5, 3)
    assert rst_for(seg(RST, seq=0, window=0, src=1, dst=2)) is None


@pytest.mark.parametrize("iss", [0, 0xFFFFFFFF, 0xFFFFFF00])
def test_handshake_and_data_across_sequence_wrap(script, iss):
    conn = script.established(iss=iss, peer_iss=0xFFFFFFF0)
    conn.send(b"a" * 3000, script.now)
    segs = script.out()
    assert segs[0].seq == seq_add(iss, 1)
    last = segs[-1]
    script.peer(seq_add(0xFFFFFFF0, 1), seq_add(last.seq, len(last.payload)), payload=b"z" * 40)
    assert conn.snd_una == seq_add(iss, 3001)
    assert script.take_events()[0].data == b"z" * 40
    assert not any(isinstance(e, ConnectionClosed) for e in script.events)
