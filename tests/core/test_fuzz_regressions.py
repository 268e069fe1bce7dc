"""What the fuzzers found, one minimal script each (``test_fuzz_stateful.py`` and the
coverage-guided harnesses in ``tests/fuzz/``). Each test plays the peer by hand against one
connection and names the behaviour it pins."""

from __future__ import annotations

from support.segments import LOCAL, REMOTE, seg

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.events import ConnectionClosed, DataReceived, EofReceived
from udptcp.core.segment import ACK, FIN, SYN, Options, Segment
from udptcp.core.seq import seq_add, seq_le

S = State
ISS, PEER = 1000, 500_000
MSS = 1452
PLAIN = Config(
    delayed_ack=0.0,
    keepalive=False,
    pacing=False,
    timestamps=False,
    window_scaling=False,
    sack=False,
)


def _established(cfg: Config, window: int = 65535, **peer_opts: object) -> Connection:
    conn = Connection.connect(cfg, local_port=LOCAL, remote_port=REMOTE, iss=ISS, mss=MSS, now=0.0)
    conn.take_segments()
    opts = Options(mss=MSS, **peer_opts)  # type: ignore[arg-type]
    conn.receive(seg(SYN | ACK, seq=PEER, ack=ISS + 1, window=window, options=opts), 0.01)
    conn.take_segments()
    conn.take_events()
    assert conn.state is S.ESTABLISHED
    return conn


def _peer(conn: Connection, off: int, flags: int = ACK, payload: bytes = b"", **kw: object):
    """A segment from the peer at its stream offset ``off``, acknowledging all we sent."""
    ack = kw.pop("ack", conn.snd_max)
    window = kw.pop("window", 65535)
    opts = kw.pop("options", None)
    return seg(flags, seq=PEER + 1 + off, ack=ack, window=window, options=opts, payload=payload)  # type: ignore[arg-type]


def _run_timers(conn: Connection, now: float, seconds: float) -> float:
    end = now + seconds
    while (t := conn.get_timer()) is not None and t <= end:
        now = max(now, t)
        conn.handle_timer(now)
        conn.take_segments()
    return end


def _beyond_snd_max(conn: Connection, segs: list[Segment]) -> list[Segment]:
    return [s for s in segs if s.payload and not seq_le(seq_add(s.seq, s.seg_len), conn.snd_max)]


# -- sending bytes never sent before ----------------------------------------------------------


def test_a_tail_loss_probe_after_everything_was_sacked_resends_only_sent_bytes():
    """The old crash. A receiver SACKs all that is outstanding and shuts its window to one
    byte while 90 KB more wait to be sent. The tail loss probe measured its segment back
    from the end of the send buffer, so it sent bytes never sent before (far beyond
    SND.MAX); the sent log then refused the next run of new data with an AssertionError
    and the endpoint reset the connection. A probe may only repeat what was sent."""
    cfg = PLAIN.replace(sack=True)
    conn = _established(cfg, sack_permitted=True)
    written = bytes(range(256)) * 400  # 100 KB
    conn.send(written, 0.01)
    first = conn.take_segments()
    assert first and conn.snd_max == first[-1].seq + len(first[-1].payload)
    everything = Options(sack_blocks=((conn.snd_una, conn.snd_max),))
    conn.receive(_peer(conn, 0, ack=conn.snd_una, window=1, options=everything), 0.02)
    conn.take_segments()
    probe_time = conn.get_timer()
    assert probe_time is not None
    conn.handle_timer(probe_time)
    probes = conn.take_segments()
    assert conn.stats_counters["tail_loss_probes"] == 1
    assert probes and not _beyond_snd_max(conn, probes)
    for segment in probes:
        off = segment.seq - ISS - 1
        assert segment.payload == written[off : off + len(segment.payload)]
    # The window opens: new data follows from SND.MAX, and nothing raises.
    conn.receive(_peer(conn, 0, window=65535), probe_time + 0.01)
    more = conn.take_segments()
    assert more and more[0].seq == first[-1].seq + len(first[-1].payload)
    assert conn.state is S.ESTABLISHED


def test_a_fast_retransmit_behind_a_three_byte_window_resends_only_those_three_bytes():
    """The same mistake without SACK: a peer with a 3-byte window took 3 bytes, then sent
    three duplicate ACKs; the fast retransmission resent a whole MSS from SND.UNA, bytes
    beyond SND.MAX among them."""
    conn = _established(PLAIN, window=3)
    conn.send(b"q" * 5000, 0.01)
    sent = conn.take_segments()
    assert [len(s.payload) for s in sent] == [3]
    for _ in range(3):
        conn.receive(_peer(conn, 0, ack=conn.snd_una, window=3), 0.02)
    resent = conn.take_segments()
    assert not _beyond_snd_max(conn, resent)
    assert all(len(s.payload) <= 3 for s in resent)


# -- a peer that shuts its window and falls silent ----------------------------------------------


