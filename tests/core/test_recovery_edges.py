"""Edge cases of loss recovery and sizing, each pinned after a review found it broken."""

from __future__ import annotations

from support.segments import seg

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.segment import ACK, SYN
from udptcp.core.seq import in_window
from udptcp.tools.simnet import connected_pair

S = State
ISS, PEER = 100, 300


def _pair(cfg: Config | None = None) -> tuple[Connection, Connection]:
    return connected_pair(cfg or Config(delayed_ack=0.0, pacing=False), iss=ISS)


def _exchange(a, b, drop=lambda s: False, rounds=1000):
    """Carry segments both ways at one instant until quiet; return how many rounds it took."""
    for n in range(rounds):
        sa, sb = a.take_segments(), b.take_segments()
        if not sa and not sb:
            return n
        for s in sa:
            if not drop(s):
                b.receive(s, 0.0)
        for s in sb:
            if not drop(s):
                a.receive(s, 0.0)
    return rounds


def test_a_bare_ack_at_the_right_edge_of_the_window_is_accepted():
    a, b = _pair()
    wnd = b.rcv_wnd
    assert in_window(b.rcv_nxt, wnd, (b.rcv_nxt + wnd) & 0xFFFFFFFF, 0)
    assert not in_window(b.rcv_nxt, wnd, (b.rcv_nxt + wnd + 1) & 0xFFFFFFFF, 0)


def test_window_filling_peers_with_holes_do_not_trade_acks_forever():
    a, b = _pair(Config(delayed_ack=0.0, initial_window=50))
    a.send(b"a" * 65535, 0.0)
    b.send(b"b" * 65535, 0.0)
    holes = (a.snd_una, b.snd_una)
    rounds = _exchange(a, b, drop=lambda s: bool(s.payload) and s.seq in holes)
    assert rounds < 20
    # Each side saw the other's duplicate ACKs and fast-retransmitted its hole.
    assert a.stats()["fast_retransmits"] == 1 and b.stats()["fast_retransmits"] == 1


def test_fast_retransmit_works_again_right_after_a_recovery_ends(script):
    conn = script.established(iss=ISS, peer_iss=PEER)
    conn.send(b"x" * 1452 * 8, script.now)
    first = script.out()
    for _ in range(3):
        script.peer(PEER + 1, conn.snd_una)
    script.out()
    end = first[-1].seq + len(first[-1].payload)
    script.peer(PEER + 1, end)  # the full ACK lands exactly on the recovery point
    script.out()
    conn.send(b"y" * 1452 * 8, script.now)
    script.out()
    for _ in range(3):
        script.peer(PEER + 1, conn.snd_una)  # the first new segment was lost
    retx = script.out()
    assert conn.stats()["fast_retransmits"] == 2
    assert any(s.seq == end for s in retx)  # repaired at once, no RTO wait


def test_the_recovery_point_trails_snd_una_so_it_can_never_wrap(script):
    # RFC 6582's "recover" compared modulo 2^32 would flip after 2 GiB without a loss if it
    # stayed at the ISS; it must follow SND.UNA forward outside recovery.
    conn = script.established(iss=ISS, peer_iss=PEER)
    for _ in range(3):
        conn.send(b"r" * 1452 * 4, script.now)
        sent = script.out()
        script.peer(PEER + 1, sent[-1].seq + len(sent[-1].payload))
        assert conn._recover == conn.snd_una


def test_congestion_window_counts_in_the_peers_smaller_segments(script):
    conn = script.active(iss=ISS)
    script.out()
    script.feed(seg(SYN | ACK, seq=PEER, ack=ISS + 1, mss=536))
    assert conn.cc.mss == 536
    assert conn.cc.cwnd == 10 * 536  # RFC 6928: ten of the segments actually sent


def test_abort_after_a_timeout_resets_the_peer_despite_the_rewind():
    a, b = _pair()
    a.send(b"a" * 1452 * 3, 0.0)
    for s in a.take_segments():
        b.receive(s, 0.0)
    b.take_segments()  # B's ACKs are lost
    a.handle_timer(1.0)  # RTO: SND.NXT goes back to SND.UNA
    a.take_segments()
    a.abort(1.0)
    (rst,) = a.take_segments()
    b.receive(rst, 1.0)
    assert b.state is S.CLOSED


def test_after_a_lost_syn_the_first_window_is_one_segment_and_rto_restarts_at_3s():
    cfg = Config(delayed_ack=0.0)
    a = Connection.connect(cfg, local_port=1, remote_port=2, iss=ISS, mss=1452, now=0.0)
    a.take_segments()
    a.handle_timer(1.0)  # the SYN was lost; sent again
    (syn,) = a.take_segments()
    a.receive(seg(SYN | ACK, seq=PEER, ack=ISS + 1, mss=1452, src=2, dst=1), 1.2)
    assert a.state is S.ESTABLISHED
    a.take_segments()
    a.send(b"d" * 10 * 1452, 1.2)
    assert len(a.take_segments()) == 1  # RFC 5681 §3.1
    assert a.get_timer() - 1.2 >= 3.0  # RFC 6298 §5.7 (no sample: Karn)


def test_delayed_ack_counts_full_segments_of_the_peers_size():
    cfg = Config(delayed_ack=0.2)
    conn = Connection.connect(cfg, local_port=1, remote_port=2, iss=ISS, mss=1452, now=0.0)
    conn.take_segments()
    conn.receive(seg(SYN | ACK, seq=PEER, ack=ISS + 1, mss=536, src=2, dst=1), 0.0)
    conn.take_segments()
    seq = PEER + 1
    conn.receive(seg(ACK, seq=seq, ack=ISS + 1, payload=b"a" * 536, src=2, dst=1), 0.01)
    assert conn.take_segments() == []
    conn.receive(seg(ACK, seq=seq + 536, ack=ISS + 1, payload=b"b" * 536, src=2, dst=1), 0.02)
    assert [s.ack for s in conn.take_segments()] == [seq + 1072]


def test_a_fin_waits_for_window_and_the_persist_timer_keeps_the_connection_alive(script):
    script.config = script.config.replace(user_timeout=10.0)
    conn = script.established(iss=ISS, peer_iss=PEER, window=1452)
    conn.send(b"f" * 1452, script.now)
    conn.close(script.now)
    (data,) = script.out()
    script.peer(PEER + 1, data.seq + 1452, window=0)  # acknowledged, window shut
    assert script.out() == []  # no FIN into a zero window
    probes = 0
    end = script.now + 60.0
    while script.now < end:  # only probes, each answered with a shut window
        script.advance(1.0)
        for probe in script.out():
            assert not probe.payload and probe.seq == data.seq + 1451
            probes += 1
            script.peer(PEER + 1, data.seq + 1452, window=0)
    assert probes >= 5
    assert conn.state is S.FIN_WAIT_1  # no user timeout: the peer is alive, just full
    script.peer(PEER + 1, data.seq + 1452, window=1000)
    (fin,) = script.out()
    assert fin.flags & ACK and fin.seq == data.seq + 1452
