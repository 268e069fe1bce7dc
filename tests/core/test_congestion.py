"""Congestion control algorithms driven directly with a synthetic ACK clock."""

from __future__ import annotations

import pytest

from udptcp.core.congestion import Cubic, NewReno, create

MSS = 1000


def _rounds_to_regain(cc, w_max_bytes: int, rtt: float = 0.1, limit: int = 2000) -> list[int]:
    """After a loss, ACK one window per RTT; return cwnd (in segments) at each round."""
    cc.srtt = rtt
    now = 0.0
    trace = []
    for _ in range(limit):
        for _ in range(cc.cwnd // MSS):
            cc.on_ack(MSS, cc.cwnd, now)
        now += rtt
        trace.append(cc.cwnd // MSS)
        if cc.cwnd >= 0.95 * w_max_bytes:
            break
    return trace


def _after_loss(cc, segments: int):
    cc.cwnd = segments * MSS
    cc.ssthresh = cc.cwnd  # in congestion avoidance
    cc.on_loss(cc.cwnd, 0.0)
    cc.on_recovery_end(cc.ssthresh, 0.0)


def test_cubic_backs_off_by_beta_and_newreno_by_half():
    cubic, reno = Cubic(MSS, 10), NewReno(MSS, 10)
    _after_loss(cubic, 1000)
    _after_loss(reno, 1000)
    assert cubic.ssthresh == 700 * MSS and cubic.cwnd == 700 * MSS  # RFC 9438 §4.6
    assert reno.ssthresh == 500 * MSS


def test_cubic_regains_a_large_window_far_sooner_than_newreno():
    cubic, reno = Cubic(MSS, 10), NewReno(MSS, 10)
    _after_loss(cubic, 1000)
    _after_loss(reno, 1000)
    cubic_rounds = _rounds_to_regain(cubic, 1000 * MSS)
    reno_rounds = _rounds_to_regain(reno, 1000 * MSS)
    assert len(reno_rounds) > 250  # one segment per RTT from 500 to 950
    # K = cbrt(W_max (1 - beta) / C) = cbrt(750) = 9.1 s = 91 rounds of 100 ms.
    assert len(cubic_rounds) < 100


def test_cubic_growth_is_concave_below_the_old_maximum_and_convex_beyond():
    cubic = Cubic(MSS, 10)
    _after_loss(cubic, 1000)
    trace = _rounds_to_regain(cubic, 1600 * MSS)
    steps = [b - a for a, b in zip(trace, trace[1:])]
    plateau = next(i for i, w in enumerate(trace) if w >= 990)
    assert steps[2] > steps[plateau - 2] >= 0  # slowing down towards W_max
    assert steps[-1] > steps[plateau]  # speeding up again past it (probing)


def test_cubic_fast_convergence_lowers_the_plateau_after_a_smaller_loss():
    cubic = Cubic(MSS, 10)
    _after_loss(cubic, 1000)
    cubic.cwnd = 800 * MSS
    cubic.on_loss(cubic.cwnd, 1.0)  # a loss below the previous maximum
    assert cubic._w_max == pytest.approx(800 * (1 + 0.7) / 2)  # RFC 9438 §4.7


def test_timeout_drops_to_one_segment_for_both():
    for name in ("cubic", "newreno"):
        cc = create(name, MSS, 10)
        cc.cwnd = 100 * MSS
        cc.on_timeout(cc.cwnd, 0.0)
        assert cc.cwnd == MSS and cc.ssthresh >= 2 * MSS


def test_a_stretch_ack_counts_as_the_delayed_acks_it_stands_for() -> None:
    from udptcp.core.congestion import slow_start

    mss = 1000
    # An ordinary delayed ACK (two segments) grows the window by two: doubling per round
    # trip (RFC 3465, L = 2 SMSS), as Linux's slow start does.
    assert slow_start(10_000, 100_000, 2 * mss, mss) == 12_000
    assert slow_start(10_000, 100_000, mss, mss) == 11_000
    assert slow_start(10_000, 100_000, 300, mss) == 10_300
    # One ACK for a train of 20 segments: the 10 delayed ACKs it replaces, 2 MSS each.
    assert slow_start(10_000, 100_000, 20 * mss, mss) == 30_000
    assert slow_start(10_000, 15_000, 20 * mss, mss) == 15_000  # never past ssthresh


def _slow_start_rounds(cc, rtts, per_ack: int = 2):
    """Drive slow start round by round: each round ACKs the whole window ``per_ack``
    segments at a time, each ACK carrying an RTT sample from ``rtts`` (one value per
    round); return cwnd in segments after each round."""
    out = []
    for rtt in rtts:
        window = cc.cwnd
        acked = 0
        while acked < window:
            step = min(per_ack * MSS, window - acked)
            acked += step
            cc.on_rtt_sample(rtt, rtt)
            cc.on_ack(step, window - acked + cc.cwnd - window, 0.0)
        out.append(cc.cwnd // MSS)
        if cc.cwnd >= cc.ssthresh:
            break
    return out


def test_hystart_keeps_doubling_while_the_rtt_stays_flat():
    cc = Cubic(MSS, 10)
    trace = _slow_start_rounds(cc, [0.05] * 6)
    assert trace == [20, 40, 80, 160, 320, 640]
    assert cc.hystart.active and not cc.hystart.in_css


def test_hystart_slows_down_then_leaves_slow_start_when_the_rtt_rises():
    cc = Cubic(MSS, 10)
    # Flat for four rounds, then the queue builds: +10 ms is past the 50/8 = 6.25 ms bar.
    rtts = [0.05] * 4 + [0.06] * 12
    trace = _slow_start_rounds(cc, rtts)
    assert trace[:4] == [20, 40, 80, 160]
    css = trace[4:]
    # RFC 9406: conservative slow start grows a quarter as fast (x1.25 per round) ...
    assert all(b < 1.3 * a for a, b in zip(css, css[1:]))
    # ... and after CSS_ROUNDS rounds hands over to congestion avoidance at that window.
    assert cc.ssthresh < 1 << 30 and cc.ssthresh <= cc.cwnd < 1.05 * cc.ssthresh
    assert not cc.hystart.active
    assert len(css) <= 6  # CSS_ROUNDS rounds (the last one may end mid-round)


def test_hystart_resumes_slow_start_when_the_rise_was_jitter():
    cc = Cubic(MSS, 10)
    trace = _slow_start_rounds(cc, [0.05] * 3 + [0.06] + [0.05] * 3)
    assert cc.hystart.active and not cc.hystart.in_css
    assert trace[-1] >= 2 * trace[-2] * 0.9  # doubling again


def test_a_loss_in_slow_start_ends_hystart():
    cc = Cubic(MSS, 10)
    _slow_start_rounds(cc, [0.05] * 2)
    cc.on_loss(cc.cwnd, 0.0)
    assert not cc.hystart.active


def test_undoing_a_spurious_cubic_reduction_restores_its_plateau():
    cubic = Cubic(MSS, 10)
    _after_loss(cubic, 1000)  # W_max = 1000 segments
    trace = _rounds_to_regain(cubic, 900 * MSS)
    assert trace[-1] >= 855
    before = (cubic.cwnd, cubic.ssthresh, cubic._w_max, cubic._k, cubic._epoch)
    cubic.on_loss(cubic.cwnd, 50.0)  # a reordering, not a loss, as D-SACKs will show
    assert cubic._w_max < 1000  # fast convergence lowered the plateau ...
    cubic.on_undo(before[0], before[1])
    # ... and RFC 9438 §4.9 gives back the state from before the reduction.
    assert (cubic.cwnd, cubic.ssthresh, cubic._w_max, cubic._k, cubic._epoch) == before


def test_cubic_reno_friendly_growth_becomes_renos_once_back_at_the_prior_window():
    cubic = Cubic(MSS, 10)
    _after_loss(cubic, 20)  # a small window: the Reno-friendly estimate leads
    trace = _rounds_to_regain(cubic, 30 * MSS, rtt=0.05)
    steps = [b - a for a, b in zip(trace, trace[1:])]
    below = [s for w, s in zip(trace, steps) if w < 19]
    above = [s for w, s in zip(trace, steps) if w >= 21]
    # alpha = 3 (1 - 0.7) / (1 + 0.7) = 0.53 segment per round trip below, Reno's 1 above
    # (RFC 9438 §4.3), the cubic curve being slower than either this close to W_max.
    assert sum(below) / len(below) < 0.7
    assert above and sum(above) / len(above) >= 0.95


def test_an_ack_train_spanning_half_the_rtt_ends_slow_start_at_once():
    # A bottleneck spaces the ACKs evenly; when one round's train of them lasts half the
    # minimum RTT, the window holds about a path's worth: slow start ends there (the ACK
    # train of Linux's HyStart), a round before the RTT rise would show.
    cc = Cubic(MSS, 10)
    rtt, gap = 0.1, 0.002  # ACKs 2 ms apart: a train of 25 spans 50 ms
    now = 0.0
    acks = 0
    while cc.cwnd < cc.ssthresh and acks < 10_000:
        cc.on_rtt_sample(rtt, rtt)
        cc.on_ack(2 * MSS, cc.cwnd, now)
        now += gap
        acks += 1
    assert cc.ssthresh < 1 << 30 and not cc.hystart.active
    # It left at about a path's worth: 50 ms of ACKs, two segments each, counted twice.
    assert 40 * MSS <= cc.ssthresh <= 160 * MSS


def test_acks_with_gaps_are_no_train():
    cc = Cubic(MSS, 10)
    now = 0.0
    for _ in range(200):
        cc.on_rtt_sample(0.1, 0.1)
        cc.on_ack(2 * MSS, cc.cwnd, now)
        now += 0.02  # 20 ms apart: a paced or idle sender, not a queue's spacing
    assert cc.hystart.active and cc.ssthresh == 1 << 30
