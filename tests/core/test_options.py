"""SYN options: window scaling and timestamps (RFC 7323), used only when both sides offer."""

from __future__ import annotations

import random

import pytest
from support.segments import seg

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.segment import ACK, SYN, Options
from udptcp.tools.simnet import Link, SimNet

S = State
ISS, PEER = 1000, 5000
FULL = Config(delayed_ack=0.0, receive_buffer=4 * 1024 * 1024, pacing=False)


def _accept(offer: Options, config: Config = FULL) -> Connection:
    syn = seg(SYN, seq=PEER, options=offer)
    return Connection.accept(config, syn, iss=ISS, mss=1452, now=1.0)


def test_syn_offers_window_scale_and_timestamps():
    conn = Connection.connect(FULL, local_port=1, remote_port=2, iss=ISS, mss=1452, now=2.5)
    (syn,) = conn.take_segments()
    assert syn.options.mss == 1452
    assert syn.options.wscale == 7  # 65535 << 7 covers the 4 MiB buffer of this config
    assert syn.options.timestamps == ((2500 + ISS) & 0xFFFFFFFF, 0)
    assert syn.window == 65535  # a SYN's window is never scaled


def test_syn_ack_answers_only_what_was_offered():
    conn = _accept(Options(mss=1400, wscale=3))
    (synack,) = conn.take_segments()
    assert synack.options.wscale == 7 and synack.options.timestamps is None
    conn = _accept(Options(mss=1400, timestamps=(77, 0)))
    (synack,) = conn.take_segments()
    assert synack.options.wscale is None
    assert synack.options.timestamps[1] == 77  # TSecr echoes the SYN's TSval
    conn = _accept(Options(mss=1400))
    (synack,) = conn.take_segments()
    assert synack.options == Options(mss=1452)


def test_agreed_scaling_shifts_both_windows():
    conn = _accept(Options(mss=1452, wscale=2))
    conn.take_segments()
    conn.receive(seg(ACK, seq=PEER + 1, ack=ISS + 1, window=1000), 1.1)
    assert conn.state is S.ESTABLISHED
    assert conn.snd_wnd == 1000 << 2  # the peer's field, scaled by its shift
    conn.send(b"x" * 100, 1.1)
    (data,) = conn.take_segments()
    assert data.window == (128 * 1024) >> 7  # ours (auto-tuning starts at 128 KiB), scaled


def test_without_the_peers_offer_windows_stay_unscaled_and_capped():
    conn = _accept(Options(mss=1452))
    conn.take_segments()
    conn.receive(seg(ACK, seq=PEER + 1, ack=ISS + 1, window=1000), 1.1)
    assert conn.snd_wnd == 1000
    conn.send(b"x", 1.1)
    (data,) = conn.take_segments()
    assert data.window == 65535  # the 4 MiB buffer cannot be advertised unscaled
    assert data.options is None


def test_timestamps_ride_every_segment_and_shrink_its_data():
    conn = _accept(Options(mss=1452, timestamps=(500, 0)))
    conn.take_segments()
    conn.receive(seg(ACK, seq=PEER + 1, ack=ISS + 1, options=Options(timestamps=(510, 0))), 1.2)
    conn.send(b"y" * 3000, 1.2)
    segs = conn.take_segments()
    assert [len(s.payload) for s in segs] == [1440, 1440, 120]  # 1452 - 12 option bytes
    assert all(s.options.timestamps == ((1200 + ISS), 510) for s in segs)  # TSecr = TS.Recent


def test_paws_drops_an_old_duplicate_and_acknowledges():
    conn = _accept(Options(mss=1452, timestamps=(500, 0)))
    conn.take_segments()
    conn.receive(seg(ACK, seq=PEER + 1, ack=ISS + 1, options=Options(timestamps=(600, 0))), 1.2)
    conn.take_events()
    old = seg(ACK, seq=PEER + 1, ack=ISS + 1, options=Options(timestamps=(550, 0)), payload=b"old")
    conn.receive(old, 1.3)
    assert conn.take_events() == []  # not delivered
    (ack,) = conn.take_segments()
    assert ack.ack == PEER + 1 and conn.stats()["paws_rejected"] == 1


def test_timestamps_measure_rtt_for_a_retransmitted_segment():
    conn = _accept(Options(mss=1452, timestamps=(500, 0)))
    conn.take_segments()
    conn.receive(seg(ACK, seq=PEER + 1, ack=ISS + 1, options=Options(timestamps=(510, 0))), 1.0)
    conn.send(b"z" * 100, 1.0)
    conn.take_segments()
    conn.handle_timer(conn.get_timer())  # timeout: sent again
    (again,) = conn.take_segments()
    sent_at = conn._now
    echo = again.options.timestamps[0]
    conn.receive(
        seg(ACK, seq=PEER + 1, ack=ISS + 101, options=Options(timestamps=(520, echo))),
        sent_at + 0.030,
    )
    assert conn.rtt.latest == pytest.approx(0.030, abs=0.0011)  # Karn alone would give none


def test_a_long_fat_path_is_filled_beyond_64_kib_per_round_trip():
    net = SimNet(seed=2)
    net.record = False
    cfg = Config()
    a, b = net.host("a", config=cfg), net.host("b", listening=True, config=cfg)
    # 50 ms RTT; 64 KiB per RTT would be 1.3 MB/s at most.
    net.connect_hosts(a, b, Link(delay=0.025), Link(delay=0.025))
    client = a.connect(b, 80)
    net.run_until(lambda: client.state is S.ESTABLISHED)
    data = random.Random(2).randbytes(20_000_000)
    start = net.now
    a.send(client, data)
    net.run_until(lambda: bool(b.accepted) and len(b.received[b.accepted[0]]) == len(data))
    rate = len(data) / (net.now - start)
    assert bytes(b.received[b.accepted[0]]) == data
    assert client.wscale_ok and client.ts_enabled
    assert rate > 10 * 65536 / 0.05
