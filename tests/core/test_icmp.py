"""ICMP errors about a connection's datagrams: refused while opening, soft once open, and
a dead peer (its UDP port answering every retransmission with port unreachable) reset."""

from __future__ import annotations

import errno

from udptcp.core.connection import ICMP_DEAD_ROUNDS, State
from udptcp.core.events import ConnectionClosed
from udptcp.core.segment import ACK
from udptcp.core.timers import KEEPALIVE_GRAIN, KEEPALIVE_SPREAD

S = State
PEER_ISS = 300


def _closed_error(script):
    closed = [e for e in script.take_events() if isinstance(e, ConnectionClosed)]
    assert len(closed) == 1
    return closed[0].error


def _send_data(script, conn, data=b"hello"):
    conn.send(data, script.now)
    (seg,) = script.out()
    assert seg.payload == data
    return seg


def _next_retransmission(script, conn):
    """Run the clock to the retransmission timer; return the segment it resent."""
    script.advance(conn.get_timer() - script.now)
    segs = script.out()
    assert segs, "the retransmission timer sent nothing"
    return segs[-1]


def test_port_unreachable_quoting_our_syn_refuses_the_connection(script):
    conn = script.active(iss=10)
    script.out()
    conn.icmp_unreachable(script.now, seq=10)
    assert conn.state is S.CLOSED
    error = _closed_error(script)
    assert isinstance(error, ConnectionRefusedError)
    assert error.errno == errno.ECONNREFUSED
    assert "port unreachable" in error.strerror


def test_port_unreachable_quoting_another_sequence_number_is_ignored(script):
    # RFC 5927 §4.1: a blind attacker must guess the sequence number to forge one.
    conn = script.active(iss=10)
    script.out()
    conn.icmp_unreachable(script.now, seq=11)
    conn.icmp_unreachable(script.now, seq=5000)
    assert conn.state is S.SYN_SENT
    assert conn.soft_error is None
    assert conn.stats_counters["icmp_rejected"] == 2


def test_one_unreachable_on_an_established_connection_is_soft(script):
    conn = script.established(iss=100)
    seg = _send_data(script, conn)
    conn.icmp_unreachable(script.now, seq=seg.seq)
    assert conn.state is S.ESTABLISHED
    assert conn.soft_error == "port unreachable"
    # The peer answers after all: the data goes through as if nothing happened.
    script.peer(PEER_ISS + 1, seg.seq + len(seg.payload), ACK, b"pong")
    assert conn.state is S.ESTABLISHED
    assert conn.snd_una == conn.snd_max


def test_unreachables_answering_consecutive_retransmissions_reset_the_connection(script):
    conn = script.established(iss=100)
    start = script.now
    rto = conn.rtt.rto
    seg = _send_data(script, conn)
    conn.icmp_unreachable(script.now, seq=seg.seq)  # the original: does not count
    for _ in range(ICMP_DEAD_ROUNDS):
        again = _next_retransmission(script, conn)
        assert again.seq == seg.seq
        assert conn.state is S.ESTABLISHED
        conn.icmp_unreachable(script.now, seq=again.seq)
        conn.icmp_unreachable(script.now, seq=again.seq)  # duplicates count once
    assert conn.state is S.CLOSED
    error = _closed_error(script)
    assert isinstance(error, ConnectionResetError)
    assert error.errno == errno.ECONNRESET
    assert "endpoint is gone" in error.strerror
    # RTO then the backed-off 2 RTO: within a few RTOs, not the 120 s user timeout.
    assert script.now - start == rto + 2 * rto
    assert script.out() == []  # no RST to a port that is not there


def test_a_segment_from_the_peer_between_unreachables_keeps_the_connection(script):
    conn = script.established(iss=100)
    seg = _send_data(script, conn)
    again = _next_retransmission(script, conn)
    conn.icmp_unreachable(script.now, seq=again.seq)
    # The peer is alive after all (a duplicate ACK, say): the count starts again.
    script.peer(PEER_ISS + 1, seg.seq, ACK)
    for _ in range(ICMP_DEAD_ROUNDS - 1):
        again = _next_retransmission(script, conn)
        conn.icmp_unreachable(script.now, seq=again.seq)
    assert conn.state is S.ESTABLISHED
    again = _next_retransmission(script, conn)
    conn.icmp_unreachable(script.now, seq=again.seq)
    assert conn.state is S.CLOSED


