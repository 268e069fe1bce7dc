"""Loss repair timing, read from the simulator's per-flow event log.

Whether the data arrives intact is always asserted; how fast it is repaired only once the
matching switch in ``matrix.EFFICIENCY_TARGETS_ENFORCED`` is on.
"""

from __future__ import annotations

from matrix import enforced

from udptcp.tools.simnet import BulkSource, Link, SimNet
from udptcp.tools.simtopo import DropFirstCopy, Flow, single_path

RTT = 0.05
MSS = 1440  # the data in a full segment with the timestamp option


def _run(size: int, lost: list[int], seed: int = 1) -> tuple[SimNet, Flow, DropFirstCopy]:
    """Send ``size`` bytes over an unqueued 50 ms path, losing the first copy of the
    segments holding the stream offsets ``lost``; the stream stays open (no FIN)."""
    net = SimNet(seed=seed)
    net.record = False
    dropper = DropFirstCopy(lost)
    topo = single_path(net, Link(delay=RTT / 2, drop=dropper), Link(delay=RTT / 2))
    sender, receiver = topo.senders[0], topo.receivers[0]
    client = sender.connect(receiver, 80)
    dropper.track(client)
    flow = Flow(sender, receiver, client, BulkSource(size, seed=size), net.now)
    sender.stream(client, flow.source, then="none")
    net.run_until(lambda: flow.delivered == size, timeout=60)
    assert flow.intact, f"seed={seed}"
    assert not dropper.pending, "the scripted losses did not all happen"
    return net, flow, dropper


def test_a_tail_loss_is_repaired_by_a_probe_before_the_rto():
    size = 40 * MSS
    net, flow, dropper = _run(size, [size - 1, size - 1 - MSS])
    log = flow.sent_log
    lost = dropper.dropped
    first_repair = min(
        t for t in log.retransmissions if any(t.offset < e and s < t.end for s, e in lost)
    )
    # The retransmission timer restarts at each advance of SND.UNA; the last advance
    # before the repair set the deadline the probe has to beat.
    ack = log.acked_before(first_repair.time)
    assert ack is not None
    waited = first_repair.time - ack.time
    figures = f"repair {waited * 1000:.0f} ms after the last ACK; RTO {ack.rto * 1000:.0f} ms"
    print(figures)
    if enforced("tail_loss_probe"):
        assert waited <= 0.75 * ack.rto, figures


def test_ten_lost_segments_in_a_row_are_repaired_within_two_round_trips():
    size = 300 * MSS
    burst = [(100 + i) * MSS for i in range(10)]
    net, flow, dropper = _run(size, burst)
    log = flow.sent_log
    got = flow.received_log
    assert got is not None and len(dropper.dropped) == 10
    hole_start = min(s for s, _ in dropper.dropped)
    hole_end = max(e for _, e in dropper.dropped)
    detected = min(t.time for t in log.retransmissions if hole_start <= t.offset < hole_end)
    repaired = got.time_delivered(hole_end)
    assert repaired is not None
    took = repaired - detected
    figures = f"burst repaired {took * 1000:.0f} ms ({took / RTT:.1f} RTT) after detection"
    print(figures)
    if enforced("sack_burst_repair"):
        assert took <= 2 * RTT, figures
