"""Keepalive (RFC 1122 §4.2.3.6): probe an idle peer, keep NAT bindings warm, detect death."""

from __future__ import annotations

import errno

from udptcp.core.config import Config
from udptcp.core.connection import State
from udptcp.core.events import ConnectionClosed
from udptcp.core.segment import ACK
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
    probes = [e for e in net.trace[mark:] if e.sender == "a" and e.segment.payload == b""]
    assert client.state is S.ESTABLISHED and server.state is S.ESTABLISHED
    # Both sides probe about every 25 s of silence; each probe is answered.
    times = [round(e.time - net.trace[mark - 1].time) for e in probes]
    assert len(probes) >= 3
    probe = probes[0].segment
    assert probe.flags == ACK and probe.seq == (client.snd_una - 1) & 0xFFFFFFFF
    assert client.stats()["keepalive_probes"] >= 1 or server.stats()["keepalive_probes"] >= 1
    assert all(t >= 20 for t in times[:1])


def test_a_silently_dead_peer_is_detected_and_reported_as_timeout():
    net, a, b, client, server = _pair()
    start = net.now
    net.link("b", "a").loss = 1.0  # the peer vanishes: nothing comes back any more
    net.link("a", "b").loss = 1.0
    net.run_until(lambda: client.is_closed, timeout=200)
    closed = a.closed_with(client)
    assert isinstance(closed, ConnectionClosed) and isinstance(closed.error, TimeoutError)
    assert closed.error.errno == errno.ETIMEDOUT
    # idle + count * interval (plus the last segment's delay), not a minute more.
    elapsed = net.now - start
    assert 25.0 + 4 * 5.0 - 0.1 <= elapsed <= 25.0 + 4 * 5.0 + 1.0
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
