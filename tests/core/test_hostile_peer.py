"""A peer that lies: it knows every sequence number and uses what it sends against us.

Each test pins one way such a peer used to hurt a connection (send bytes it never wrote,
grow cwnd without bound, draw unlimited ACKs, reach a negative MSS) and what happens now.
"""

from __future__ import annotations

from support.segments import LOCAL, REMOTE, seg

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.segment import ACK, FIN, RST, SYN, Options, Segment

S = State
ISS, PEER = 1000, 500_000
MSS = 1452


def _established(cfg: Config, *, peer_opts: Options, window: int = 65535) -> Connection:
    conn = Connection.connect(cfg, local_port=LOCAL, remote_port=REMOTE, iss=ISS, mss=MSS, now=0.0)
    conn.take_segments()
    synack = seg(SYN | ACK, seq=PEER, ack=ISS + 1, window=window, options=peer_opts)
    conn.receive(synack, 0.01)
    conn.take_segments()
    conn.take_events()
    assert conn.state is S.ESTABLISHED
    return conn


def _written_bytes_only(conn: Connection, segs: list[Segment], written: bytes) -> None:
    """Every data segment carries the application's bytes at their own offsets, and
    nothing beyond what was sent as new data (SND.MAX)."""
    for segment in segs:
        if not segment.payload:
            continue
        off = (segment.seq - ISS - 1) & 0xFFFFFFFF
        assert segment.payload == written[off : off + len(segment.payload)]
        end = (segment.seq + len(segment.payload) - conn.iss - 1) & 0xFFFFFFFF
        assert end <= (conn.snd_max - conn.iss - 1) & 0xFFFFFFFF, (segment, conn.snd_max)


def test_a_receiver_that_sacks_everything_behind_a_tiny_window_gets_no_unsent_bytes():
    """The old crash: a tail loss probe measured its segment back from the end of the send
    buffer, so with data queued behind a shut window it sent bytes never sent before; the
    sent log then refused the next run of new data (an assertion) and the connection was
    reset. Now every resend stays below SND.MAX and the transfer goes on."""
    cfg = Config(delayed_ack=0.0, keepalive=False, pacing=False, timestamps=False)
    conn = _established(cfg, peer_opts=Options(mss=MSS, sack_permitted=True), window=65535)
    written = bytes(range(256)) * 2000  # 512 KB: most of it waits behind the windows
    conn.send(written, 0.02)
    first = conn.take_segments()
    _written_bytes_only(conn, first, written)
    sent_top = conn.snd_max
    # The peer SACKs all of it, acknowledges none of it, and shuts its window to 1 byte.
    blocks = ((ISS + 1, sent_top),)
    now = 0.05
    conn.receive(
        seg(ACK, seq=PEER + 1, ack=ISS + 1, window=1, options=Options(sack_blocks=blocks)), now
    )
    out = conn.take_segments()
    while now < 3.0:  # probes, RTOs, persist: whatever the timers do
        deadline = conn.get_timer()
        assert deadline is not None and conn.state is S.ESTABLISHED
        now = max(now, deadline)
        conn.handle_timer(now)
        out += conn.take_segments()
    _written_bytes_only(conn, out, written)
    assert conn.snd_max == sent_top  # no new data went out through the 1-byte window
    # The window opens and the peer acknowledges everything: new data flows again.
    conn.receive(seg(ACK, seq=PEER + 1, ack=sent_top), now + 0.01)
    more = conn.take_segments()
    assert conn.state is S.ESTABLISHED
    assert any(s.payload for s in more)
    _written_bytes_only(conn, more, written)


