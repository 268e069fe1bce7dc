"""The rules of loss recovery that Linux's TCP follows, checked on the simulated network.

* One congestion response per window of data: losses spread over one window cost one
  reduction, however many there are (RFC 5681 §3.2, RFC 6675 §5, RFC 6582's "recover").
* Proportional Rate Reduction (RFC 6937): during recovery the sender sends ssthresh /
  RecoverFS of what the peer reports delivered, neither falling silent while the flight
  drains (cwnd = ssthresh at once) nor sending more; recovery ends at cwnd = ssthresh.

``matrix.RecoveryWatch`` checks the first rule (and PRR's exit) on every cell of the matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from matrix import RecoveryWatch

from udptcp.core.config import Config
from udptcp.core.connection import Connection
from udptcp.core.seq import seq_diff
from udptcp.tools.simhost import SimHost
from udptcp.tools.simnet import BulkSource, Link, SimNet
from udptcp.tools.simtopo import DropFirstCopy, Flow, bottleneck_link, single_path

RTT = 0.05
MSS = 1440  # the data in a full segment with the timestamp option
CONFIG = Config(receive_buffer=4 << 20)


def _run(size: int, lost: list[int], *, queue: int, seed: int = 1) -> tuple[Flow, DropFirstCopy]:
    """``size`` bytes over 10 Mbit/s, 50 ms, a drop-tail queue of ``queue`` bytes, losing
    the first copy of the segments holding the stream offsets ``lost``."""
    net = SimNet(seed=seed)
    net.record = False
    dropper = DropFirstCopy(lost)
    forward = bottleneck_link(10, RTT / 2, queue=queue)
    forward.drop = dropper
    topo = single_path(net, forward, Link(delay=RTT / 2), config=CONFIG)
    sender, receiver = topo.senders[0], topo.receivers[0]
    client = sender.connect(receiver, 80)
    dropper.track(client)
    flow = Flow(sender, receiver, client, BulkSource(size, seed=size), net.now)
    sender.stream(client, flow.source, then="none")
    flow.watch = RecoveryWatch(sender, client)  # type: ignore[attr-defined]
    flow.prr = _PrrLog(sender, client)  # type: ignore[attr-defined]
    net.run_until(lambda: flow.delivered == size, timeout=120)
    assert flow.intact, f"seed={seed}"
    assert not dropper.pending, "the scripted losses did not all happen"
    return flow, dropper


class _PrrLog:
    """After every ACK the sender takes in recovery: (delivered, sent, ssthresh, RecoverFS,
    pipe, room in the peer's window), counted from observable state since the recovery
    began."""

    def __init__(self, host: SimHost, conn: Connection) -> None:
        self.conn = conn
        self.rows: list[tuple[int, int, int, int, int, int]] = []
        self.exits: list[tuple[int, int]] = []  # (cwnd, ssthresh) when recovery ended
        self._base: tuple[int, int, int, int] | None = None

        def observe(call: Callable[[], object]) -> None:
            c = self.conn
            before = (c.snd_una, c._log.sacked_bytes(), c.stats_counters["bytes_sent"])
            flight, was = c._flight, c._in_recovery
            call()
            if c._in_recovery and not was:
                self._base = (*before, max(flight, MSS))
            elif was and not c._in_recovery:
                self.exits.append((c.cc.cwnd, c.cc.ssthresh))
                self._base = None
            if c._in_recovery and self._base is not None:
                una, sacked, sent, recover_fs = self._base
                delivered = seq_diff(c.snd_una, una) + c._log.sacked_bytes() - sacked
                out = c.stats_counters["bytes_sent"] - sent
                room = c.snd_wnd - c._flight
                self.rows.append((delivered, out, c.cc.ssthresh, recover_fs, c._log.pipe(), room))

        def watched(call: Callable[[], int], now: float, train: int) -> int:
            # One row per train the simulator hands over (as the endpoint does per read);
            # the timers are not watched here, as before.
            if not train:
                return call()
            taken: list[int] = []
            observe(lambda: taken.append(call()))
            return taken[0]

        host.watch(conn, watched)


def test_losses_spread_over_one_window_cost_one_congestion_response():
    # Ten segments lost, a few apart, all in the window in flight when the first is found.
    lost = [(200 + 6 * i) * MSS for i in range(10)]
    flow, dropper = _run(600 * MSS, lost, queue=1 << 20)
    client = flow.client
    st = client.stats()
    assert len(dropper.dropped) == 10
    assert st["sack_recoveries"] == 1, st
    assert st["timeouts"] == 0
    assert flow.watch.responses == 1  # type: ignore[attr-defined]
    assert flow.watch.violations == []  # type: ignore[attr-defined]


def test_prr_spreads_the_reduction_over_the_recovery():
    # One loss in a large window, on a path with room in its queue: the flight drains from
    # RecoverFS to ssthresh while the peer reports a window's worth delivered.
    flow, _ = _run(3000 * MSS, [1500 * MSS], queue=1 << 20)
    log = flow.prr  # type: ignore[attr-defined]
    assert flow.client.stats()["sack_recoveries"] == 1
    rows = log.rows
    assert len(rows) > 20, "too short a recovery to judge"
    for delivered, out, ssthresh, recover_fs, pipe, room in rows:
        share = delivered * ssthresh / recover_fs
        row = f"delivered {delivered}, sent {out}, ssthresh {ssthresh}, RecoverFS {recover_fs}"
        # Never more than ssthresh/RecoverFS of the deliveries (the first retransmission
        # goes out regardless; whole segments round)...
        assert out <= math.ceil(share) + 2 * MSS, row
        # ... and never silent meanwhile (unless the peer's window holds it back): cwnd =
        # ssthresh at once would send nothing until the flight had drained by (1 - beta)
        # of a window.
        if pipe > ssthresh and room >= 2 * MSS:
            assert out >= share - 2 * MSS, row
    assert sum(room >= 2 * MSS for *_, room in rows) > len(rows) // 2, "window-limited"
    delivered, out, *_ = rows[-1]
    assert 0.6 < out / delivered < 0.8  # beta = 0.7 for CUBIC
    assert log.exits == [(log.exits[0][1], log.exits[0][1])]  # ends with cwnd = ssthresh
