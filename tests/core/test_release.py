"""Releasing a connection: the seed's four-way release, TIME-WAIT, half-close, resets."""

from __future__ import annotations

import errno

from support.segments import seg

from udptcp.core.connection import State
from udptcp.core.events import ConnectionClosed, DataReceived, EofReceived
from udptcp.core.segment import ACK, FIN, RST, SYN
from udptcp.tools.simnet import Link, SimNet

S = State


def _pair(seed=1, msl=30.0, delay=0.01):
    from udptcp.core.config import Config

    net = SimNet(seed=seed)
    cfg = Config(msl=msl)
    a, b = net.host("a", config=cfg), net.host("b", listening=True, config=cfg)
    net.connect_hosts(a, b, Link(delay=delay), Link(delay=delay))
    client = a.connect(b, 80)
    net.run_until(lambda: client.state is S.ESTABLISHED and bool(b.accepted))
    server = b.accepted[0]
    net.run_until(lambda: server.state is S.ESTABLISHED)
    return net, a, b, client, server


def _release(net, a, b, client, server):
    """The client closes first, then the server: the client ends up in TIME-WAIT."""
    a.close(client)
    net.run_until(lambda: server.state is S.CLOSE_WAIT)
    b.close(server)
    net.run_until(lambda: client.state is S.TIME_WAIT)


def test_seed_four_way_release_field_by_field_and_time_wait_lasts_2msl():
    net, a, b, client, server = _pair(msl=30.0)
    start = len(net.trace)
    # First: the client's application is done sending: FIN=1, seq=u. (The seed's client
    # still receives while half-closed, so this is shutdown(), asyncio's write_eof().)
    a.shutdown(client)
    net.run_until(lambda: server.state is S.CLOSE_WAIT)
    net.run_for(0.1)
    # The server may still send (half-closed): then it closes too.
    b.send(server, b"last words")
    net.run_for(0.1)
    b.close(server)
    net.run_until(lambda: client.state is S.TIME_WAIT)
    time_wait_at = net.now
    net.run_until(lambda: server.state is S.CLOSED)
    wire = [(e.sender, e.segment) for e in net.trace[start:]]
    fin1 = wire[0][1]
    u = fin1.seq
    assert wire[0][0] == "a" and fin1.has(FIN)
    # Second: the server acknowledges: ACK=1, ack=u+1, seq=v.
    s2, ack2 = wire[1]
    assert s2 == "b" and ack2.flags == ACK and ack2.ack == u + 1
    # Third: the server's FIN: FIN=1, ACK=1, seq=w, ack=u+1.
    fin3 = next(seg for s, seg in wire if s == "b" and seg.has(FIN))
    w = fin3.seq
    assert fin3.has(ACK) and fin3.ack == u + 1
    # Fourth: the client's final ACK: ACK=1, seq=u+1, ack=w+1.
    s4, ack4 = wire[-1]
    assert s4 == "a" and ack4.flags == ACK and (ack4.seq, ack4.ack) == (u + 1, w + 1)
    assert bytes(a.received[client]) == b"last words"
    assert client.state_history[-4:] == [S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.TIME_WAIT]
    assert server.state_history[-4:] == [S.ESTABLISHED, S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED]
    # The application hears of the close when TIME-WAIT starts (DESIGN §8).
    assert a.closed_with(client) == ConnectionClosed(None)
    # TIME-WAIT lasts exactly 2 MSL.
    net.run_until(lambda: client.state is S.CLOSED)
    assert abs((net.now - time_wait_at) - 60.0) < 1e-6


def test_time_wait_reacknowledges_a_replayed_fin_and_restarts_the_timer():
    net, a, b, client, server = _pair(msl=30.0)
    _release(net, a, b, client, server)
    entered = net.now
    final_ack = net.trace[-1].segment
    net.run_for(20.0)  # part way into TIME-WAIT
    replay_at = net.now
    fin = next(e.segment for e in reversed(net.trace) if e.sender == "b" and e.segment.has(FIN))
    mark = len(net.trace)
    net.transmit(b, "a", fin)  # the server's FIN again, as if our last ACK was lost
    net.run_for(0.05)
    from_client = [e.segment for e in net.trace[mark:] if e.sender == "a"]
    fields = [(s.flags, s.seq, s.ack, s.window) for s in from_client]
    assert fields == [(final_ack.flags, final_ack.seq, final_ack.ack, final_ack.window)]
    # The server is gone, so its side answers that ACK with RST: RFC 1337 says ignore it.
    assert any(e.segment.has(RST) for e in net.trace[mark:] if e.sender == "b")
    assert client.state is S.TIME_WAIT
    net.run_until(lambda: client.state is S.CLOSED)
    # Restarted: 2 MSL from the replay's arrival, not from entering TIME-WAIT.
    assert net.now > entered + 60.0
    assert abs(net.now - (replay_at + 0.01 + 60.0)) < 1e-6


def test_simultaneous_close_goes_through_closing_on_both_sides():
    net, a, b, client, server = _pair(delay=0.05)
    a.close(client)
    b.close(server)  # both FINs cross in flight
    net.run_until(lambda: client.state is S.TIME_WAIT and server.state is S.TIME_WAIT)
    for c in (client, server):
        assert c.state_history[-4:] == [S.ESTABLISHED, S.FIN_WAIT_1, S.CLOSING, S.TIME_WAIT]
    net.run_until(lambda: client.is_closed and server.is_closed)


