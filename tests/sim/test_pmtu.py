"""Path MTU probing (RFC 8899 / RFC 4821) on the simulator: up to the path MTU, and back."""

from __future__ import annotations

import random

from udptcp.core.config import Config
from udptcp.core.connection import State
from udptcp.tools.simnet import Link, SimNet

S = State
PROBING = Config(pmtu_max=9000)


def _setup(mtu: int, seed: int = 3):
    net = SimNet(seed=seed)
    net.record = False
    a, b = net.host("a", config=PROBING), net.host("b", listening=True, config=PROBING)
    fwd = Link(delay=0.01, mtu=mtu, rate=12_500_000)
    net.connect_hosts(a, b, fwd, Link(delay=0.01))
    client = a.connect(b, 80)
    net.run_until(lambda: client.state is S.ESTABLISHED)
    return net, a, b, client, fwd


def _datagram_budget(conn) -> int:
    return conn.stats()["pmtu"]


def test_probing_reaches_the_path_mtu():
    net, a, b, client, _ = _setup(mtu=4000)
    data = random.Random(1).randbytes(4_000_000)
    a.send(client, data)
    net.run_until(lambda: bool(b.accepted) and len(b.received[b.accepted[0]]) == len(data))
    assert bytes(b.received[b.accepted[0]]) == data
    st = client.stats()
    # The binary search found the 4000-byte path (it stops once a step is under 32 bytes).
    assert 4000 - 64 <= st["pmtu"] <= 4000
    assert st["pmtu_probes"] > 0 and st["pmtu_probe_failures"] > 0
    assert st["timeouts"] == 0  # a too-big probe is not a loss the RTO has to repair
    # ... nor congestion: no recovery, the window never cut below where slow start left it.
    assert st["sack_recoveries"] == 0 and st["fast_retransmits"] == 0
    assert client.cc.cwnd >= client.cc.ssthresh


def test_probing_stays_at_the_base_size_on_a_1500_byte_path():
    net, a, b, client, _ = _setup(mtu=1472)
    data = random.Random(2).randbytes(1_000_000)
    a.send(client, data)
    net.run_until(lambda: bool(b.accepted) and len(b.received[b.accepted[0]]) == len(data))
    assert bytes(b.received[b.accepted[0]]) == data
    assert client.stats()["pmtu"] == 1472


def test_a_shrinking_path_mtu_is_detected_and_the_connection_falls_back():
    net, a, b, client, fwd = _setup(mtu=9000)
    data = random.Random(3).randbytes(8_000_000)
    a.send(client, data)
    server_got = lambda: len(b.received[b.accepted[0]]) if b.accepted else 0  # noqa: E731
    net.run_until(lambda: client.stats()["pmtu"] > 8000)
    fwd.mtu = 1472  # a route change: big datagrams now vanish without a word
    net.run_until(lambda: server_got() == len(data), timeout=600)
    assert bytes(b.received[b.accepted[0]]) == data
    st = client.stats()
    assert st["pmtu_black_holes"] >= 1
    assert st["pmtu"] <= 1472
