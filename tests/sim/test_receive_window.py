"""The receive window and the congestion window on a long, fast path: auto-tuning keeps the
window ahead of a slow-starting sender, and a sender the window holds back does not grow cwnd.

The receiver offers a window that grows with what its application consumes per round trip.
A sender in slow start doubles every round trip and uses the window offered now a round
later, so the window must grow faster than twice the last round or the sender is held back
(~1.6x per round instead of 2x) until the window reaches ``Config.receive_buffer``.
"""

from __future__ import annotations

from udptcp.core.config import Config
from udptcp.tools.simnet import Link, SimNet
from udptcp.tools.simtopo import bottleneck_link, single_path

RTT = 0.1
BUFFER = 1 << 20


def test_the_offered_window_stays_ahead_of_slow_start_until_the_buffer_limit() -> None:
    seed = 1
    net = SimNet(seed=seed)
    net.record = False
    # 200 Mbit/s x 100 ms: a 2.5 MB path, more than the 1 MiB buffer can fill.
    config = Config(receive_buffer=BUFFER)
    topo = single_path(net, bottleneck_link(200, RTT / 2), Link(delay=RTT / 2), config=config)
    flow = topo.start_flow(0, 6_000_000)
    held_back: list[tuple[float, int, int]] = []  # (t, cwnd, window) while rwnd-limited
    reached = None
    t = flow.started
    while reached is None and not flow.complete:
        t += 0.005
        net.run_until(lambda until=t: net.now >= until, timeout=30)
        st = flow.client.stats()
        cwnd, wnd, flight = int(st["cwnd"] or 0), int(st["snd_wnd"] or 0), st["bytes_in_flight"]
        if not wnd:
            continue  # the handshake
        if wnd >= BUFFER:
            reached = net.now - flow.started
        elif cwnd > wnd and wnd - int(flight or 0) < int(st["mss"] or 1440):
            held_back.append((round(net.now - flow.started, 3), cwnd, wnd))
    assert reached is not None, f"seed={seed}: the window never reached the buffer limit"
    # 10 segments doubling per 100 ms round pass 1 MiB (728 segments) in about 6.2 rounds,
    # plus the handshake's round.
    assert reached < 8.5 * RTT, f"seed={seed}: window at the limit only after {reached:.2f} s"
    assert not held_back, f"seed={seed}: slow start held back by the window at {held_back[:5]}"


def test_cwnd_does_not_grow_past_twice_what_the_peers_window_lets_out() -> None:
    # RFC 9438 §5.8: a sender held by the receiver's window does not grow cwnd, or a loss
    # would cut a window it never uses. 256 KiB on a 625 KB (100 Mbit/s x 50 ms) path.
    seed = 1
    buffer = 256 * 1024
    net = SimNet(seed=seed)
    net.record = False
    receiver_config = Config(receive_buffer=buffer)
    topo = single_path(
        net,
        bottleneck_link(100, 0.025),
        Link(delay=0.025),
        config=Config(),
        receiver_config=receiver_config,
    )
    flow = topo.start_flow(0, 8_000_000)
    largest_cwnd = largest_flight = 0
    t = flow.started
    while not flow.complete:
        t += 0.01
        net.run_until(lambda until=t: net.now >= until or flow.complete, timeout=30)
        st = flow.client.stats()
        largest_cwnd = max(largest_cwnd, int(st["cwnd"] or 0))
        largest_flight = max(largest_flight, int(st["bytes_in_flight"] or 0))
    assert flow.intact, f"seed={seed}"
    assert largest_flight <= buffer, f"seed={seed}: {largest_flight} in flight"
    # Slow start may reach twice the largest flight of a window, and no further.
    assert largest_cwnd <= 2 * buffer, f"seed={seed}: cwnd grew to {largest_cwnd}"
