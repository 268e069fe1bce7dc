"""Selective acknowledgments: the receiver's blocks (RFC 2018, RFC 2883) and the sender's
scoreboard-driven recovery (RFC 6675)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from support.segments import seg as mkseg

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.sack import Scoreboard
from udptcp.core.segment import SYN, Options
from udptcp.tools.simnet import connected_pair

S = State
ISS, PEER = 100, 900_000
# Exchanges at one instant of virtual time: pacing would hold every burst back.
CFG = Config(delayed_ack=0.0, timestamps=False, keepalive=False, pacing=False)


def _pair(cfg: Config = CFG, sack: bool = True) -> tuple[Connection, Connection]:
    a_cfg = cfg if sack else cfg.replace(sack=False)
    return connected_pair(a_cfg, cfg, iss=ISS, peer_iss=PEER)


def test_scoreboard_merges_prunes_and_skips_sacked_ranges():
    sb = Scoreboard()
    assert sb.add(10, 20) == 10
    assert sb.add(30, 40) == 10
    assert sb.add(15, 32) == 10  # bridges both: only [20, 30) is new
    assert sb.ranges() == [(10, 40)]
    sb.add(50, 60)
    sb.prune(35)
    assert sb.ranges() == [(35, 40), (50, 60)]
    assert sb.skip_sacked(36) == 40 and sb.skip_sacked(45) == 45
    assert sb.next_sacked(41) == 50


def test_the_sent_log_keeps_pipe_lost_and_sacked_counts_through_splits():
    from udptcp.core.rack import SentLog

    log = SentLog()
    for i in range(4):
        log.record(i * 1000, (i + 1) * 1000, now=0.0)
    assert log.pipe() == 4000
    log.sack(2000, 3000, now=0.05, min_rtt=0.0)  # the third segment arrived
    assert log.pipe() == 3000 and log.sacked_segments() == 1
    newly, _ = log.detect_losses(now=0.05, reo_wnd=0.0)  # sent before it: lost
    assert newly == 2 and log.lost_bytes() == 2000 and log.pipe() == 1000
    log.record(0, 500, now=0.06)  # half of the first one resent: it splits
    assert log.lost_bytes() == 1500 and log.pipe() == 1500
    assert log.first_lost().start == 500
    log.acknowledge(2000, now=0.1, min_rtt=0.0)
    assert log.pipe() == 1000 and log.lost_bytes() == 0 and log.sacked_segments() == 1


def test_sack_permitted_is_answered_only_when_offered():
    syn = mkseg(SYN, seq=5, options=Options(mss=1452, sack_permitted=True), src=2000, dst=1000)
    conn = Connection.accept(CFG, syn, iss=ISS, mss=1452, now=0.0)
    assert conn.take_segments()[0].options.sack_permitted
    syn = mkseg(SYN, seq=5, mss=1452, src=2000, dst=1000)
    conn = Connection.accept(CFG, syn, iss=ISS, mss=1452, now=0.0)
    assert not conn.take_segments()[0].options.sack_permitted
    assert not conn.sack_ok


def test_receiver_reports_holes_newest_first_and_duplicates_as_dsack():
    a, b = _pair()
    a.send(b"x" * 1452 * 6, 0.0)
    segs = a.take_segments()
    b.receive(segs[0], 0.0)
    b.take_segments()
    b.receive(segs[2], 0.0)
    (ack,) = b.take_segments()
    assert ack.options.sack_blocks == ((segs[2].seq, segs[3].seq),)
    b.receive(segs[4], 0.0)
    (ack,) = b.take_segments()
    # RFC 2018 §4: the block with the newest segment first, then the earlier one.
    assert ack.options.sack_blocks == ((segs[4].seq, segs[5].seq), (segs[2].seq, segs[3].seq))
    b.receive(segs[0], 0.0)  # an old duplicate
    (ack,) = b.take_segments()
    assert ack.options.sack_blocks[0] == (segs[0].seq, segs[1].seq)  # RFC 2883 D-SACK
    b.receive(segs[2], 0.0)  # a duplicate of held out-of-order data
    (ack,) = b.take_segments()
    assert ack.options.sack_blocks[0] == (segs[2].seq, segs[3].seq)


def _deliver_rounds(a, b, first_drop, limit=50):
    """Exchange at one instant (so no timer can fire); drop chosen first transmissions."""
    dropped = set()
    for rounds in range(1, limit):
        sa, sb = a.take_segments(), b.take_segments()
        if not sa and not sb:
            return rounds - 1
        for s in sa:
            if s.payload and s.seq in first_drop and s.seq not in dropped:
                dropped.add(s.seq)
                continue
            b.receive(s, 0.0)
        for s in sb:
            a.receive(s, 0.0)
    return limit


def test_a_burst_of_ten_lost_segments_is_repaired_in_one_recovery_without_timeout():
    a, b = _pair(CFG.replace(initial_window=40))
    a.send(bytes(range(256)) * 200, 0.0)  # 51200 bytes: 36 segments
    first = a.take_segments()
    lost = {s.seq for s in first[5:15]}
    a._out = first  # put them back: the exchange below carries them
    _deliver_rounds(a, b, lost)
    got = b"".join(e.data for e in b.take_events())
    assert got == bytes(range(256)) * 200
    st = a.stats()
    assert st["timeouts"] == 0
    assert st["sack_recoveries"] == 1
    assert st["retransmits"] == 10  # exactly the lost ones: nothing SACKed was resent


def test_without_sack_the_same_burst_needs_many_more_round_trips():
    a, b = _pair(CFG.replace(initial_window=40), sack=False)
    a.send(bytes(range(256)) * 200, 0.0)
    first = a.take_segments()
    lost = {s.seq for s in first[5:15]}
    a._out = first
    _deliver_rounds(a, b, lost)
    # NewReno repairs one hole per round trip (partial ACKs), and stays in recovery.
    assert a.stats()["retransmits"] >= 10
    assert not a.sack_ok


def test_without_sack_the_third_duplicate_ack_resends_the_first_segment_and_restarts_the_rto():
    a, b = _pair(CFG.replace(initial_window=10), sack=False)
    a.send(b"z" * 1452 * 6, 0.0)
    segs = a.take_segments()
    assert len(segs) == 6 and a.timers.rto == a.rtt.rto  # armed at time 0
    for s in segs[1:]:  # the first is lost: each later one draws a duplicate ACK
        b.receive(s, 0.01)
    dups = b.take_segments()
    assert len(dups) == 5 and {s.ack for s in dups} == {segs[0].seq}
    for s in dups:
        a.receive(s, 0.5)
    resent = [s for s in a.take_segments() if s.payload]
    # RFC 6582 §3.2 step 2: SND.UNA's segment once (nothing new is left to send), and
    # the retransmission timer starts over from the repair.
    assert [(s.seq, s.payload) for s in resent] == [(segs[0].seq, segs[0].payload)]
    assert a.timers.rto == 0.5 + a.rtt.rto
    assert a.stats()["fast_retransmits"] == 1 and a.stats()["retransmits"] == 1


def test_go_back_n_after_a_timeout_skips_what_was_sacked():
    a, b = _pair(CFG.replace(initial_window=10))
    a.send(b"y" * 1452 * 10, 0.0)
    segs = a.take_segments()
    for s in segs[3:]:  # 0, 1, 2 lost; 3.. SACKed
        b.receive(s, 0.0)
    for s in b.take_segments():
        a.receive(s, 0.0)
    a.take_segments()  # whatever recovery sent is lost too
    a.handle_timer(a.get_timer())
    resent = a.take_segments()
    for s in resent:
        assert s.seq < segs[3].seq  # nothing SACKed goes out again


def test_a_lost_tail_segment_is_repaired_by_a_probe_well_before_the_rto():
    a, b = _pair(CFG.replace(initial_window=10))
    # An RTT sample first, so the probe timeout (2 x SRTT) is known: 40 ms.
    a.send(b"r" * 100, 0.0)
    for s in a.take_segments():
        b.receive(s, 0.02)
    for s in b.take_segments():
        a.receive(s, 0.04)
    a.send(b"t" * 1452 * 4, 0.04)
    segs = a.take_segments()
    for s in segs[:-1]:  # the last segment of the flight is lost: no duplicate ACKs follow
        b.receive(s, 0.06)
    for s in b.take_segments():
        a.receive(s, 0.08)
    rto_at = a.timers.rto
    probe_at = a.get_timer()
    assert probe_at < rto_at
    a.handle_timer(probe_at)
    (probe,) = a.take_segments()
    assert probe.seq == segs[-1].seq and probe.payload == segs[-1].payload
    b.receive(probe, probe_at + 0.02)
    for s in b.take_segments():
        a.receive(s, probe_at + 0.04)
    assert a.snd_una == a.snd_max  # repaired
    assert a.stats()["timeouts"] == 0 and a.stats()["tail_loss_probes"] == 1
    assert probe_at + 0.04 < rto_at  # well before the retransmission timeout


def test_on_a_long_path_a_lost_ack_costs_a_probe_not_a_timeout():
    # RTT 150 ms: the probe timeout (2 x SRTT, 300 ms) lies beyond the RTO (200 ms floor).
    # RFC 8985 §7.2: the probe then goes out at the RTO's time, in its place. Here the one
    # ACK for a whole flight is lost: the probe's ACK must repair that without a timeout,
    # so the congestion window survives.
    a, b = _pair(CFG.replace(initial_window=10))
    t, rtt = 0.0, 0.15
    for _ in range(30):  # enough samples for SRTT to settle near 150 ms
        a.send(b"w" * 100, t)
        for s in a.take_segments():
            b.receive(s, t + rtt / 2)
        for s in b.take_segments():
            a.receive(s, t + rtt)
        t += rtt
    assert 2 * a.rtt.srtt > a.rtt.rto
    a.send(b"F" * 1452 * 6, t)
    flight = a.take_segments()
    for s in flight:
        b.receive(s, t + 0.075)
    b.take_segments()  # the ACK for the whole flight is lost
    cwnd = a.cc.cwnd
    rto_at = a.timers.rto
    probe_at = a.get_timer()
    assert probe_at == rto_at
    a.handle_timer(probe_at)
    (probe,) = a.take_segments()
    assert probe.seq == flight[-1].seq  # the last segment again, not go-back-N
    assert a.stats()["tail_loss_probes"] == 1 and a.stats()["timeouts"] == 0
    b.receive(probe, probe_at + 0.075)
    for s in b.take_segments():
        a.receive(s, probe_at + 0.15)
    assert a.snd_una == a.snd_max
    assert a.stats()["timeouts"] == 0 and a.cc.cwnd >= cwnd


def test_sack_recovery_ends_with_cwnd_at_ssthresh_even_with_nothing_left_in_flight():
    # Everything the sender had went out before the loss, so the full ACK leaves nothing
    # in flight. RFC 6675 (and RFC 6937) leave recovery with cwnd = ssthresh; RFC 6582's
    # min(ssthresh, FlightSize + SMSS) would make it one segment and cost a slow start.
    a, b = _pair(CFG.replace(initial_window=20))
    t = _warm_rtt(a, b)
    a.send(b"E" * 1452 * 12, t)
    segs = a.take_segments()
    for s in segs[1:]:
        b.receive(s, t + 0.02)
    for s in b.take_segments():
        a.receive(s, t + 0.04)
    assert a._in_recovery
    ssthresh = a.cc.ssthresh
    for s in a.take_segments():
        b.receive(s, t + 0.06)
    for s in b.take_segments():
        a.receive(s, t + 0.08)
    assert not a._in_recovery and a.snd_una == a.snd_max
    assert a.cc.cwnd == ssthresh


def _warm_rtt(a, b, rtt=0.04):
    """One exchange with a real round trip, so RACK and the probe timer know the RTT."""
    a.send(b"w" * 100, 0.0)
    for s in a.take_segments():
        b.receive(s, rtt / 2)
    for s in b.take_segments():
        a.receive(s, rtt)
    b.take_events()
    return rtt


def test_rack_finds_a_lost_retransmission_without_waiting_for_the_rto():
    a, b = _pair(CFG.replace(initial_window=20))
    t = _warm_rtt(a, b)
    a.send(b"L" * 1452 * 12, t)
    segs = a.take_segments()
    victim = segs[2].seq
    for s in segs:
        if s.seq != victim:
            b.receive(s, t + 0.02)
    for s in b.take_segments():
        a.receive(s, t + 0.04)
    (retx,) = [s for s in a.take_segments() if s.seq == victim]  # recovery resends it
    # ...and the resend is lost too. New data keeps flowing and gets SACKed.
    a.send(b"N" * 1452 * 4, t + 0.05)
    for s in a.take_segments():
        if s.seq != victim:
            b.receive(s, t + 0.07)
    for s in b.take_segments():
        a.receive(s, t + 0.09)
    # RACK: the resend went out before data now SACKed, and a round trip plus the
    # reordering window has passed, so it is lost again: resent long before any RTO.
    now = t + 0.09
    while not any(s.seq == victim for s in a._out):
        now = a.get_timer()
        assert now < a.timers.rto
        a.handle_timer(now)
    again = [s for s in a.take_segments() if s.seq == victim]
    assert again and a.stats()["timeouts"] == 0
    for s in again:
        b.receive(s, now + 0.02)
    for s in b.take_segments():
        a.receive(s, now + 0.04)
    assert a.snd_una == a.snd_max


def test_a_multi_segment_tail_loss_is_repaired_by_probe_and_rack_before_the_rto():
    a, b = _pair(CFG.replace(initial_window=20))
    t = _warm_rtt(a, b)
    a.send(b"T" * 1452 * 8, t)
    segs = a.take_segments()
    for s in segs[:5]:  # the last three segments of the flight are lost
        b.receive(s, t + 0.02)
    for s in b.take_segments():
        a.receive(s, t + 0.04)
    now = t + 0.04
    rto_at = a.timers.rto
    for _ in range(20):  # let the probe and RACK do their work, delivering everything
        if a.snd_una == a.snd_max:
            break
        if not a._out:
            now = a.get_timer()
            a.handle_timer(now)
        for s in a.take_segments():
            b.receive(s, now + 0.02)
        for s in b.take_segments():
            a.receive(s, now + 0.04)
        now += 0.04
    assert a.snd_una == a.snd_max
    assert a.stats()["tail_loss_probes"] == 1 and a.stats()["timeouts"] == 0
    assert now < rto_at + 0.2


def test_a_recovery_caused_by_reordering_is_undone_when_dsacks_report_it():
    a, b = _pair(CFG.replace(initial_window=20))
    t = _warm_rtt(a, b)
    a.send(b"O" * 1452 * 10, t)
    segs = a.take_segments()
    late = segs[1]  # delayed on the path, not lost
    for s in segs:
        if s is not late:
            b.receive(s, t + 0.02)
    for s in b.take_segments():
        a.receive(s, t + 0.04)
    assert a._in_recovery  # three SACKed segments above it: deemed lost and resent
    cwnd_before = a._undo_cwnd
    assert a.cc.cwnd < cwnd_before
    resent = [s for s in a.take_segments() if s.seq == late.seq]
    b.receive(late, t + 0.05)  # the original arrives after all ...
    for s in resent:
        b.receive(s, t + 0.06)  # ... so the resend is a duplicate: D-SACK
    for s in b.take_segments():
        a.receive(s, t + 0.08)
    assert a.stats()["dsacks_received"] >= 1
    assert a.stats()["spurious_recoveries_undone"] == 1
    assert a.cc.cwnd >= cwnd_before  # RFC 3708: the cut is undone


def test_a_duplicate_made_by_the_network_does_not_undo_a_real_recovery():
    a, b = _pair(CFG.replace(initial_window=20))
    t = _warm_rtt(a, b)
    a.send(b"D" * 1452 * 10, t)
    segs = a.take_segments()
    lost, copied = segs[1], segs[5]
    for s in segs:
        if s is not lost:
            b.receive(s, t + 0.02)
    for s in b.take_segments():
        a.receive(s, t + 0.04)
    assert a._in_recovery
    cut = a.cc.cwnd
    assert cut < a._undo_cwnd
    assert any(s.seq == lost.seq for s in a.take_segments())  # resent (and lost again)
    b.receive(copied, t + 0.05)  # the path duplicated an original: the peer D-SACKs it
    for s in b.take_segments():
        a.receive(s, t + 0.07)
    assert a.stats()["dsacks_received"] == 1
    # The one retransmission of the recovery was not reported as a duplicate: the loss
    # was real, the cut stays (RFC 3708 §3).
    assert a.stats()["spurious_recoveries_undone"] == 0
    assert a.cc.cwnd <= cut


# -- the sent log's side structures against the plain walks they replace ------------------


class _WalkingLog:
    """The sent log as it was: RACK and NextSeg walk every logged segment per call."""

    @staticmethod
    def detect_losses(log, now, reo_wnd):
        newly, wait = 0, None
        horizon = log.rack_rtt + reo_wnd
        for seg in log._segs:
            if seg.order >= log.rack_order:
                if not seg.retransmitted:
                    break
                continue
            if seg.sacked or seg.lost:
                continue
            due = seg.time + horizon
            if due <= now:
                log._set_lost(seg, True)
                newly += 1
            elif wait is None or due < wait:
                wait = due
        return newly, wait

    @staticmethod
    def first_lost(log):
        return next((s for s in log._segs if s.lost and not s.sacked), None)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("nnrsadlaxf"),
            st.integers(0, 40),
            st.integers(1, 6),
            st.integers(0, 3),
        ),
        max_size=80,
    )
)
def test_rack_and_lowest_lost_match_a_walk_over_the_whole_log(steps):
    """RACK's time-ordered queue and the heap of lost segments give what walking the log
    gave (the same segments deemed lost, the same timer, the same NextSeg), whatever mix
    of sends, resends (split ones too), SACKs, ACKs and timeouts led there."""
    from udptcp.core.rack import SentLog

    fast, slow = SentLog(), SentLog()
    now, top, una, mss = 0.0, 0, 0, 10
    for op, a, b, c in steps:
        now += 0.001 * c
        if op == "n":  # new data
            for log in (fast, slow):
                log.record_run(top, mss, b, now)
            top += b * mss
        elif op == "r" and top > una:  # a resend, maybe at a smaller size (a split)
            start = una + (a * mss) % (top - una)
            size = mss if c else mss // 2
            for log in (fast, slow):
                log.record(start, min(start + size, top), now)
        elif op == "s" and top > una:  # a SACK block over whole segments
            start = una + (a * mss) % (top - una)
            start -= (start - una) % mss
            for log in (fast, slow):
                log.start_ack()
                log.sack(start, min(start + b * mss, top), now, 0.0)
        elif op == "a" and top > una:  # a cumulative ACK, maybe inside a segment
            una = min(top, una + a + 1)
            for log in (fast, slow):
                log.start_ack()
                log.acknowledge(una, now, 0.0)
        elif op == "d":
            reo = 0.002 * c
            got = fast.detect_losses(now, reo)
            assert got == _WalkingLog.detect_losses(slow, now, reo), steps
        elif op == "l":
            for log in (fast, slow):
                log.mark_lost_below(una + 1)
        elif op == "x":  # a retransmission timeout, the scoreboard dropped
            for log in (fast, slow):
                log.forget_sacks()
                log.mark_all_lost()
        got, want = fast.first_lost(), _WalkingLog.first_lost(slow)
        assert (got and (got.start, got.end)) == (want and (want.start, want.end)), steps
        assert (fast.pipe(), fast.lost_bytes()) == (slow.pipe(), slow.lost_bytes())
        # The side structures stay bounded by what is logged.
        assert (
            len(fast._by_send) <= 4 * len(fast) + 64 and len(fast._lost_heap) <= 4 * len(fast) + 64
        )


def test_rack_still_sees_the_untouched_half_of_a_segment_resent_at_a_smaller_size():
    """A resend at half the size splits a logged segment; the half not resent keeps its
    old send time, and RACK must still deem it lost once a later send is delivered."""
    from udptcp.core.rack import SentLog

    log = SentLog()
    log.record_run(0, 10, 3, 0.0)  # [0,10) [10,20) [20,30) at t=0
    log.record(0, 5, 0.01)  # [0,5) again at t=0.01; [5,10) still from t=0
    log.record(30, 40, 0.02)  # new data, sent after everything above
    log.start_ack()
    log.sack(30, 40, 0.05, 0.0)  # RACK: delivered, sent at 0.02
    newly, _ = log.detect_losses(0.05, 0.0)
    lost = {(s.start, s.end) for s in log.segments() if s.lost}
    assert (5, 10) in lost and (10, 20) in lost and (20, 30) in lost and (0, 5) in lost
    assert newly == 4
    assert (log.first_lost().start, log.first_lost().end) == (0, 5)
