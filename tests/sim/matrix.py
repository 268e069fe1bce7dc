"""The simulated-network test matrix (issue 3): cells, the code that runs them, the table.

    python -m tests.sim.matrix [--jobs 2] [--only SUBSTRING] [--no-fairness] [--bench]

prints every cell's figures (``--bench`` only times a 10 MB transfer). ``tests/sim/test_matrix.py`` runs the same cells as tests.

Every cell is a bulk transfer from ``s`` to ``r`` across one impaired bottleneck link
(:func:`udptcp.tools.simtopo.single_path`), seeded, and is checked for:

* integrity (always): the receiver's SHA-256 equals the sender's;
* a virtual-time bound (always): ``VIRTUAL_TIME_BOUND`` below, generous — a stall detector;
* memory (always): bytes in flight never exceed the largest window the receiver offered,
  and the reassembly queue never exceeds the receiver's buffer;
* the rules of loss recovery Linux's TCP follows (always, :class:`RecoveryWatch`: the
  Linux-like reference, as properties): one congestion response per window of data, and
  PRR's recovery ending at cwnd = ssthresh (*resp* counts the responses);
* efficiency, each behind its own switch in :data:`EFFICIENCY_TARGETS_ENFORCED`, turned on
  when the core delivers the feature the target needs.

Figures:

* *goodput*: distinct data bytes per second reaching the receiver from the moment a quarter
  of the transfer had been delivered in order to the last byte, which leaves slow start
  out (every lossless size is at least ~20 bandwidth-delay products). Counting arrivals
  rather than in-order delivery keeps data that sat in the reassembly queue at the start of
  the window out of it;
* *% link*: goodput over the raw link rate (UDP, IP and TCP headers are the difference: about
  4 % with timestamps);
* *Mathis*: ``MSS/RTT × 1.22/√p`` with the forward loss rate ``p`` and RTT the base RTT plus
  one datagram's serialization; *% Mathis* compares goodput with ``min(Mathis, link rate)``,
  since no flow can beat the link;
* *spurious*: retransmissions every byte of which had already reached the receiver intact in
  an earlier copy (from the sender's FlowLog, so link duplication does not count), as a
  share of all data segments sent.

Pruning (the full product would be 4×2 losses × 3 RTTs × 3 rates = 72 cells, minutes): the loss
sweep (0, 1, 5, 15 %, random and bursty) runs at every RTT (1, 50, 200 ms) but only at
10 Mbit/s; the rate sweep (1 and 100 Mbit/s) runs at 50 ms with 0 and 1 % loss, plus 100 Mbit/s
at 1 ms. 100 Mbit/s at 200 ms is left out: its 2.5 MB BDP would need a >50 MB transfer to get
past slow start. The impairment cells (reordering jitter of a quarter RTT, order-preserving
jitter, duplication, corruption, a 1280-byte MTU, everything at once in both directions) run at
10 Mbit/s and 50 ms. Sizes: 24 BDPs for lossless cells, within 2–8 MB (100 Mbit/s at 50 ms
gets 13 BDPs), 3 MB with loss (2 MB at 15 %: still ~200 loss events). The cells take about
25 s of CPU in all; the fairness cells about 3 s each (the NewReno reference cells run only
from the command line).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from udptcp.core import congestion
from udptcp.core.config import Config
from udptcp.core.connection import Connection
from udptcp.core.seq import seq_lt
from udptcp.tools.simhost import SimHost
from udptcp.tools.simnet import GilbertElliott, Link, SimNet, mbit
from udptcp.tools.simtopo import (
    IPV4_UDP_OVERHEAD,
    bdp,
    bottleneck_link,
    jain_index,
    mathis_rate,
    shared_bottleneck,
    single_path,
)

#: One switch per efficiency target. Integrity, the virtual-time bound and the memory bounds
#: are always asserted; these are asserted only once switched on.
EFFICIENCY_TARGETS_ENFORCED: dict[str, bool] = {
    # 0 % loss: goodput >= 90 % of the bottleneck rate once past slow start.
    "zero_loss_goodput": True,
    # Random loss: goodput >= 70 % of the Mathis estimate (capped at the link rate) up to
    # 5 % loss, 60 % at 15 % (where timeouts dominate).
    "mathis": True,
    # 0 % loss with reordering jitter of a quarter RTT: spurious retransmissions < 1 %.
    "spurious_retransmissions": True,
    # Two and four CUBIC flows on a shared bottleneck: Jain's index >= 0.9 (steady state).
    "fairness": True,
    # A NewReno flow beside a CUBIC flow keeps >= 25 % of the bottleneck.
    "newreno_share": True,
    # A tail loss is repaired by a probe well before the RTO would fire.
    "tail_loss_probe": True,
    # Ten consecutive lost segments are repaired within two round trips (SACK).
    "sack_burst_repair": True,
}

#: Cells that still miss an enforced target, and why. Each runs as a strict xfail, so the day
#: the core meets it the test says so.
KNOWN_MISSES: dict[str, str] = {}

ZERO_LOSS_GOODPUT = 0.90  # of the link rate
# Of min(Mathis, link rate). Raised from 0.5 once recovery followed Linux's rules (issue 16),
# and again to what the code reaches since HyStart's ACK-train exit (and with cwnd growing
# only while it bounds the flight): seeds 1-6 reach 74-143 % up to 5 % loss (the least:
# 10M-50ms-rand5%), 62-89 % at 15 %.
MATHIS_SHARE = 0.70
MATHIS_SHARE_HEAVY = 0.6  # at 15 % loss

SPURIOUS_LIMIT = 0.01  # of data segments
JAIN_MIN = 0.9
NEWRENO_SHARE_MIN = 0.25
BURSTY_MEAN_RUN = 4.0  # mean length of a Gilbert–Elliott loss run, datagrams


def enforced(target: str) -> bool:
    return EFFICIENCY_TARGETS_ENFORCED[target]


def cubic_available() -> bool:
    """True once ``udptcp.core.congestion`` knows "cubic"."""
    try:
        congestion.create("cubic", 1440, 10)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One transfer configuration. Impairments apply to the data direction unless named
    ``reverse_*``; ``jitter`` is in seconds."""

    name: str
    rate_mbit: float = 10.0
    rtt: float = 0.05
    loss: float = 0.0
    bursty: bool = False
    jitter: float = 0.0
    preserve_order: bool = False
    duplicate: float = 0.0
    corrupt: float = 0.0
    mtu: int | None = None
    reverse_loss: float = 0.0
    reverse_duplicate: float = 0.0
    reverse_corrupt: float = 0.0
    reverse_jitter: float = 0.0
    size: int = 0  # 0: derived from the path (see ``transfer_size``)
    seed: int = 1
    targets: tuple[str, ...] = ()  # which efficiency targets this cell is judged on

    @property
    def rate(self) -> float:
        return mbit(self.rate_mbit)

    @property
    def kind(self) -> str:
        return "bursty" if self.bursty else "random"


