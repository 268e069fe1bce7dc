"""Keepalive (RFC 1122 §4.2.3.6): probe an idle peer, keep NAT bindings warm, detect death."""

from __future__ import annotations

import errno

from udptcp.core.config import Config
from udptcp.core.connection import State
from udptcp.core.events import ConnectionClosed
from udptcp.core.segment import ACK
from udptcp.core.timers import KEEPALIVE_GRAIN, KEEPALIVE_SPREAD
from udptcp.tools.simnet import Link, SimNet

S = State
KA = Config(keepalive_idle=25.0, keepalive_interval=5.0, keepalive_count=4)


def _pair(config=KA, seed=1):
    net = SimNet(seed=seed)
    a, b = net.host("a", config=config), net.host("b", listening=True, config=config)
    net.connect_hosts(a, b, Link(delay=0.01), Link(delay=0.01))
    client = a.connect(b, 80)
    net.run_until(lambda: client.state is S.ESTABLISHED and bool(b.accepted))
    server = b.accepted[0]
    net.run_until(lambda: server.state is S.ESTABLISHED)
    return net, a, b, client, server


def test_an_idle_connection_is_probed_every_idle_period_and_stays_up():
    net, a, b, client, server = _pair()
    mark = len(net.trace)
    net.run_for(100.0)
    assert client.state is S.ESTABLISHED and server.state is S.ESTABLISHED
    # A probe is an empty segment one below the sender's SND.UNA (RFC 1122 §4.2.3.6); which
    # side's idle clock runs out first depends on the ISNs (the spread), so look at both.
    snd_una = {"a": client.snd_una, "b": server.snd_una}
    probes = [
        e
        for e in net.trace[mark:]
        if e.segment.payload == b"" and e.segment.seq == (snd_una[e.sender] - 1) & 0xFFFFFFFF
    ]
    # About one probe per 25 s of silence: a probe's answer restarts both idle clocks.
    assert 3 <= len(probes) <= 5
    assert all(p.segment.flags == ACK for p in probes)
    assert client.stats()["keepalive_probes"] + server.stats()["keepalive_probes"] == len(probes)
    first = probes[0].time - net.trace[mark - 1].time
    assert first >= 25.0 - 0.1
    # Every probe is answered: the other side sends an ACK at SND.NXT within the RTT.
    for p in probes:
        other = "b" if p.sender == "a" else "a"
        assert any(e.sender == other and p.time < e.time <= p.time + 0.1 for e in net.trace[mark:])


def test_a_silently_dead_peer_is_detected_and_reported_as_timeout():
    net, a, b, client, server = _pair()
    start = net.now
    net.link("b", "a").loss = 1.0  # the peer vanishes: nothing comes back any more
    net.link("a", "b").loss = 1.0
    net.run_until(lambda: client.is_closed, timeout=200)
    closed = a.closed_with(client)
    assert isinstance(closed, ConnectionClosed) and isinstance(closed.error, TimeoutError)
    assert closed.error.errno == errno.ETIMEDOUT
    # idle (plus at most its spread) + count * interval, plus the last segment's delay.
    elapsed = net.now - start
    assert 25.0 + 4 * 5.0 - 0.1 <= elapsed <= 25.0 * (1 + KEEPALIVE_SPREAD + KEEPALIVE_GRAIN) + 21.0
    assert client.stats()["keepalive_probes"] == 4


def test_keepalive_can_be_turned_off_per_connection():
    net, a, b, client, server = _pair()
    client.set_keepalive(False)
    server.set_keepalive(False)
    mark = len(net.trace)
    net.run_for(120.0)
    assert net.trace[mark:] == []  # total silence, as an idle kernel TCP connection
    assert client.state is S.ESTABLISHED


def test_no_probe_while_data_is_outstanding():
    net, a, b, client, server = _pair()
    net.link("a", "b").loss = 1.0  # data cannot get through: the RTO is in charge
    a.send(client, b"x" * 1000)
    net.run_for(60.0)
    assert client.stats()["keepalive_probes"] == 0
    assert client.stats()["timeouts"] > 0