def test_a_zero_window_peer_that_falls_silent_is_timed_out_not_probed_forever():
    """A peer offers a zero window and never answers again. Window probes carry no new
    data, so nothing is outstanding: neither the retransmission timeout (user timeout)
    nor keepalive (it defers to "data waiting") ever ends the connection, and probes go
    out every 60 s forever, a connection (and its buffered data) held without limit by a
    peer that costs nothing. Linux gives up after tcp_retries2 unanswered probes (or
    TCP_USER_TIMEOUT since the last ACK); here user_timeout of silence must end it."""
    cfg = PLAIN.replace(keepalive=True, user_timeout=120.0)
    conn = _established(cfg, window=0)
    conn.send(b"w" * 10_000, 0.02)
    assert conn.take_segments() == []  # the window is shut
    now = _run_timers(conn, 0.02, 6 * 3600.0)
    assert conn.stats_counters["window_probes"] > 0
    assert conn.state is S.CLOSED, (conn.state, conn.stats_counters["window_probes"])
    closed = [e for e in conn.take_events() if isinstance(e, ConnectionClosed)]
    assert closed and isinstance(closed[0].error, TimeoutError)
    assert conn.stats_counters["persist_timeouts"] == 1
    assert now > 0


def test_a_close_behind_a_zero_window_still_ends_when_the_peer_is_silent():
    """The same after close(): the FIN waits for a window that never opens."""
    conn = _established(PLAIN, window=0)
    conn.close(0.02)
    assert conn.state is S.FIN_WAIT_1
    _run_timers(conn, 0.02, 6 * 3600.0)
    assert conn.state is S.CLOSED


# -- data beyond the peer's FIN ------------------------------------------------------------------


def test_a_fin_in_order_ends_the_stream_even_with_data_held_beyond_it():
    """A peer sends one byte at offset 5 (held: a hole before it), then five bytes at 0
    with FIN, so its FIN takes sequence number 5. The connection delivered the held byte
    too and took the FIN at offset 6: EOF in the wrong place, and an ACK (PEER + 8) for
    a sequence number the peer never sent. Linux drops out-of-order data beyond a FIN
    (tcp_fin purges the queue); the stream is what lies before the FIN."""
    conn = _established(PLAIN)
    conn.receive(_peer(conn, 5, payload=b"Z"), 0.02)
    conn.take_segments()
    conn.receive(_peer(conn, 0, ACK | FIN, b"abcde"), 0.03)
    events = conn.take_events()
    data = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert data == b"abcde"
    assert any(isinstance(e, EofReceived) for e in events)
    assert conn.rcv_nxt == PEER + 1 + 5 + 1
    assert [s.ack for s in conn.take_segments()][-1] == PEER + 7
    assert conn.stats_counters["beyond_fin_dropped"] == 1


def test_an_out_of_order_fin_is_not_lost_when_data_beyond_it_was_held():
    """A FIN arrives out of order at offset 5, then a byte at offset 5 (beyond the FIN),
    then the five bytes before it. Delivery ran past the FIN's offset, so the remembered
    FIN no longer matched and was dropped; its retransmission lies below RCV.NXT and is
    ignored too: no EOF ever, the connection stays ESTABLISHED."""
    conn = _established(PLAIN)
    conn.receive(_peer(conn, 5, ACK | FIN), 0.02)
    conn.receive(_peer(conn, 5, payload=b"Z"), 0.02)
    conn.receive(_peer(conn, 0, payload=b"abcde"), 0.03)
    conn.receive(_peer(conn, 5, ACK | FIN), 0.04)  # the FIN again
    events = conn.take_events()
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == b"abcde"
    assert any(isinstance(e, EofReceived) for e in events)
    assert conn.state is S.CLOSE_WAIT


# -- events after the close ----------------------------------------------------------------------


def test_nothing_is_reported_after_the_close_even_when_reading_resumes():
    """Reading paused; the peer sends data and its FIN (held, EOF pending); the application
    closes (resetting: unread data) and then resumes reading. The held data was dropped
    but the pending EOF was not, so resume_reading() reported EofReceived after
    ConnectionClosed, which must be the last event. (The asyncio transport ignores
    resume_reading() once closing, so only direct users of the core saw it.)"""
    conn = _established(PLAIN)
    conn.pause_reading()
    conn.receive(_peer(conn, 0, ACK | FIN, b"unread"), 0.02)
    conn.close(0.03)
    assert conn.state is S.CLOSED
    conn.resume_reading(0.04)
    events = conn.take_events()
    assert isinstance(events[-1], ConnectionClosed), events


# -- memory beyond the receive buffer ------------------------------------------------------------


def test_held_data_and_reassembly_charge_stay_within_the_receive_buffer():
    """A 600-byte receive buffer and a paused reader. The peer sends 216 bytes out of
    order (charged 216 + 256 per piece = 472, within the budget then), then 299 bytes in
    order, which the 600-byte window promised: 771 bytes charged in all. Admission
    checks a piece against the buffer less what is held now, but in-order data the window
    already promised arrives later unchecked, so memory can reach twice receive_buffer,
    which Config documents as the limit of both together. (Linux prunes its out-of-order
    queue when the receive buffer overflows.)"""
    cfg = PLAIN.replace(receive_buffer=600)
    conn = _established(cfg)
    conn.pause_reading()
    conn.receive(_peer(conn, 300, payload=b"o" * 216), 0.02)
    conn.receive(_peer(conn, 0, payload=b"i" * 299), 0.03)
    assert conn._reassembly.charge + len(conn._held) <= cfg.receive_buffer
    assert conn.stats_counters["reassembly_pruned"] == 1