def test_a_retransmission_without_an_unreachable_breaks_the_streak(script):
    conn = script.established(iss=100)
    _send_data(script, conn)
    again = _next_retransmission(script, conn)
    conn.icmp_unreachable(script.now, seq=again.seq)
    _next_retransmission(script, conn)  # lost, say: no unreachable this round
    again = _next_retransmission(script, conn)
    conn.icmp_unreachable(script.now, seq=again.seq)
    assert conn.state is S.ESTABLISHED  # two unreachables, but not in a row
    again = _next_retransmission(script, conn)
    conn.icmp_unreachable(script.now, seq=again.seq)
    assert conn.state is S.CLOSED


def test_unreachables_quoting_old_sequence_numbers_do_not_count(script):
    conn = script.established(iss=100)
    seg = _send_data(script, conn)
    for _ in range(ICMP_DEAD_ROUNDS + 1):
        _next_retransmission(script, conn)
        conn.icmp_unreachable(script.now, seq=seg.seq - 1000)
        conn.icmp_unreachable(script.now, seq=conn.snd_max + 1)
    assert conn.state is S.ESTABLISHED
    assert conn.soft_error is None


def test_unreachables_answering_keepalive_probes_reset_an_idle_connection(script):
    script.config = script.config.replace(
        keepalive=True, keepalive_idle=10.0, keepalive_interval=1.0, keepalive_count=9
    )
    conn = script.established(iss=100)
    for _ in range(ICMP_DEAD_ROUNDS):
        probe = _next_retransmission(script, conn)
        assert probe.seq == conn.snd_una - 1 and not probe.payload
        assert conn.state is S.ESTABLISHED
        conn.icmp_unreachable(script.now, seq=probe.seq)
    assert conn.state is S.CLOSED
    assert isinstance(_closed_error(script), ConnectionResetError)
    # Two probes, one interval apart, not keepalive_count of them: the first after the
    # idle time (plus this connection's spread share and grid step), the second 1 s later.
    assert ICMP_DEAD_ROUNDS == 2
    assert 10.0 + 1.0 <= script.now <= 10.0 * (1 + KEEPALIVE_SPREAD + KEEPALIVE_GRAIN) + 1.0


def test_unreachables_answering_zero_window_probes_reset_the_connection(script):
    conn = script.established(iss=100, window=0)
    conn.send(b"blocked", script.now)
    assert script.out() == []
    for _ in range(ICMP_DEAD_ROUNDS):
        probe = _next_retransmission(script, conn)
        conn.icmp_unreachable(script.now, seq=probe.seq)
    assert conn.state is S.CLOSED
    assert isinstance(_closed_error(script), ConnectionResetError)


def test_a_dead_peer_of_a_half_open_passive_connection_is_dropped(script):
    conn = script.passive(peer_iss=PEER_ISS, iss=100)
    (synack,) = script.out()
    conn.icmp_unreachable(script.now, seq=synack.seq)
    assert conn.state is S.SYN_RECEIVED
    for _ in range(ICMP_DEAD_ROUNDS):
        again = _next_retransmission(script, conn)
        conn.icmp_unreachable(script.now, seq=again.seq)
    assert conn.state is S.CLOSED


def test_other_icmp_errors_are_soft_whatever_their_number(script):
    conn = script.established(iss=100)
    _send_data(script, conn)
    for _ in range(5):
        again = _next_retransmission(script, conn)
        conn.icmp_soft_error(script.now, "host unreachable", seq=again.seq)
    assert conn.state is S.ESTABLISHED
    assert conn.soft_error == "host unreachable"


def test_an_unreachable_in_time_wait_changes_nothing(script):
    conn = script.in_state(S.TIME_WAIT, iss=100, peer_iss=PEER_ISS)  # our FIN was seq 101
    for _ in range(3):
        conn.icmp_unreachable(script.now, seq=102)
    assert conn.state is S.TIME_WAIT
