"""A receiver that stops reading for 30 virtual seconds: nothing is lost, and the sender's
persist probes are on the wire at growing intervals (issue 3 acceptance)."""

from __future__ import annotations

import random

from udptcp.core.config import Config
from udptcp.core.connection import State
from udptcp.tools.simnet import Link, SimNet

S = State


def test_a_thirty_second_stall_loses_nothing_and_is_probed_at_persist_intervals():
    net = SimNet(seed=8)
    cfg = Config(receive_buffer=65535)  # a small buffer, so the stall shuts the window soon
    a, b = net.host("a", config=cfg), net.host("b", listening=True, config=cfg)
    net.connect_hosts(a, b, Link(delay=0.02), Link(delay=0.02))
    client = a.connect(b, 80)
    net.run_until(lambda: client.state is S.ESTABLISHED and bool(b.accepted))
    server = b.accepted[0]
    server.pause_reading()
    data = random.Random(8).randbytes(1_000_000)
    a.send(client, data)
    net.run_until(lambda: client.snd_wnd == 0 and client.snd_una == client.snd_max)
    stalled_at = net.now
    mark = len(net.trace)
    net.run_for(30.0)
    # Window probes: an already-acknowledged sequence number, no data, from the sender.
    probes = [
        e.time
        for e in net.trace[mark:]
        if e.sender == "a"
        and not e.segment.payload
        and e.segment.seq == (client.snd_una - 1) & 0xFFFFFFFF
    ]
    assert len(probes) >= 3
    gaps = [b - a for a, b in zip(probes, probes[1:])]
    assert all(later >= earlier for earlier, later in zip(gaps, gaps[1:]))  # backing off
    assert probes[-1] - stalled_at <= 30.0
    assert client.state is S.ESTABLISHED and server.state is S.ESTABLISHED
    assert client.stats()["window_probes"] == len(probes)
    # The reader comes back: everything arrives, in order, exactly once.
    server.resume_reading(net.now)
    b.flush("a", server)
    net.run_until(lambda: len(b.received[server]) == len(data), timeout=120)
    assert bytes(b.received[server]) == data
    assert client.stats()["timeouts"] == 0