def test_half_close_keeps_the_other_direction_flowing():
    net, a, b, client, server = _pair()
    client.send(b"request", net.now)
    a.shutdown(client)  # write_eof
    net.run_until(lambda: b.got_eof(server) and client.state is S.FIN_WAIT_2)
    assert bytes(b.received[server]) == b"request"
    assert client.state is S.FIN_WAIT_2
    reply = bytes(range(256)) * 400
    b.send(server, reply)
    net.run_until(lambda: bytes(a.received[client]) == reply)
    assert client.state is S.FIN_WAIT_2  # still reading, no timeout while half-closed
    net.run_for(120.0)
    assert client.state is S.FIN_WAIT_2
    b.close(server)
    net.run_until(lambda: client.state is S.TIME_WAIT)
    events = a.events[client]
    assert isinstance(events[-2], EofReceived) and events[-1] == ConnectionClosed(None)


def test_fin_wait_2_times_out_after_close_when_the_peer_stays_silent(script):
    script.config = script.config.replace(fin_wait2_timeout=60.0)
    conn = script.in_state(S.FIN_WAIT_2)  # the peer acknowledged our FIN but never closes
    script.advance(59.0)
    assert conn.state is S.FIN_WAIT_2
    script.advance(1.0)
    assert conn.state is S.CLOSED
    assert script.take_events() == [ConnectionClosed(None)]


def test_fin_is_retransmitted_until_acknowledged(script):
    conn = script.established()
    conn.close(script.now)
    fin = script.one()
    script.advance(conn.get_timer() - script.now)
    assert script.one() == fin
    assert conn.state is S.FIN_WAIT_1


def test_data_queued_before_close_goes_out_before_the_fin(script):
    conn = script.established(iss=100, window=3000)
    conn.send(b"d" * 5000, script.now)
    conn.close(script.now)
    segs = script.out()
    assert not any(s.has(FIN) for s in segs)  # window allows only 3000 bytes
    assert sum(len(s.payload) for s in segs) <= 3000
    end = segs[-1].seq + len(segs[-1].payload)
    script.peer(301, end, window=3000)
    segs = script.out()
    assert segs[-1].has(FIN) and segs[-1].seq + len(segs[-1].payload) == 101 + 5000


def test_rst_with_exact_sequence_resets_an_established_connection(script):
    conn = script.established(peer_iss=300)
    script.peer(301, 0, RST)
    assert conn.state is S.CLOSED
    (closed,) = script.take_events()
    assert isinstance(closed.error, ConnectionResetError)
    assert closed.error.errno == errno.ECONNRESET


def test_rst_in_window_but_not_exact_gets_a_challenge_ack(script):
    conn = script.established(iss=100, peer_iss=300)
    script.peer(301 + 1000, 0, RST)
    assert conn.state is S.ESTABLISHED
    challenge = script.one()
    assert (challenge.flags, challenge.seq, challenge.ack) == (ACK, 101, 301)


def test_rst_outside_the_window_is_dropped_silently(script):
    conn = script.established(peer_iss=300)
    script.peer(301 + 200000, 0, RST)
    assert conn.state is S.ESTABLISHED
    assert script.out() == []


def test_syn_on_an_established_connection_gets_a_challenge_ack(script):
    conn = script.established(iss=100, peer_iss=300)
    script.feed(seg(SYN, seq=305))
    assert conn.state is S.ESTABLISHED
    assert script.one().flags == ACK


def test_challenge_acks_are_rate_limited(script):
    conn = script.established(iss=100, peer_iss=300)
    sent = 0
    for i in range(50):
        script.peer(400 + i, 0, RST)
        sent += len(script.out())
    assert sent == 10
    assert conn.stats()["challenge_acks"] == 10


def test_rst_in_time_wait_is_ignored_rfc1337():
    net, a, b, client, server = _pair()
    _release(net, a, b, client, server)
    client.receive(seg(RST, seq=client.rcv_nxt, window=0, src=80, dst=client.local_port), net.now)
    assert client.state is S.TIME_WAIT


def test_a_new_syn_with_higher_sequence_reopens_a_time_wait_pair():
    net, a, b, client, server = _pair()
    port = client.local_port
    b.close(server)  # the server closes first: it holds TIME-WAIT
    net.run_until(lambda: client.state is S.CLOSE_WAIT)
    a.close(client)
    net.run_until(lambda: server.state is S.TIME_WAIT and client.is_closed)
    again = a.connect(b, 80, local_port=port, iss=(server.rcv_nxt + 100000) & 0xFFFFFFFF)
    net.run_until(lambda: again.state is S.ESTABLISHED and b.accepted[-1] is not server)
    net.run_until(lambda: b.accepted[-1].state is S.ESTABLISHED)
    assert len(b.accepted) == 2 and b.accepted[1].state is S.ESTABLISHED


def test_abort_sends_rst_and_the_peer_sees_a_reset():
    net, a, b, client, server = _pair()
    a.abort(client)
    assert client.state is S.CLOSED
    assert a.closed_with(client) == ConnectionClosed(None)
    net.run_until(lambda: server.is_closed)
    assert isinstance(b.closed_with(server).error, ConnectionResetError)
    assert net.trace[-1].segment.flags == RST


def test_data_after_close_is_answered_with_rst(script):
    conn = script.established(iss=100, peer_iss=300)
    conn.close(script.now)
    (fin,) = script.out()
    script.peer(301, 101, payload=b"too late")
    rst = script.one()
    assert rst.flags == RST and rst.seq == fin.seq + 1
    assert conn.state is S.CLOSED
    assert not any(isinstance(e, DataReceived) for e in script.take_events())


def test_close_with_unread_data_resets_instead_of_fin(script):
    conn = script.established(iss=100, peer_iss=300)
    conn.pause_reading()
    script.peer(301, 101, payload=b"unread")
    script.out()
    conn.close(script.now)
    (rst,) = script.out()
    assert rst.flags == RST
    assert conn.state is S.CLOSED
    assert script.take_events()[-1] == ConnectionClosed(None)
