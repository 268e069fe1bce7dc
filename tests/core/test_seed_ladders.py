"""The seed notes' diagrams, one test each, checked against what two connections sent.

Each ladder is written the way the notes write the segments (``SYN=1, seq=x`` becomes
``SYN seq=x``), one line per segment, with the flags exactly as sent: the notes leave out the
ACK bit that TCP sets on every segment after the first (RFC 9293 §3.10.7.4), so their
``FIN=1, seq=u`` is ``FIN,ACK seq=u`` here. Both ends are real connections on the simulated
network, which routes, encodes and decodes every segment as an endpoint does.
"""

from __future__ import annotations

from support.ladder import assert_ladder, parse
from support.script import states
from support.segments import seg

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.segment import ACK, SYN, Segment
from udptcp.tools.simnet import Link, SimHost, SimNet

S = State
MSL = 30.0


def _net(msl: float = MSL) -> tuple[SimNet, SimHost, SimHost]:
    net = SimNet(seed=12)
    cfg = Config(msl=msl)
    a, b = net.host("a", config=cfg), net.host("b", listening=True, config=cfg)
    net.connect_hosts(a, b, Link(delay=0.01), Link(delay=0.01))
    return net, a, b


def _established(msl: float = MSL) -> tuple[SimNet, SimHost, SimHost, Connection, Connection]:
    net, a, b = _net(msl)
    client = a.connect(b, 80)
    net.run_until(lambda: bool(b.accepted) and b.accepted[0].state is S.ESTABLISHED)
    net.run_for(0.1)
    return net, a, b, client, b.accepted[0]


def test_seed_three_way_handshake():
    # 建立连接: SYN=1,seq=x / SYN=1,ACK=1,ack=x+1,seq=y / ACK=1,ack=y+1.
    net, a, b = _net()
    client = a.connect(b, 80, iss=4242)
    net.run_until(lambda: client.state is S.ESTABLISHED and bool(b.accepted))
    net.run_for(0.1)
    server = b.accepted[0]
    names, _ = assert_ladder(
        net.trace,
        """
        a -> b   SYN seq=x
        a <- b   SYN,ACK seq=y ack=x+1
        a -> b   ACK seq=x+1 ack=y+1
        """,
    )
    assert names["x"] == 4242 and (server.irs, client.irs) == (names["x"], names["y"])
    # The states of the notes' diagram: CLOSED -> SYN-SENT -> ESTABLISHED on the client,
    # LISTEN -> SYN-RCVD -> ESTABLISHED on the server.
    assert states(client) == [S.CLOSED, S.SYN_SENT, S.ESTABLISHED]
    assert states(server) == [S.LISTEN, S.SYN_RECEIVED, S.ESTABLISHED]


def test_seed_stale_connection_request_is_refused_by_the_third_segment():
    # Why three segments: an old SYN of A's, held up in the network, reaches B after that
    # connection is long gone. B answers; A has asked for nothing, so it does not confirm
    # (it resets), and B knows no connection was made and keeps no resources for it.
    net, a, b = _net()
    net.transmit(a, "b", seg(SYN, seq=777, mss=1200, src=40123, dst=80))
    net.run_for(1.0)
    assert_ladder(
        net.trace,
        """
        a -> b   SYN seq=x
        a <- b   SYN,ACK seq=y ack=x+1
        a -> b   RST seq=x+1
        """,
    )
    (half_open,) = b.accepted
    assert states(half_open) == [S.LISTEN, S.SYN_RECEIVED, S.CLOSED]
    assert not b.conns and not a.conns
    assert b.closed_with(half_open) is not None


def test_seed_four_way_release_with_the_half_closed_server_still_sending():
    # 释放连接: FIN=1,seq=u / ack=u+1,seq=v / (the server may still send) /
    # FIN=1,ACK=1,seq=w,ack=u+1 / ACK=1,seq=u+1,ack=w+1, then 2MSL.
    net, a, b, client, server = _established()
    start = len(net.trace)
    a.shutdown(client)  # the client is done sending (asyncio's write_eof)
    net.run_until(lambda: server.state is S.CLOSE_WAIT and client.state is S.FIN_WAIT_2)
    b.send(server, b"last words")  # half-closed: the other direction still flows
    net.run_for(0.5)
    b.close(server)
    net.run_until(lambda: server.state is S.CLOSED)
    names, _ = assert_ladder(
        net.trace[start:],
        """
        a -> b   FIN,ACK seq=u ack=v
        a <- b   ACK seq=v ack=u+1
        a <- b   PSH,ACK seq=v ack=u+1 len=10
        a -> b   ACK seq=u+1 ack=w
        a <- b   FIN,ACK seq=w ack=u+1
        a -> b   ACK seq=u+1 ack=w+1
        """,
    )
    assert names["w"] == names["v"] + 10
    assert bytes(a.received[client]) == b"last words"
    # The notes' diagram: FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT on the side that closed first;
    # CLOSE-WAIT, LAST-ACK, CLOSED on the other.
    assert states(client)[-4:] == [S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.TIME_WAIT]
    assert states(server)[-4:] == [S.ESTABLISHED, S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED]


