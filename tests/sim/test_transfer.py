"""Bulk transfers over the simulated network: integrity through every impairment.

Each run is seeded; a failure message carries the seed, and the same seed replays the same
run exactly.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from udptcp.core.config import Config
from udptcp.core.connection import State
from udptcp.core.events import ConnectionClosed
from udptcp.tools.simnet import Link, SimNet

S = State
HOSTILE = dict(loss=0.05, duplicate=0.02, reorder=0.05, corrupt=0.01, delay=0.01, jitter=0.002)


def _setup(seed, forward, backward, config=None):
    net = SimNet(seed=seed)
    net.record = False
    cfg = config or Config()
    a, b = net.host("a", config=cfg), net.host("b", listening=True, config=cfg)
    net.connect_hosts(a, b, forward, backward)
    return net, a, b


def _transfer(net, a, b, size, seed):
    data = random.Random(seed).randbytes(size)
    client = a.connect(b, 80)
    net.run_until(lambda: client.state is S.ESTABLISHED)
    client.send(data, net.now)
    a.close(client)
    net.run_until(lambda: bool(b.accepted) and b.got_eof(b.accepted[0]), timeout=5000)
    server = b.accepted[0]
    b.close(server)
    net.run_until(lambda: client.state is S.TIME_WAIT and server.is_closed, timeout=5000)
    got = bytes(b.received[server])
    assert len(got) == size, f"seed={seed}"
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), f"seed={seed}"
    assert a.closed_with(client) == ConnectionClosed(None)
    assert b.closed_with(server) == ConnectionClosed(None)
    return client, server


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ten_megabytes_arrive_intact_through_loss_duplication_reordering_corruption(seed):
    net, a, b = _setup(seed, Link(**HOSTILE), Link(**HOSTILE))
    client, server = _transfer(net, a, b, 10_000_000, seed)
    st = client.stats()
    # The hostile link really did its work, and the stack really repaired it.
    assert net.link("a", "b").stats["lost"] > 100
    assert net.link("a", "b").stats["corrupted"] > 10
    assert b.malformed > 10  # corrupted datagrams fail the checksum and are dropped
    assert st["retransmits"] > 100 and st["fast_retransmits"] > 10
    assert server.stats()["duplicate_bytes_received"] > 0


@pytest.mark.parametrize("seed", [4, 5])
def test_transfer_over_a_rate_limited_queue_with_heavy_reordering(seed):
    # A 10 Mbit/s bottleneck whose 10-datagram queue is smaller than the window: the
    # sender must back off on the drops the queue makes, as on a real bottleneck.
    # (queue_limit counts datagrams waiting, not the one being serialized: nine waiting
    # plus one on the wire is the ten-datagram queue.)
    fwd = Link(rate=1_250_000, queue_limit=9, delay=0.02, jitter=0.01, reorder=0.2)
    net, a, b = _setup(seed, fwd, Link(delay=0.02))
    client, _ = _transfer(net, a, b, 2_000_000, seed)
    assert net.link("a", "b").stats["queue-full"] > 0
    assert client.stats()["bytes_acked"] >= 2_000_000
    assert client.cc.ssthresh < 1 << 30  # congestion was detected and answered


def test_both_directions_at_once_through_loss():
    seed = 11
    net, a, b = _setup(seed, Link(**HOSTILE), Link(**HOSTILE))
    up = random.Random(1).randbytes(1_000_000)
    down = random.Random(2).randbytes(1_000_000)
    client = a.connect(b, 80)
    net.run_until(lambda: client.state is S.ESTABLISHED and bool(b.accepted))
    server = b.accepted[0]
    net.run_until(lambda: server.state is S.ESTABLISHED)
    a.send(client, up)
    b.send(server, down)
    net.run_until(
        lambda: len(b.received[server]) == len(up) and len(a.received[client]) == len(down),
        timeout=5000,
    )
    assert bytes(b.received[server]) == up, f"seed={seed}"
    assert bytes(a.received[client]) == down, f"seed={seed}"


def test_many_connections_share_one_listening_host():
    seed = 21
    net, a, b = _setup(seed, Link(loss=0.02, delay=0.005), Link(loss=0.02, delay=0.005))
    payloads = {}
    clients = []
    for i in range(50):
        c = a.connect(b, 80)
        clients.append(c)
        payloads[c.local_port] = random.Random(i).randbytes(20_000)
    net.run_until(lambda: all(c.state is S.ESTABLISHED for c in clients))
    for c in clients:
        a.send(c, payloads[c.local_port])
    net.run_until(
        lambda: len(b.accepted) == 50 and all(len(b.received[s]) == 20_000 for s in b.accepted),
        timeout=1000,
    )
    for s in b.accepted:
        assert bytes(b.received[s]) == payloads[s.remote_port], f"seed={seed}"


def test_same_seed_gives_the_same_run():
    def run():
        net, a, b = _setup(7, Link(**HOSTILE), Link(**HOSTILE))
        client, _ = _transfer(net, a, b, 300_000, 7)
        return net.now, client.stats()["retransmits"]

    assert run() == run()


@pytest.mark.parametrize("seed", [21, 22])
def test_transfer_through_heavy_reordering_with_a_tiny_reassembly_cap_arrives_intact(seed):
    # Half the datagrams arrive late and one in twenty is lost, so the receiver would hold
    # several pieces at a time; it may hold one. What it drops was never SACKed, and comes
    # again by retransmission.
    cfg = Config(max_reassembly_pieces=1)
    fwd = Link(delay=0.01, jitter=0.01, reorder=0.5, reorder_delay=0.02, loss=0.05)
    net, a, b = _setup(seed, fwd, Link(delay=0.01), config=cfg)
    _, server = _transfer(net, a, b, 1_000_000, seed)
    st = server.stats()
    assert st["reassembly_dropped"] > 20, f"seed={seed}"
    assert st["out_of_order_segments"] > st["reassembly_dropped"], f"seed={seed}"
