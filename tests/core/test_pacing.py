"""Pacing: with Config(pacing=True) a window is spread over the round trip."""

from __future__ import annotations

import random

from udptcp.core.config import Config
from udptcp.core.connection import State
from udptcp.tools.simnet import Link, SimNet


def _send_times(pacing: bool) -> list[float]:
    net = SimNet(seed=4)
    cfg = Config(pacing=pacing, initial_window=40)
    a, b = net.host("a", config=cfg), net.host("b", listening=True, config=cfg)
    net.connect_hosts(a, b, Link(delay=0.05), Link(delay=0.05))
    client = a.connect(b, 80)
    net.run_until(lambda: client.state is State.ESTABLISHED)
    start = len(net.trace)
    a.send(client, random.Random(1).randbytes(40 * 1440))
    net.run_for(0.099)  # less than one round trip: only the first flight
    return [e.time for e in net.trace[start:] if e.sender == "a" and e.segment.payload]


def test_without_pacing_the_initial_window_leaves_at_once():
    times = _send_times(pacing=False)
    assert len(times) == 40 and max(times) - min(times) == 0.0


def test_with_pacing_the_window_is_spread_over_the_round_trip():
    times = _send_times(pacing=True)
    # Slow start paces at 2 x cwnd / SRTT: 40 segments over about half the 100 ms RTT, in
    # bursts of no more than two segments.
    assert len(times) == 40
    assert 0.03 < max(times) - min(times) < 0.07
    assert max(times.count(t) for t in set(times)) <= 2