def test_seed_time_wait_lasts_2msl_after_the_last_ack():
    net, a, b, client, server = _established(msl=MSL)
    start = len(net.trace)
    a.close(client)
    net.run_until(lambda: server.state is S.CLOSE_WAIT)
    b.close(server)
    net.run_until(lambda: server.state is S.CLOSED)
    _, sent = assert_ladder(
        net.trace[start:],
        """
        a -> b   FIN,ACK seq=u ack=v
        a <- b   ACK seq=v ack=u+1
        a <- b   FIN,ACK seq=v ack=u+1
        a -> b   ACK seq=u+1 ack=v+1
        """,
    )
    last_ack_at = sent[-1].time
    assert client.state is S.TIME_WAIT
    closed_at = net.run_until(lambda: client.state is S.CLOSED)
    assert closed_at - last_ack_at == 2 * MSL
    assert len(net.trace) == start + 4  # nothing else was sent while waiting


def test_seed_time_wait_answers_the_fin_again_when_the_last_ack_was_lost():
    # The first reason for TIME-WAIT: if the last ACK is lost, the server retransmits its FIN;
    # the client, still waiting, acknowledges it again and restarts its 2MSL timer.
    net, a, b, client, server = _established(msl=MSL)
    lost: list[Segment] = []

    def lose_first_final_ack(segment: Segment) -> bool:
        if server.state is S.LAST_ACK and segment.flags == ACK and not lost:
            lost.append(segment)
            return True
        return False

    net.link("a", "b").drop = lose_first_final_ack
    start = len(net.trace)
    a.close(client)
    net.run_until(lambda: server.state is S.CLOSE_WAIT)
    b.close(server)
    net.run_until(lambda: server.state is S.CLOSED)
    _, sent = assert_ladder(
        net.trace[start:],
        """
        a -> b   FIN,ACK seq=u ack=v
        a <- b   ACK seq=v ack=u+1
        a <- b   FIN,ACK seq=v ack=u+1
        a -> b   ACK seq=u+1 ack=v+1    lost
        a <- b   FIN,ACK seq=v ack=u+1  # retransmitted on timeout
        a -> b   ACK seq=u+1 ack=v+1
        """,
    )
    assert client.state is S.TIME_WAIT
    closed_at = net.run_until(lambda: client.state is S.CLOSED)
    assert closed_at - sent[-1].time == 2 * MSL  # restarted by the second FIN
    assert states(server)[-3:] == [S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED]


def test_simultaneous_open_crosses_syns_and_both_sides_answer():
    # Not in the notes either: both ends open at once (RFC 9293 Figure 8), each SYN
    # answered with SYN,ACK, each SYN,ACK with ACK.
    net = SimNet(seed=12)
    a, b = net.host("a"), net.host("b")  # neither listens
    net.connect_hosts(a, b, Link(delay=0.01), Link(delay=0.01))
    ca = a.connect(b, 90, local_port=80, iss=1000)
    cb = b.connect(a, 80, local_port=90, iss=5000)
    net.run_until(lambda: ca.state is S.ESTABLISHED and cb.state is S.ESTABLISHED)
    net.run_for(0.5)
    names, _ = assert_ladder(
        net.trace,
        """
        a -> b   SYN seq=x
        a <- b   SYN seq=y
        a <- b   SYN,ACK seq=y ack=x+1
        a -> b   SYN,ACK seq=x ack=y+1
        a -> b   ACK seq=x+1 ack=y+1
        a <- b   ACK seq=y+1 ack=x+1
        """,
    )
    assert (names["x"], names["y"]) == (1000, 5000)
    for conn in (ca, cb):
        assert states(conn) == [S.CLOSED, S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED]


def test_simultaneous_close_crosses_fins_and_both_sides_wait():
    # Not in the notes, but their release drawn for two active closers (RFC 9293 Figure 13).
    net, a, b, client, server = _established()
    start = len(net.trace)
    a.close(client)
    b.close(server)
    net.run_until(lambda: client.state is S.TIME_WAIT and server.state is S.TIME_WAIT)
    net.run_for(0.1)
    assert_ladder(
        net.trace[start:],
        """
        a -> b   FIN,ACK seq=u ack=v
        a <- b   FIN,ACK seq=v ack=u
        a <- b   ACK seq=v+1 ack=u+1
        a -> b   ACK seq=u+1 ack=v+1
        """,
    )
    for conn in (client, server):
        assert states(conn)[-4:] == [S.ESTABLISHED, S.FIN_WAIT_1, S.CLOSING, S.TIME_WAIT]


def test_ladder_lines_parse_as_the_notes_write_them():
    (rung,) = parse("a <- b   SYN,ACK seq=y ack=x+1")
    assert (rung.sender, rung.receiver, rung.flags) == ("b", "a", frozenset({"SYN", "ACK"}))
    assert rung.fields == (("seq", "y"), ("ack", "x+1")) and not rung.lost
    assert parse("a -> b  ACK seq=u+1 ack=w+1  lost  # the notes' fourth segment")[0].lost


def test_a_ladder_that_differs_from_the_wire_fails_and_shows_both():
    net, a, b = _net()
    a.connect(b, 80, iss=10)
    net.run_for(1.0)
    try:
        assert_ladder(net.trace, "a -> b  SYN seq=x\na <- b  SYN,ACK seq=y ack=x+2\n")
    except AssertionError as exc:
        text = str(exc)
    else:
        raise AssertionError("a wrong ack passed")
    assert "ack=11, not x+2 = 12" in text
    assert "a <- b   SYN,ACK seq=" in text  # the exchange as sent, in ladder notation
