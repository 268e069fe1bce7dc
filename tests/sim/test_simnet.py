"""The simulator itself: link model, routes, topologies, logs, determinism.

Raw datagrams are pushed with ``SimNet.transmit`` and caught at the far host, so each test
sees exactly what the link did, with no TCP in the way.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from udptcp.core.config import Config
from udptcp.core.connection import State
from udptcp.core.segment import ACK, FIN, RST, SYN, MalformedSegment, Segment, decode
from udptcp.tools.simnet import BulkSource, GilbertElliott, Link, SimNet, mbit
from udptcp.tools.simtopo import (
    DropFirstCopy,
    bottleneck_link,
    jain_index,
    mathis_rate,
    shared_bottleneck,
    single_path,
)

S = State


def _segment(i: int, size: int = 1000) -> Segment:
    """A datagram of exactly ``size`` bytes (20-byte header + payload) numbered ``i``."""
    return Segment(1, 2, i, 0, ACK, 1000, None, bytes(size - 20))


def _blast(link: Link, n: int, spacing: float = 0.0, seed: int = 1, size: int = 1000):
    """Send ``n`` datagrams ``spacing`` apart over ``link``; (net, [(arrival, number)])."""
    net = SimNet(seed=seed)
    a, b = net.host("a"), net.host("b")
    net.connect_hosts(a, b, link, Link())
    arrivals: list[tuple[float, int]] = []
    b.datagram_received = lambda src, data: arrivals.append((net.now, decode(data).seq))  # type: ignore[method-assign]

    def send(i: int) -> Callable[[], None]:
        return lambda: net.transmit(a, "b", _segment(i, size))

    for i in range(n):
        net.call_at(i * spacing, send(i))
    net.run_for(n * spacing + 10.0)
    return net, arrivals


# -- the drop-tail queue and the serializer ---------------------------------------------


def test_rate_limited_link_serializes_each_datagram_and_drops_beyond_the_queue():
    link = Link(rate=1_000_000, delay=0.01, queue_limit=3)
    net, arrivals = _blast(link, 10)
    # One is serialized at once, three wait; the other six find the queue full.
    assert [n for _, n in arrivals] == [0, 1, 2, 3]
    assert [round(t, 6) for t, _ in arrivals] == [0.011, 0.012, 0.013, 0.014]
    assert link.stats["queue-full"] == 6 and link.stats["max_queue"] == 3
    assert [e.fate for e in net.trace].count("queue-full") == 6


def test_queue_limit_in_bytes_and_per_datagram_overhead():
    link = Link(rate=1_000_000, delay=0.0, queue_limit=1000, queue_bytes=4000, overhead=1000)
    _, arrivals = _blast(link, 10)
    # Each datagram costs 2000 bytes of link time and of queue: one on the wire, two waiting.
    assert [round(t, 6) for t, _ in arrivals] == [0.002, 0.004, 0.006]
    assert link.stats["max_queue_bytes"] == 4000


def test_the_queue_drains_at_the_link_rate():
    link = Link(rate=1_000_000, delay=0.0, queue_limit=2)
    _, arrivals = _blast(link, 20, spacing=0.0008)  # offered faster than the 1 ms service
    assert len(arrivals) < 20
    gaps = [b - a for (a, _), (b, _) in zip(arrivals, arrivals[1:])]
    assert min(gaps) == pytest.approx(0.001)


# -- the wire ------------------------------------------------------------------------------


def test_random_loss_rate():
    link = Link(loss=0.2)
    _, arrivals = _blast(link, 5000, spacing=0.001)
    assert 0.18 < 1 - len(arrivals) / 5000 < 0.22
    assert link.stats["lost"] == 5000 - len(arrivals)


def _loss_runs(n: int, arrivals: list[tuple[float, int]]) -> list[int]:
    got = {i for _, i in arrivals}
    runs, run = [], 0
    for i in range(n):
        if i in got:
            if run:
                runs.append(run)
            run = 0
        else:
            run += 1
    return runs


def test_gilbert_elliott_loss_comes_in_bursts_of_the_requested_length():
    ge = GilbertElliott.from_loss(0.1, burst=5)
    assert ge.mean_loss == pytest.approx(0.1)
    n = 20000
    _, arrivals = _blast(Link(burst=ge), n, spacing=0.001)
    assert 0.085 < 1 - len(arrivals) / n < 0.115
    runs = _loss_runs(n, arrivals)
    assert 4.3 < sum(runs) / len(runs) < 5.7


def test_gilbert_elliott_with_a_step_time_forgets_its_state_between_sparse_datagrams():
    # Datagrams 1 s apart, the chain stepping every millisecond: each one sees the
    # stationary loss rate on its own, so runs are as short as independent loss gives.
    ge = GilbertElliott.from_loss(0.1, burst=5, step_time=0.001)
    n = 5000
    _, arrivals = _blast(Link(burst=ge), n, spacing=1.0)
    assert 0.08 < 1 - len(arrivals) / n < 0.12
    runs = _loss_runs(n, arrivals)
    assert sum(runs) / len(runs) < 1.3


def test_gilbert_elliott_is_per_link_and_seeded():
    def lost(seed: int) -> list[int]:
        _, arrivals = _blast(Link(burst=GilbertElliott.from_loss(0.2, 3)), 500, 0.001, seed)
        return sorted(set(range(500)) - {i for _, i in arrivals})

    assert lost(1) == lost(1)
    assert lost(1) != lost(2)


def test_jitter_reorders_unless_the_link_preserves_order():
    _, mixed = _blast(Link(delay=0.01, jitter=0.02), 300, spacing=0.001)
    order = [i for _, i in mixed]
    assert order != sorted(order)
    link = Link(delay=0.01, jitter=0.02, preserve_order=True)
    _, kept = _blast(link, 300, spacing=0.001)
    assert [i for _, i in kept] == list(range(300))
    delays = [t - i * 0.001 for t, i in kept]
    assert min(delays) >= 0.01 and max(delays) > 0.02  # still jittered, just in order


def test_duplication_corruption_mtu_and_scripted_drops():
    _, twice = _blast(Link(duplicate=1.0), 10)
    assert sorted(i for _, i in twice) == sorted(list(range(10)) * 2)

    net = SimNet(seed=3)
    a, b = net.host("a"), net.host("b")
    net.connect_hosts(a, b, Link(corrupt=1.0), Link())
    for i in range(20):
        net.transmit(a, "b", _segment(i))
    net.run_for(1.0)
    assert b.malformed == 20  # a single flipped bit always fails the checksum

    big = Link(mtu=999)
    net, arrivals = _blast(big, 5)
    assert not arrivals and big.stats["too-big"] == 5

    odd = Link(drop=lambda seg: seg.seq % 2 == 0)
    net, arrivals = _blast(odd, 10)
    assert [i for _, i in arrivals] == [1, 3, 5, 7, 9]
    assert [e.fate for e in net.trace if e.sender == "a"].count("dropped") == 5


# -- routes --------------------------------------------------------------------------------


def test_a_route_crosses_its_links_in_order_and_a_shared_link_is_one_queue():
    net = SimNet(seed=1)
    a1, a2, b = net.host("a1"), net.host("a2"), net.host("b")
    shared = Link(rate=1_000_000, delay=0.02, queue_limit=1, name="shared")
    net.add_route(a1, b, [Link(delay=0.01), shared])
    net.add_route(a2, b, [Link(delay=0.01), shared])
    net.add_route(b, a1, [Link()])
    net.add_route(b, a2, [Link()])
    arrivals: list[tuple[float, str]] = []
    b.datagram_received = lambda src, data: arrivals.append((net.now, src))  # type: ignore[method-assign]
    for i in range(3):
        net.transmit(a1, "b", _segment(i))
        net.transmit(a2, "b", _segment(i))
    net.run_for(1.0)
    # Six reach the shared queue at t = 0.01: one is serialized, one waits, four drop.
    assert [(round(t, 6), s) for t, s in arrivals] == [(0.031, "a1"), (0.032, "a2")]
    assert shared.stats["queue-full"] == 4
    assert net.route("a1", "b")[1] is shared
    with pytest.raises(ValueError):
        net.link("a1", "b")


def test_one_link_object_given_for_both_directions_becomes_two_queues():
    net = SimNet(seed=1)
    a, b = net.host("a"), net.host("b", listening=True)
    link = Link(rate=mbit(10), delay=0.005)
    net.connect_hosts(a, b, link, link)
    assert net.link("a", "b") is link and net.link("b", "a") is not link
    client = a.connect(b, 80)
    net.run_until(lambda: client.state is S.ESTABLISHED)


# -- hosts, flows and logs -------------------------------------------------------------------


def _single(seed: int = 1, forward: Link | None = None, reverse: Link | None = None):
    net = SimNet(seed=seed)
    net.record = False
    topo = single_path(net, forward or Link(rate=mbit(10), delay=0.025), reverse)
    return net, topo


def test_a_streamed_transfer_arrives_intact_and_its_time_series_add_up():
    net, topo = _single()
    flow = topo.start_flow(0, 1_000_000)
    net.run_until(lambda: flow.complete, timeout=60)
    assert flow.intact
    got, sent = flow.received_log, flow.sent_log
    assert got is not None
    end = got.time_delivered(1_000_000)
    assert end is not None and got.delivered_at(end) == 1_000_000
    assert sent.arrived_at(end) == 1_000_000
    assert 0 < got.goodput(0, end) <= mbit(10)
    net.run_for(1.0)  # the last ACKs come back
    assert sent.acked and sent.acked[-1].offset >= 1_000_000
    assert not sent.retransmissions and not sent.drops
    assert all(c == 1 for c in sent.copies)
    assert sent.max_flight <= sent.max_peer_window


def test_the_flow_log_tells_a_needed_retransmission_from_a_spurious_one():
    dropper = DropFirstCopy([100_000])
    net, topo = _single(forward=Link(rate=mbit(10), delay=0.025, drop=dropper))
    flow = topo.start_flow(0, 300_000)
    dropper.track(flow.client)
    net.run_until(lambda: flow.complete, timeout=60)
    assert flow.intact
    log = flow.sent_log
    (drop,) = log.drops
    lost = log.sent[drop.transmission]
    assert drop.fate == "dropped" and lost.offset <= 100_000 < lost.end
    assert not lost.retransmission and log.copies[drop.transmission] == 0
    assert [t.offset for t in log.retransmissions] == [lost.offset]
    assert log.spurious_retransmissions() == []


def test_retransmissions_of_data_that_had_arrived_are_spurious():
    # Every ACK is lost for a while: the sender times out and sends again what the
    # receiver already holds.
    net = SimNet(seed=2)
    net.record = False
    blackout = Link(delay=0.025, drop=lambda seg: 0.3 < net.now < 1.5)
    topo = single_path(net, Link(rate=mbit(10), delay=0.025), blackout)
    flow = topo.start_flow(0, 2_000_000)
    net.run_until(lambda: flow.complete, timeout=60)
    assert flow.intact
    spurious = flow.sent_log.spurious_retransmissions()
    assert spurious and set(spurious) <= set(flow.sent_log.retransmissions)
    assert int(flow.client.stats()["timeouts"] or 0) >= 1


def test_direct_calls_on_a_connection_are_picked_up_by_the_next_run():
    net = SimNet(seed=1)
    a, b = net.host("a", config=Config(delayed_ack=0.0)), net.host("b", listening=True)
    net.connect_hosts(a, b, Link(delay=0.01), Link(delay=0.01))
    client = a.connect(b, 80)
    net.run_until(lambda: client.state is S.ESTABLISHED and bool(b.accepted))
    net.run_for(1.0)
    client.send(b"hello", net.now)  # not through the host: nothing flushed yet
    start = net.now
    net.run_until(lambda: bytes(b.received[b.accepted[0]]) == b"hello")
    assert net.now - start < 0.05


def test_a_host_that_does_not_retain_still_hashes_and_counts():
    net = SimNet(seed=1)
    a, b = net.host("a"), net.host("b", listening=True, retain=False)
    net.connect_hosts(a, b, Link(delay=0.01), Link(delay=0.01))
    client = a.connect(b, 80)
    source = BulkSource(200_000, seed=9)
    a.stream(client, source)
    net.run_until(lambda: bool(b.accepted) and b.got_eof(b.accepted[0]))
    server = b.accepted[0]
    assert b.received[server] == bytearray() and b.delivered(server) == 200_000
    assert b.flows[server].sha256.digest() == source.sha256.digest()


# -- the shared bottleneck -----------------------------------------------------------------


@pytest.mark.parametrize("per_flow", [False, True])
def test_flows_across_a_shared_bottleneck_all_arrive_and_share_it(per_flow):
    net = SimNet(seed=5)
    net.record = False
    link = bottleneck_link(10, 0.02)
    topo = shared_bottleneck(
        net, 3, link, access_delays=[0.0, 0.005, 0.01], receiver_per_flow=per_flow
    )
    flows = [topo.start_flow(i, 600_000) for i in range(3)]
    net.run_until(lambda: all(f.complete for f in flows), timeout=120)
    assert all(f.intact for f in flows)
    assert link.stats["offered"] > 3 * 600_000 // 1500
    assert len({f.server for f in flows}) == 3
    # While all three were running, each got a real share of the link.
    ends = [f.received_log.time_delivered(600_000) for f in flows if f.received_log]
    end = min(t for t in ends if t is not None)
    shares = [f.sent_log.arrived_at(end) for f in flows]
    assert jain_index(shares) > 0.6


def test_the_same_seed_gives_the_same_shared_bottleneck_run():
    def run(seed: int) -> list[tuple[float, int, bool]]:
        net = SimNet(seed=seed)
        net.record = False
        link = bottleneck_link(10, 0.02, bursty=GilbertElliott.from_loss(0.02, 3), jitter=0.004)
        topo = shared_bottleneck(net, 2, link)
        flows = [topo.start_flow(i, 300_000) for i in range(2)]
        net.run_until(lambda: all(f.complete for f in flows), timeout=300)
        return [(t.time, t.offset, t.retransmission) for f in flows for t in f.sent_log.sent]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_figures():
    assert jain_index([1, 1, 1, 1]) == pytest.approx(1.0)
    assert jain_index([1, 0]) == pytest.approx(0.5)
    assert mathis_rate(1000, 0.1, 0.01) == pytest.approx(1000 / 0.1 * 12.2)
    assert mathis_rate(1000, 0.1, 0.0) == float("inf")


def test_a_duplicate_is_corrupted_independently_of_its_original():
    net = SimNet(seed=1)
    a, b = net.host("a"), net.host("b")
    link = Link(duplicate=1.0, corrupt=0.5)
    net.connect_hosts(a, b, link, Link())
    good: list[int] = []
    real = b.datagram_received

    def catch(src: str, data: bytes) -> None:
        try:
            good.append(decode(data).seq)
        except MalformedSegment:
            real(src, data)

    b.datagram_received = catch  # type: ignore[method-assign]
    for i in range(200):
        net.transmit(a, "b", _segment(i))
    net.run_for(1.0)
    # Each of the 400 copies is corrupted with probability 1/2, on its own.
    assert 150 < len(good) < 250 and 150 < b.malformed < 250
    assert len(good) + b.malformed == 400


# ---------------------------------------------------------------------- the endpoint's rules


def test_what_arrives_at_one_instant_reaches_the_connection_as_one_train():
    net = SimNet(seed=1)
    cfg = Config(pacing=False, delayed_ack=0.0)
    a, b = net.host("a", config=cfg), net.host("b", listening=True, config=cfg)
    net.connect_hosts(a, b, Link(delay=0.01), Link(delay=0.01))  # no rate: bursts stay bursts
    client = a.connect(b, 80)
    net.run_until(lambda: client.state is S.ESTABLISHED and bool(b.accepted))
    net.run_for(0.1)
    server = b.accepted[0]
    calls: list[int] = []

    def spy(call: Callable[[], int], now: float, train: int) -> int:
        if train:
            calls.append(train)
        return call()

    b.watch(server, spy)
    trains_before, segments_before = b.trains, b.train_segments
    a.send(client, bytes(10 * 1000))  # ten segments of the initial window, sent at once
    net.run_for(0.1)
    assert bytes(b.received[server]) == bytes(10 * 1000)
    data_segments = sum(1 for e in net.trace if e.sender == "a" and e.segment.payload)
    assert data_segments >= 2  # several segments...
    assert calls == [data_segments]  # ...handed over in one receive_many call
    assert (b.trains - trains_before, b.train_segments - segments_before) == (1, data_segments)


def test_a_host_drops_syn_fin_and_resets_closed_ports_as_the_endpoint_does():
    net = SimNet(seed=1)
    a, b = net.host("a"), net.host("b")  # b listens on nothing
    net.connect_hosts(a, b, Link(delay=0.01), Link(delay=0.01))
    net.transmit(a, "b", Segment(5000, 80, 1, 0, SYN | FIN, 1000))
    net.transmit(a, "b", Segment(5000, 81, 7, 0, SYN, 1000))
    net.run_for(0.1)
    assert b.syn_fin_dropped == 1
    (rst,) = [e.segment for e in net.trace if e.sender == "b"]
    assert (rst.flags, rst.dst_port, rst.ack) == (RST | ACK, 5000, 8)  # for the plain SYN only