def test_spoofed_duplicate_acks_cannot_inflate_the_window_without_bound():
    """RFC 6582 inflation (no SACK): one segment's worth per duplicate ACK, but only as
    many as there were segments outstanding above the hole when recovery began. 2,003
    duplicates used to grow cwnd from 10 segments to ~2 MB and draw that much data out."""
    cfg = Config(delayed_ack=0.0, keepalive=False, pacing=False, timestamps=False, sack=False)
    conn = _established(cfg, peer_opts=Options(mss=MSS), window=65535)
    written = b"z" * (4 << 20)
    conn.send(written, 0.02)
    first = conn.take_segments()
    flight_at_entry = conn.snd_max - conn.snd_una
    assert flight_at_entry == 10 * MSS
    sent_after = []
    dup = seg(ACK, seq=PEER + 1, ack=ISS + 1)
    for i in range(2003):
        conn.receive(dup, 0.03 + i * 1e-5)
        sent_after += conn.take_segments()
    assert conn.state is S.ESTABLISHED
    # Entry (after two limited-transmit segments, RFC 3042): cwnd = ssthresh + 3 segments;
    # then at most one more per segment that was above the hole. Everything else the
    # duplicates asked for was refused and counted.
    entry = flight_at_entry + 2 * MSS
    ssthresh = conn.cc.ssthresh
    assert conn.cc.cwnd == ssthresh + entry
    new_bytes = sum(len(s.payload) for s in sent_after if s.seq != ISS + 1)
    assert new_bytes <= ssthresh + 2 * MSS
    assert conn.stats()["excess_duplicate_acks"] == 2003 - 3 - (entry // MSS - 3)
    _written_bytes_only(conn, first + sent_after, written)


# ---------------------------------------------------------------------- bounded answers


def test_out_of_window_segments_draw_one_ack_per_half_second():
    """Linux's tcp_invalid_ratelimit: unacceptable segments (out of window, acknowledging
    unsent data, far-old data) are answered at most once per 500 ms, so a blind attacker
    guessing sequence numbers does not get an ACK back for each guess."""
    cfg = Config(delayed_ack=0.0, keepalive=False, pacing=False, timestamps=False)
    conn = _established(cfg, peer_opts=Options(mss=MSS), window=65535)
    answers = 0
    guesses = (
        [
            seg(ACK, seq=PEER + 1 + 10_000_000 + i * 7919, ack=ISS + 1, payload=b"x")
            for i in range(300)  # beyond the window
        ]
        + [
            seg(ACK, seq=PEER + 1, ack=ISS + 1 + 5_000_000)  # unsent data
            for _ in range(300)
        ]
        + [
            seg(ACK, seq=PEER + 1 - 50_000_000, ack=ISS + 1, payload=b"y")
            for _ in range(300)  # far below RCV.NXT: no retransmission of ours
        ]
    )
    for i, segment in enumerate(guesses):
        conn.receive(segment, 1.0 + i * 0.001)  # 900 segments over 0.9 s
        answers += len(conn.take_segments())
    assert answers == 2  # at 1.0 s and at 1.5 s
    assert conn.stats()["invalid_acks_suppressed"] == len(guesses) - 2
    assert conn.state is S.ESTABLISHED


def test_a_real_retransmission_below_rcv_nxt_is_still_answered_at_once_with_a_dsack():
    cfg = Config(delayed_ack=0.0, keepalive=False, pacing=False, timestamps=False)
    conn = _established(cfg, peer_opts=Options(mss=MSS, sack_permitted=True))
    data = seg(ACK, seq=PEER + 1, ack=ISS + 1, payload=b"d" * 100)
    conn.receive(data, 1.0)
    conn.take_segments()
    for i in range(5):  # a peer whose ACKs are lost resends, again and again
        conn.receive(data, 1.0 + 0.01 * (i + 1))
        (ack,) = conn.take_segments()
        assert ack.options.sack_blocks == ((PEER + 1, PEER + 101),)  # RFC 2883 D-SACK


def test_a_tiny_or_zero_mss_is_raised_to_the_floor_and_counted():
    cfg = Config(delayed_ack=0.0, keepalive=False, pacing=False, timestamps=True)
    for announced in (0, 1, 13, 215):
        conn = _established(cfg, peer_opts=Options(mss=announced, timestamps=(5, 0)), window=65535)
        assert conn.peer_mss == cfg.min_mss == 216
        assert conn.stats()["peer_mss_clamped"] == 1
        conn.send(b"q" * 5000, 0.02)
        sizes = [len(s.payload) for s in conn.take_segments()]
        assert sizes and min(sizes) > 0 and max(sizes) == 216 - 12  # less the timestamps
    conn = _established(cfg, peer_opts=Options(mss=216, timestamps=(5, 0)))
    assert conn.peer_mss == 216 and conn.stats()["peer_mss_clamped"] == 0


def test_a_connection_to_a_peer_with_a_tiny_mss_still_closes_when_the_peer_vanishes():
    cfg = Config(delayed_ack=0.0, pacing=False, user_timeout=10.0)
    conn = _established(cfg, peer_opts=Options(mss=1, timestamps=(5, 0)))
    conn.send(b"w" * 100_000, 0.02)
    now = 0.02
    while conn.state is not S.CLOSED and now < 3600:
        deadline = conn.get_timer()
        assert deadline is not None
        now = max(now, deadline)
        conn.handle_timer(now)
        conn.take_segments()
    assert conn.state is S.CLOSED and now < 120


# ---------------------------------------------------------------------- RFC clauses


def test_segments_without_timestamps_are_dropped_once_agreed_rfc7323_3_2():
    cfg = Config(delayed_ack=0.0, keepalive=False, pacing=False)
    conn = _established(cfg, peer_opts=Options(mss=MSS, timestamps=(5, 0)))
    assert conn.ts_enabled
    conn.receive(seg(ACK, seq=PEER + 1, ack=ISS + 1, payload=b"no ts"), 0.1)
    assert conn.take_segments() == [] and conn.take_events() == []
    assert conn.rcv_nxt == PEER + 1
    assert conn.stats()["missing_timestamp_dropped"] == 1
    # A RST needs none (RFC 7323 §3.2 exempts it).
    conn.receive(seg(RST, seq=PEER + 1, window=0), 0.2)
    assert conn.state is S.CLOSED


def test_data_on_a_syn_ack_is_acknowledged_and_delivered_rfc9293_3_10_7_3():
    cfg = Config(delayed_ack=0.0, keepalive=False, pacing=False, timestamps=False)
    conn = Connection.connect(cfg, local_port=LOCAL, remote_port=REMOTE, iss=ISS, mss=MSS, now=0)
    conn.take_segments()
    synack = seg(SYN | ACK | FIN, seq=PEER, ack=ISS + 1, mss=MSS, payload=b"early data")
    conn.receive(synack, 0.01)
    (ack,) = conn.take_segments()
    assert (ack.flags, ack.seq, ack.ack) == (ACK, ISS + 1, PEER + 1 + len(b"early data") + 1)
    events = conn.take_events()
    assert [type(e).__name__ for e in events] == ["Connected", "DataReceived", "EofReceived"]
    assert events[1].data == b"early data"
    assert conn.state is S.CLOSE_WAIT


def _syn_received(cfg: Config) -> Connection:
    syn = seg(SYN, seq=PEER, mss=MSS)
    conn = Connection.accept(cfg, syn, iss=ISS, mss=MSS, now=0.0)
    conn.take_segments()
    assert conn.state is S.SYN_RECEIVED
    return conn


def test_an_in_window_rst_in_syn_received_gets_a_challenge_ack_rfc5961_3_2():
    cfg = Config(delayed_ack=0.0, keepalive=False, pacing=False, timestamps=False)
    conn = _syn_received(cfg)
    conn.receive(seg(RST, seq=PEER + 1 + 500, window=0), 0.01)
    assert conn.state is S.SYN_RECEIVED
    (challenge,) = conn.take_segments()
    assert (challenge.flags, challenge.seq, challenge.ack) == (ACK, ISS + 1, PEER + 1)
    # The exact one still resets it.
    conn.receive(seg(RST, seq=PEER + 1, window=0), 0.02)
    assert conn.state is S.CLOSED


def test_a_new_syn_in_syn_received_gets_a_challenge_ack_rfc5961_4_2():
    cfg = Config(delayed_ack=0.0, keepalive=False, pacing=False, timestamps=False)
    conn = _syn_received(cfg)
    conn.receive(seg(SYN, seq=PEER + 1 + 100, mss=MSS), 0.01)
    assert conn.state is S.SYN_RECEIVED
    (challenge,) = conn.take_segments()
    assert (challenge.flags, challenge.seq, challenge.ack) == (ACK, ISS + 1, PEER + 1)
    assert conn.stats()["challenge_acks"] == 1


def _time_wait(cfg: Config, *, ts: bool) -> Connection:
    opts = Options(mss=MSS, timestamps=(1000, 0)) if ts else Options(mss=MSS)
    conn = _established(cfg, peer_opts=opts)
    topts = Options(timestamps=(1001, conn._tsval())) if ts else None
    conn.close(0.02)
    (fin,) = conn.take_segments()
    conn.receive(seg(ACK | FIN, seq=PEER + 1, ack=fin.seq + 1, options=topts), 0.03)
    conn.take_segments()
    assert conn.state is S.TIME_WAIT
    return conn


def test_time_wait_reopens_for_a_newer_timestamp_even_with_a_lower_sequence_rfc6191():
    cfg = Config(delayed_ack=0.0, keepalive=False, pacing=False)
    conn = _time_wait(cfg, ts=True)
    assert conn.ts_recent == 1001

    def syn(seq: int, tsval: int) -> Segment:
        return seg(SYN, seq=seq, options=Options(mss=MSS, timestamps=(tsval, 0)))

    lower, higher = PEER - 1000, PEER + 1_000_000
    assert conn.accepts_reopen(syn(lower, 2000))  # newer timestamp: a new incarnation
    assert not conn.accepts_reopen(syn(higher, 900))  # older timestamp: an old duplicate
    assert conn.accepts_reopen(syn(higher, 1001))  # same timestamp: the sequence decides
    assert not conn.accepts_reopen(syn(lower, 1001))
    # Without a timestamp in the SYN, RFC 1122's sequence rule.
    plain = seg(SYN, seq=higher, mss=MSS)
    assert conn.accepts_reopen(plain)


def test_time_wait_without_timestamps_reopens_on_a_higher_sequence_only():
    cfg = Config(delayed_ack=0.0, keepalive=False, pacing=False, timestamps=False)
    conn = _time_wait(cfg, ts=False)
    assert conn.accepts_reopen(seg(SYN, seq=PEER + 10_000))
    assert not conn.accepts_reopen(seg(SYN, seq=PEER - 10_000))


def test_a_reopened_incarnation_starts_beyond_every_sequence_number_of_the_old_one():
    """RFC 1122 §4.2.2.13: whatever the ISN clock says, old duplicates of ours must not
    land in the new connection's window."""
    cfg = Config(delayed_ack=0.0, keepalive=False, pacing=False, timestamps=False)
    conn = _time_wait(cfg, ts=False)
    iss = conn.reopen_iss()
    assert 65536 < (iss - conn.snd_max) & 0xFFFFFFFF < 0x80000000