def transfer_size(cell: Cell) -> int:
    if cell.size:
        return cell.size
    if cell.loss >= 0.15:
        return 2_000_000
    if cell.loss > 0:
        return 3_000_000
    return min(max(24 * bdp(cell.rate, cell.rtt), 2_000_000), 8_000_000)


def _grid() -> list[Cell]:
    cells = []
    for rtt in (0.001, 0.05, 0.2):
        ms = round(rtt * 1000)
        cells.append(Cell(f"10M-{ms}ms-clean", rtt=rtt, targets=("zero_loss_goodput",)))
        for loss in (0.01, 0.05, 0.15):
            pct = round(loss * 100)
            cells.append(Cell(f"10M-{ms}ms-rand{pct}%", rtt=rtt, loss=loss, targets=("mathis",)))
            cells.append(Cell(f"10M-{ms}ms-burst{pct}%", rtt=rtt, loss=loss, bursty=True))
    for rate in (1, 100):
        cells.append(Cell(f"{rate}M-50ms-clean", rate_mbit=rate, targets=("zero_loss_goodput",)))
        cells.append(Cell(f"{rate}M-50ms-rand1%", rate_mbit=rate, loss=0.01, targets=("mathis",)))
    cells.append(Cell("100M-1ms-clean", rate_mbit=100, rtt=0.001, targets=("zero_loss_goodput",)))
    cells += [
        Cell("jitter-reorders", jitter=0.05 / 4, targets=("spurious_retransmissions",)),
        Cell("jitter-in-order", jitter=0.05 / 4, preserve_order=True),
        Cell("duplicate-5%", duplicate=0.05, reverse_duplicate=0.05),
        Cell("corrupt-2%", corrupt=0.02, reverse_corrupt=0.01),
        Cell("mtu-1280", mtu=1280),
        Cell(
            "hostile-both-ways",
            loss=0.02,
            duplicate=0.02,
            corrupt=0.01,
            jitter=0.005,
            reverse_loss=0.02,
            reverse_duplicate=0.02,
            reverse_corrupt=0.01,
            reverse_jitter=0.005,
            size=2_000_000,
        ),
    ]
    return cells