def test_any_segment_restarts_the_idle_clock_so_a_pair_exchanges_one_probe_per_period():
    # RFC 1122 §4.2.3.6: a probe only after `idle` seconds with nothing received. The
    # peer's own probe counts as something received, so the two sides never both probe
    # in one period: one probe and its ACK keep both sides quiet for another period.
    net, a, b, client, server = _pair()
    mark = len(net.trace)
    net.run_for(400.0)
    entries = net.trace[mark:]
    assert client.state is S.ESTABLISHED and server.state is S.ESTABLISHED
    probes = client.stats()["keepalive_probes"] + server.stats()["keepalive_probes"]
    assert len(entries) == 2 * probes  # every segment is a probe or its ACK
    assert 400.0 / (25.0 * (1 + KEEPALIVE_SPREAD + KEEPALIVE_GRAIN)) - 1 <= probes <= 400.0 / 25.0
    last_heard = {"a": net.trace[mark - 1].time, "b": net.trace[mark - 1].time}
    for entry in entries:
        # What the sender last received came 0.01 s after the peer sent it.
        if entry.time - last_heard[entry.sender] >= 25.0 - 1e-9:
            pass  # a probe: after a full idle period of silence
        else:
            assert entry.time - last_heard[entry.sender] < 0.05  # an ACK answering a probe
        last_heard[entry.receiver] = entry.time + 0.01


def test_data_from_the_peer_postpones_the_probe():
    net, a, b, client, server = _pair()
    for _ in range(5):
        net.run_for(20.0)  # each time 5 s short of the idle time
        b.send(server, b"still here")
    net.run_for(5.0)
    assert client.stats()["keepalive_probes"] == 0


def test_probe_deadlines_of_connections_opened_together_are_spread():
    net = SimNet(seed=7)
    a, b = net.host("a", config=KA), net.host("b", listening=True, config=KA)
    net.connect_hosts(a, b, Link(delay=0.01), Link(delay=0.01))
    clients = [a.connect(b, 80) for _ in range(200)]  # all in the same instant
    net.run_until(lambda: all(c.state is S.ESTABLISHED for c in clients) and len(b.accepted) == 200)
    opened = net.now
    mark = len(net.trace)
    net.run_for(25.0 * (1 + KEEPALIVE_SPREAD + KEEPALIVE_GRAIN) + 1.0)
    per_conn: dict[int, list[float]] = {}
    for e in net.trace[mark:]:
        client_port = e.segment.src_port if e.sender == "a" else e.segment.dst_port
        per_conn.setdefault(client_port, []).append(e.time)
    # One probe and its ACK per connection (never both sides probing each other at once).
    # One probe and its ACK per connection: the two sides probe each other at once only
    # when their deadlines fall within a one-way delay (~1% of pairs here), not all of them.
    assert len(per_conn) == 200 and all(len(times) in (2, 4) for times in per_conn.values())
    assert sum(len(times) == 4 for times in per_conn.values()) <= 5
    times = sorted(times[0] for times in per_conn.values())
    # None before the idle time, and spread over (most of) idle * KEEPALIVE_SPREAD.
    assert times[0] >= opened + 25.0 - 0.05
    assert times[-1] - times[0] >= 0.8 * 25.0 * KEEPALIVE_SPREAD
    per_tenth: dict[int, int] = {}
    for t in times:
        per_tenth[int(t * 10)] = per_tenth.get(int(t * 10), 0) + 1
    # The earlier of two uniform shares (whichever side probes) leans early: ~25 in the
    # busiest 0.1 s here, where an unspread set of deadlines puts all 200 in one.
    assert max(per_tenth.values()) <= 50
    # ... yet they share wake-ups: the deadlines sit on a grid of idle * KEEPALIVE_GRAIN,
    # so the 200 probes go out at no more than 65 distinct instants.
    assert len({round(t, 6) for t in times}) <= 65
    grain = 25.0 * KEEPALIVE_GRAIN
    assert all(abs(t / grain - round(t / grain)) < 1e-6 for t in times)


def test_set_keepalive_idle_changes_when_the_first_probe_goes():
    net, a, b, client, server = _pair()
    server.set_keepalive(False)
    client.set_keepalive(True, idle=100.0)
    a.send(client, b"x")  # a segment each way restarts the clock with the new idle time
    net.run_for(99.0)
    assert client.stats()["keepalive_probes"] == 0
    net.run_for(100.0 * (KEEPALIVE_SPREAD + KEEPALIVE_GRAIN) + 1.0)
    assert client.stats()["keepalive_probes"] == 1


def test_with_the_default_config_a_dead_peer_is_reported_within_the_documented_time():
    # Config's documented bound: keepalive_idle (+ up to 1/16 spread, + one grid step)
    # + keepalive_count * keepalive_interval, i.e. 5 min 20 s to 5 min 39 s.
    default = Config()
    net, a, b, client, server = _pair(config=default)
    start = net.now
    net.link("b", "a").loss = net.link("a", "b").loss = 1.0
    net.run_until(lambda: client.is_closed, timeout=400)
    assert isinstance(a.closed_with(client).error, TimeoutError)
    elapsed = net.now - start
    assert 320.0 - 0.1 <= elapsed <= 339.1 + 0.1
    assert client.stats()["keepalive_probes"] == default.keepalive_count