CELLS: list[Cell] = _grid()


def virtual_time_bound(cell: Cell, mss: int = 1440) -> float:
    """The virtual seconds a cell may take (the stated bound, always asserted): 10 s + 40
    RTTs + the transfer at a tenth of the rate it could hope for, min(link, Mathis, receive
    buffer / RTT); a twentieth at 15 % loss, where retransmission timeouts dominate."""
    size = transfer_size(cell)
    hope = min(cell.rate, mathis_rate(mss, cell.rtt, cell.loss), Config().receive_buffer / cell.rtt)
    share = 0.05 if cell.loss >= 0.15 else 0.1
    return 10.0 + 40 * cell.rtt + size / (share * hope)


# --------------------------------------------------------------------------- recovery rules


class RecoveryWatch:
    """Checks a sending connection against the rules of loss recovery that Linux's TCP
    follows, on every segment and timer it handles (the Linux-like reference: properties,
    since the kernel itself cannot run in the simulator).

    * One congestion response per window of data (RFC 5681 §3.2, RFC 6675 §5, RFC 6582's
      "recover"): a new SACK recovery starts only for data first sent after the previous
      response (recovery or timeout) began, i.e. the first segment it resends lies at or
      above the previous recovery point.
    * Proportional Rate Reduction (RFC 6937) ends with cwnd = ssthresh, unless D-SACKs
      undid the recovery or a timeout ended it. (How PRR spreads the sending inside a
      recovery is checked where the path keeps it exact: ``test_recovery_rules.py``.)

    ``responses`` counts recoveries and timeout series; ``violations`` lists what broke.
    """

    def __init__(self, host: SimHost, conn: Connection) -> None:
        self.conn = conn
        self.responses = 0
        self.violations: list[str] = []
        self._episode = False  # a recovery is under way

        def watched(call: Callable[[], int], now: float, train: int) -> int:
            # The simulator hands what arrives at one instant over as a train, as the
            # endpoint does with one socket read: the rules are checked after each train
            # (and after each firing of the timers, train 0, checked as one segment).
            taken = 0

            def run() -> None:
                nonlocal taken
                taken = call()

            self._around(run, now, train=max(train, 1))
            return taken

        host.watch(conn, watched)

    def _around(self, call: Callable[[], None], now: float, train: int = 1) -> None:
        """Check the rules across ``call``, which handled ``train`` segments (or a timer).

        Within a train the moment recovery ends is not visible from outside: the ACKs after
        it may already have grown cwnd in congestion avoidance, by less than an MSS each
        (RFC 5681 §3.1), so a train of n allows cwnd up to ssthresh + (n - 1) MSS; one
        segment at a time, cwnd must equal ssthresh exactly."""
        c = self.conn
        counters = c.stats_counters
        recoveries, timeouts = counters["sack_recoveries"], counters["timeouts"]
        recover_off = c._stream_offset(c._recover)
        queued = len(c._out)
        call()
        if counters["timeouts"] > timeouts:
            self._episode = False
            if c._retries == 1:  # the first timeout of a series cuts ssthresh (RFC 5681)
                self.responses += 1
        if counters["sack_recoveries"] > recoveries:
            self.responses += 1
            resent = [s for s in c._out[queued:] if s.payload and seq_lt(s.seq, c.snd_max)]
            if resent and c._stream_offset(resent[0].seq) < recover_off:
                self.violations.append(
                    f"t={now:.3f}: a second response in one window: resent offset "
                    f"{c._stream_offset(resent[0].seq)} < recovery point {recover_off}"
                )
            self._episode = True
            return
        if self._episode and not c._in_recovery:
            self._episode = False
            if c._undo_cwnd is not None and counters["timeouts"] == timeouts:
                excess = c.cc.cwnd - c.cc.ssthresh
                if not 0 <= excess <= (train - 1) * c.cc.mss:
                    self.violations.append(
                        f"t={now:.3f}: recovery ended with cwnd {c.cc.cwnd} != ssthresh "
                        f"{c.cc.ssthresh}"
                        + (f" (+{train - 1} ACKs in its train)" if train > 1 else "")
                    )


# --------------------------------------------------------------------------- running


@dataclass
class CellResult:
    """The figures of one run (rates in bytes per second, times in seconds)."""

    cell: Cell
    size: int
    intact: bool
    finished: bool
    virtual_time: float
    bound: float
    real_time: float
    goodput: float
    link_rate: float
    mathis: float
    mss: int
    data_segments: int
    retransmits: int
    spurious: int
    timeouts: int
    max_flight: int
    max_window: int
    max_reassembly: int
    receive_buffer: int
    responses: int = 0
    rule_violations: tuple[str, ...] = ()
    error: str = ""

    @property
    def link_share(self) -> float:
        return self.goodput / self.link_rate

    @property
    def mathis_share(self) -> float:
        return self.goodput / min(self.mathis, self.link_rate)

    @property
    def mathis_target(self) -> float:
        return MATHIS_SHARE_HEAVY if self.cell.loss >= 0.15 else MATHIS_SHARE

    @property
    def spurious_share(self) -> float:
        return self.spurious / max(self.data_segments, 1)

    def check_always(self) -> list[str]:
        """Failures of the always-on checks (integrity, time bound, memory)."""
        bad = []
        if self.error:
            bad.append(self.error)
        if not self.finished:
            bad.append(f"did not finish within {self.bound:.1f} virtual s")
        elif not self.intact:
            bad.append("SHA-256 of the received bytes differs")
        if self.max_flight > self.max_window:
            bad.append(f"{self.max_flight} bytes in flight > window {self.max_window}")
        if self.max_reassembly > self.receive_buffer:
            bad.append(f"reassembly {self.max_reassembly} > buffer {self.receive_buffer}")
        bad += [f"recovery rule broken: {v}" for v in self.rule_violations[:3]]
        return bad

    def check_targets(self, only_enforced: bool = True) -> dict[str, str | None]:
        """Each efficiency target of the cell: None if met, else why not."""
        out: dict[str, str | None] = {}
        for target in self.cell.targets:
            if only_enforced and not enforced(target):
                continue
            why: str | None = None
            if target == "zero_loss_goodput" and self.link_share < ZERO_LOSS_GOODPUT:
                why = f"goodput {self.link_share:.0%} of the link < {ZERO_LOSS_GOODPUT:.0%}"
            elif target == "mathis" and self.mathis_share < self.mathis_target:
                why = f"goodput {self.mathis_share:.0%} of Mathis < {self.mathis_target:.0%}"
            elif target == "spurious_retransmissions" and self.spurious_share >= SPURIOUS_LIMIT:
                why = f"spurious retransmissions {self.spurious_share:.1%} >= {SPURIOUS_LIMIT:.0%}"
            out[target] = why
        return out

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in row(self).items())


def _links(cell: Cell) -> tuple[Link, Link]:
    forward = bottleneck_link(
        cell.rate_mbit,
        cell.rtt / 2,
        loss=0.0 if cell.bursty else cell.loss,
        bursty=(
            GilbertElliott.from_loss(cell.loss, BURSTY_MEAN_RUN, step_time=1500 / cell.rate)
            if cell.bursty
            else None
        ),
        jitter=cell.jitter,
        preserve_order=cell.preserve_order,
        duplicate=cell.duplicate,
        corrupt=cell.corrupt,
        mtu=cell.mtu,
    )
    reverse = Link(
        delay=cell.rtt / 2,
        loss=cell.reverse_loss,
        duplicate=cell.reverse_duplicate,
        corrupt=cell.reverse_corrupt,
        jitter=cell.reverse_jitter,
        mtu=cell.mtu,
    )
    return forward, reverse


def run_cell(cell: Cell) -> CellResult:
    """Run one cell to completion (or to its time bound) and measure it."""
    started = time.perf_counter()
    size = transfer_size(cell)
    config = Config(max_datagram=cell.mtu) if cell.mtu else Config()
    net = SimNet(seed=cell.seed)
    net.record = False
    forward, reverse = _links(cell)
    topo = single_path(net, forward, reverse, config=config)
    flow = topo.start_flow(0, size)
    watch = RecoveryWatch(flow.sender, flow.client)
    bound = virtual_time_bound(cell)
    error = ""
    try:
        net.run_until(lambda: flow.complete, timeout=bound)
    except AssertionError as exc:
        error = str(exc)
    real = time.perf_counter() - started
    client = flow.client
    st = client.stats()
    mss = int(st["mss"] or config.mss_for(1472))
    sent = flow.sent_log
    got = flow.received_log
    goodput = 0.0
    end = started_at = 0.0
    if got is not None and flow.complete:
        # From the moment a quarter had been delivered in order to the last byte, counting
        # what reached the receiver in that time, in order or not.
        started_at = got.time_delivered(size // 4) or 0.0
        end = got.time_delivered(size) or 0.0
        if end > started_at:
            goodput = (size - sent.arrived_at(started_at)) / (end - started_at)
    link_payload_rtt = cell.rtt + (mss + 60 + IPV4_UDP_OVERHEAD) / cell.rate
    rb = topo.receivers[0].config.receive_buffer
    return CellResult(
        cell=cell,
        size=size,
        intact=flow.intact,
        finished=flow.complete,
        virtual_time=(end or net.now) - flow.started,
        bound=bound,
        real_time=real,
        goodput=goodput,
        link_rate=cell.rate,
        mathis=mathis_rate(mss, link_payload_rtt, forward.mean_loss),
        mss=mss,
        data_segments=len(sent.sent),
        retransmits=len(sent.retransmissions),
        spurious=len(sent.spurious_retransmissions()),
        timeouts=int(st["timeouts"] or 0),
        max_flight=sent.max_flight,
        max_window=sent.max_peer_window,
        max_reassembly=got.max_reassembly if got is not None else 0,
        receive_buffer=rb,
        responses=watch.responses,
        rule_violations=tuple(watch.violations),
        error=error,
    )


# --------------------------------------------------------------------------- fairness


@dataclass(frozen=True)
class FairnessCell:
    """Long-lived flows sharing one bottleneck; shares measured over the steady state."""

    name: str
    algorithms: tuple[str, ...]
    rate_mbit: float = 10.0
    rtt: float = 0.05
    duration: float = 30.0
    warmup: float = 10.0
    seed: int = 1
    target: str = "fairness"  # or "newreno_share"; "" for a reference cell

    @property
    def needs_cubic(self) -> bool:
        return "cubic" in self.algorithms


FAIRNESS_CELLS = [
    FairnessCell("cubic-x2", ("cubic", "cubic")),
    FairnessCell("cubic-x4", ("cubic",) * 4),
    FairnessCell("newreno+cubic", ("newreno", "cubic"), target="newreno_share"),
    FairnessCell("newreno-x2 (reference)", ("newreno", "newreno"), target=""),
    FairnessCell("newreno-x4 (reference)", ("newreno",) * 4, target=""),
]


@dataclass
class FairnessResult:
    cell: FairnessCell
    goodputs: list[float]  # per flow, bytes per second over [warmup, duration]
    link_rate: float
    intact: bool
    real_time: float
    error: str = ""

    @property
    def jain(self) -> float:
        return jain_index(self.goodputs)

    @property
    def utilisation(self) -> float:
        return sum(self.goodputs) / self.link_rate

    @property
    def newreno_share(self) -> float:
        total = sum(self.goodputs)
        mine = sum(g for g, a in zip(self.goodputs, self.cell.algorithms) if a == "newreno")
        return mine / total if total else 0.0

    def check_target(self) -> str | None:
        if self.cell.target == "fairness" and self.jain < JAIN_MIN:
            return f"Jain's index {self.jain:.3f} < {JAIN_MIN}"
        if self.cell.target == "newreno_share" and self.newreno_share < NEWRENO_SHARE_MIN:
            return f"NewReno share {self.newreno_share:.0%} < {NEWRENO_SHARE_MIN:.0%}"
        return None


def run_fairness(cell: FairnessCell) -> FairnessResult:
    """Start every flow (0.1 s apart), run ``duration`` s, then end the streams and let
    them drain so each can be checked end to end."""
    started = time.perf_counter()
    net = SimNet(seed=cell.seed)
    net.record = False
    n = len(cell.algorithms)
    link = bottleneck_link(cell.rate_mbit, cell.rtt / 2)
    configs = [Config(congestion_control=a) for a in cell.algorithms]
    topo = shared_bottleneck(net, n, link, configs=configs)
    big = 1 << 40  # longer than the run: each stream is cut at ``duration``
    for i in range(n):
        topo.start_flow(i, big, low_water=1 << 18)
        net.run_for(0.1)
    net.run_for(cell.duration - net.now)
    goodputs = []
    span = cell.duration - cell.warmup
    for f in topo.flows:
        log = f.sent_log
        goodputs.append((log.arrived_at(cell.duration) - log.arrived_at(cell.warmup)) / span)
        f.source.finish()
    error = ""
    try:
        net.run_until(lambda: all(f.complete for f in topo.flows), timeout=120)
    except AssertionError as exc:
        error = str(exc)
    return FairnessResult(
        cell=cell,
        goodputs=goodputs,
        link_rate=mbit(cell.rate_mbit),
        intact=not error and all(f.intact for f in topo.flows),
        real_time=time.perf_counter() - started,
        error=error,
    )


# --------------------------------------------------------------------------- the table


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if math.isfinite(x) else "-"


def row(r: CellResult) -> dict[str, str]:
    c = r.cell
    return {
        "cell": c.name,
        "rate": f"{c.rate_mbit:g}M",
        "rtt": f"{c.rtt * 1000:g}ms",
        "loss": f"{c.loss:.0%} {c.kind}" if c.loss else "0",
        "size": f"{r.size / 1e6:.1f}MB",
        "goodput": f"{r.goodput * 8 / 1e6:.2f}Mb/s",
        "%link": _pct(r.link_share),
        "%Mathis": _pct(r.mathis_share) if c.loss else "-",
        "retx": str(r.retransmits),
        "spur%": f"{100 * r.spurious_share:.1f}",
        "RTOs": str(r.timeouts),
        "resp": str(r.responses),
        "vtime": f"{r.virtual_time:.1f}s",
        "bound": f"{r.bound:.0f}s",
        "real": f"{r.real_time:.2f}s",
        "flight/wnd": f"{r.max_flight // 1024}K/{r.max_window // 1024}K",
        "reasm/buf": f"{r.max_reassembly // 1024}K/{r.receive_buffer // 1024}K",
        "ok": "yes" if not r.check_always() else "NO",
        "targets": " ".join(
            f"{t}:{'met' if why is None else 'MISSED'}"
            for t, why in r.check_targets(only_enforced=False).items()
        ),
    }


def fairness_row(r: FairnessResult) -> dict[str, str]:
    c = r.cell
    return {
        "cell": c.name,
        "path": f"{c.rate_mbit:g}M {c.rtt * 1000:g}ms",
        "flows (Mb/s)": " ".join(
            f"{a}:{g * 8 / 1e6:.2f}" for a, g in zip(c.algorithms, r.goodputs)
        ),
        "Jain": f"{r.jain:.3f}",
        "util": _pct(r.utilisation),
        "NewReno share": _pct(r.newreno_share) if "newreno" in c.algorithms else "-",
        "intact": "yes" if r.intact else "NO",
        "real": f"{r.real_time:.2f}s",
        "target": (
            "-" if not c.target else f"{c.target}:{'met' if r.check_target() is None else 'MISSED'}"
        ),
    }


def table(rows: Iterable[dict[str, str]]) -> str:
    """A Markdown table of dicts sharing keys."""
    rows = list(rows)
    if not rows:
        return ""
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in keys}
    lines = [
        "| " + " | ".join(k.ljust(widths[k]) for k in keys) + " |",
        "|" + "|".join("-" * (widths[k] + 2) for k in keys) + "|",
    ]
    lines += ["| " + " | ".join(r[k].ljust(widths[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def report(results: list[CellResult], fairness: list[FairnessResult]) -> str:
    parts = []
    if results:
        parts.append(table(row(r) for r in results))
        parts.append(
            f"{len(results)} cells, {sum(r.real_time for r in results):.1f} s real in total"
        )
    if fairness:
        parts.append(table(fairness_row(r) for r in fairness))
    switches = ", ".join(
        f"{k}={'on' if v else 'off'}" for k, v in EFFICIENCY_TARGETS_ENFORCED.items()
    )
    parts.append(f"efficiency targets enforced: {switches}")
    return "\n\n".join(parts)


#: Results of the cells run in this process (the pytest run fills it for the summary).
RESULTS: list[CellResult] = []
FAIRNESS_RESULTS: list[FairnessResult] = []


def _run_any(cell: Cell | FairnessCell) -> CellResult | FairnessResult | None:
    if isinstance(cell, FairnessCell):
        if cell.needs_cubic and not cubic_available():
            return None
        return run_fairness(cell)
    return run_cell(cell)


def bench(size: int = 10_000_000, repeat: int = 3) -> str:
    """Real seconds for ``size`` bytes over 10 Mbit/s with a 50 ms RTT (issue 3 asks for
    10 MB in well under a second); the median of ``repeat`` runs. Not asserted anywhere."""
    times = []
    for i in range(repeat):
        net = SimNet(seed=i + 1)
        net.record = False
        topo = single_path(net, bottleneck_link(10, 0.025))
        started = time.perf_counter()
        flow = topo.start_flow(0, size)
        net.run_until(lambda f=flow: f.complete, timeout=600)  # type: ignore[misc]
        times.append((time.perf_counter() - started, net.now, flow.intact))
    times.sort()
    real, virtual, intact = times[len(times) // 2]
    return (
        f"{size / 1e6:g} MB over 10 Mbit/s, 50 ms RTT: {real:.2f} s real (median of {repeat}),"
        f" {virtual:.1f} s virtual, intact={intact}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--only", default="", help="run cells whose name contains this")
    parser.add_argument("--no-fairness", action="store_true")
    parser.add_argument("--bench", action="store_true", help="only time a 10 MB transfer")
    args = parser.parse_args(argv)
    if args.bench:
        print(bench())
        return 0
    todo: list[Cell | FairnessCell] = [c for c in CELLS if args.only in c.name]
    if not args.no_fairness:
        todo += [c for c in FAIRNESS_CELLS if args.only in c.name]
    started = time.perf_counter()
    if args.jobs > 1:
        import multiprocessing

        with multiprocessing.Pool(args.jobs) as pool:
            done = pool.map(_run_any, todo, chunksize=1)
    else:
        done = [_run_any(c) for c in todo]
    results = [r for r in done if isinstance(r, CellResult)]
    fairness = [r for r in done if isinstance(r, FairnessResult)]
    print(report(results, fairness))
    skipped = [c.name for c, r in zip(todo, done) if r is None]
    if skipped:
        print(f"skipped (no 'cubic' in udptcp.core.congestion yet): {', '.join(skipped)}")
    print(f"wall time {time.perf_counter() - started:.1f} s with {args.jobs} job(s)")
    failed = [r.cell.name for r in results if r.check_always()]
    failed += [r.cell.name for r in fairness if not r.intact]
    if failed:
        print(f"ALWAYS-ON CHECKS FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
