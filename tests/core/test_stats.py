"""ConnectionStats: one test per documented field, on a seeded simulated transfer.

The transfer crosses a link with loss, duplication and reordering, so recovery, SACK and
reassembly really happen; snapshots are taken at the moments each figure means something
(mid-transfer, during a recovery, with a hole at the receiver, at the end). Each field's
check is in :data:`CHECKS`; a field without a check fails ``test_every_field_has_a_check``.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from udptcp.core.config import Config
from udptcp.core.connection import Connection, State
from udptcp.core.stats import _COUNTERS, ConnectionStats, pacing_rate
from udptcp.tools.simnet import Link, SimNet

SEED = 7
SIZE = 1_500_000
FIELDS = [f.name for f in dataclasses.fields(ConnectionStats)]


@dataclass
class Run:
    """Snapshots of one seeded lossy transfer (client sends SIZE bytes to the server)."""

    fresh: ConnectionStats  # the client right after connect(): SYN-SENT
    sending: ConnectionStats  # right after the application wrote everything
    mid: ConnectionStats  # client, ESTABLISHED, data in flight, no recovery
    mid_server: ConnectionStats
    recovering: ConnectionStats  # client during a fast recovery, with SACKed data
    holed: ConnectionStats  # server holding out-of-order data
    end: ConnectionStats  # client after the close (TIME-WAIT)
    end_server: ConnectionStats
    client: Connection
    server: Connection
    config: Config


@functools.lru_cache(maxsize=1)
def lossy_run() -> Run:
    net = SimNet(seed=SEED)
    net.record = False
    config = Config(pacing=True)
    a = net.host("a", config=config)
    b = net.host("b", listening=True, config=config)
    lossy = Link(delay=0.01, loss=0.03, duplicate=0.02, reorder=0.03)
    net.connect_hosts(a, b, lossy, Link(delay=0.01, duplicate=0.01))
    client = a.connect(b, 80)
    fresh = ConnectionStats.of(client)
    net.run_until(lambda: client.state is State.ESTABLISHED)
    server = b.accepted[0]
    client.send(random.Random(SEED).randbytes(SIZE), net.now)
    sending = ConnectionStats.of(client)
    net.run_until(
        lambda: (
            client.stats_counters["bytes_acked"] > 100_000
            and not client._in_recovery
            and client._flight > 0
        )
    )
    mid, mid_server = ConnectionStats.of(client), ConnectionStats.of(server)
    net.run_until(lambda: client._in_recovery and client._log.sacked_bytes() > 0)
    recovering = ConnectionStats.of(client)
    net.run_until(lambda: len(server._reassembly) > 0)
    holed = ConnectionStats.of(server)
    a.close(client)
    net.run_until(lambda: b.got_eof(server), timeout=600)
    b.close(server)
    net.run_until(lambda: client.state is State.TIME_WAIT and server.is_closed, timeout=600)
    return Run(
        fresh,
        sending,
        mid,
        mid_server,
        recovering,
        holed,
        ConnectionStats.of(client),
        ConnectionStats.of(server),
        client,
        server,
        config,
    )


def _rto_expired() -> ConnectionStats:
    """A client whose SYN went unanswered for one retransmission timeout."""
    conn = Connection.connect(Config(), local_port=1, remote_port=2, iss=10, mss=1400, now=0.0)
    conn.handle_timer(1.0)
    return ConnectionStats.of(conn)


def _check_state(r: Run) -> None:
    assert (r.fresh.state, r.mid.state, r.end.state) == ("SYN-SENT", "ESTABLISHED", "TIME-WAIT")
    assert r.end_server.state == "CLOSED"


def _check_ports(r: Run) -> None:
    assert r.mid.remote_port == 80 == r.mid_server.local_port
    assert r.mid_server.remote_port == r.mid.local_port == r.client.local_port


def _check_addresses(r: Run) -> None:
    # The core has no addresses; the transport fills them (tests/aio/test_statistics.py).
    assert r.mid.sockname is None and r.mid.peername is None
    named = ConnectionStats.of(r.client, sockname=("127.0.0.1", 1), peername=("10.0.0.1", 2))
    assert (named.sockname, named.peername) == (("127.0.0.1", 1), ("10.0.0.1", 2))


def _check_srtt(r: Run) -> None:
    assert r.fresh.srtt is None
    assert r.mid.srtt is not None and 0.02 <= r.mid.srtt < 0.2  # 20 ms path + queueing


def _check_rttvar(r: Run) -> None:
    assert r.fresh.rttvar is None
    assert r.mid.rttvar is not None and 0 <= r.mid.rttvar < r.mid.srtt  # type: ignore[operator]


def _check_min_rtt(r: Run) -> None:
    assert r.fresh.min_rtt is None
    assert r.mid.min_rtt is not None and 0.0199 <= r.mid.min_rtt <= r.mid.srtt  # type: ignore[operator]


def _check_latest_rtt(r: Run) -> None:
    assert r.fresh.latest_rtt is None
    assert r.mid.latest_rtt is not None and r.mid.latest_rtt >= r.mid.min_rtt  # type: ignore[operator]


def _check_rto(r: Run) -> None:
    assert r.fresh.rto == Config().rto_initial
    # RFC 6298 §2.3 with the 200 ms floor.
    expected = max(r.mid.srtt + max(0.001, 4 * r.mid.rttvar), r.config.rto_min)  # type: ignore[operator]
    assert r.mid.rto == pytest.approx(expected)
    assert _rto_expired().rto == 2 * Config().rto_initial  # backed off (RFC 6298 §5.5)


def _check_rto_backoffs(r: Run) -> None:
    assert r.mid.rto_backoffs == 0
    assert _rto_expired().rto_backoffs == 1


def _check_congestion_control(r: Run) -> None:
    assert r.mid.congestion_control == "cubic"
    conn = Connection.connect(
        Config(congestion_control="newreno"), local_port=1, remote_port=2, iss=1, mss=1400, now=0
    )
    assert ConnectionStats.of(conn).congestion_control == "newreno"


def _check_cwnd(r: Run) -> None:
    assert r.fresh.cwnd == r.config.initial_window * r.client.mss  # RFC 6928's IW10
    assert r.mid.cwnd >= 2 * r.mid.mss


def _check_ssthresh(r: Run) -> None:
    assert r.fresh.ssthresh == 1 << 30  # no loss yet: unbounded
    assert r.recovering.ssthresh < 1 << 30 and r.recovering.ssthresh >= 2 * r.recovering.mss


def _check_in_recovery(r: Run) -> None:
    assert (r.mid.in_recovery, r.recovering.in_recovery, r.end.in_recovery) == (
        False,
        True,
        False,
    )


def _check_bytes_in_flight(r: Run) -> None:
    assert 0 < r.mid.bytes_in_flight <= r.mid.cwnd + r.mid.mss
    assert r.end.bytes_in_flight == 0


def _check_sacked_bytes(r: Run) -> None:
    assert r.recovering.sacked_bytes > 0
    assert r.end.sacked_bytes == 0


def _check_snd_wnd(r: Run) -> None:
    assert r.mid.snd_wnd > 0
    assert r.mid.snd_wnd % (1 << r.mid.snd_wscale) == 0  # scaled by the peer's shift


def _check_rcv_wnd(r: Run) -> None:
    assert 0 < r.mid_server.rcv_wnd <= r.config.receive_buffer


def _check_unsent_bytes(r: Run) -> None:
    assert r.sending.unsent_bytes > SIZE // 2  # the window holds most of it back
    assert r.end.unsent_bytes == 0


def _check_pacing_rate(r: Run) -> None:
    assert r.mid.pacing_rate == pytest.approx(1.2 * r.mid.cwnd / r.mid.srtt) or (
        r.mid.pacing_rate == pytest.approx(2.0 * r.mid.cwnd / r.mid.srtt)  # type: ignore[operator]
    )
    assert r.fresh.pacing_rate is None  # no RTT sample yet
    assert pacing_rate(r.client) is not None
    plain = Connection.connect(Config(), local_port=1, remote_port=2, iss=1, mss=1400, now=0)
    plain.rtt.sample(0.01)
    assert ConnectionStats.of(plain).pacing_rate is None  # pacing off


def _check_mss(r: Run) -> None:
    # Timestamps take 12 bytes of every segment's budget (MSS covers data only).
    assert r.mid.mss == r.mid.peer_mss - 12 or r.mid.mss == r.mid.peer_mss


def _check_peer_mss(r: Run) -> None:
    assert r.fresh.peer_mss == 536  # RFC 9293 §3.7.1 default before the SYN-ACK
    assert r.mid.peer_mss == r.mid_server.advertised_mss


def _check_advertised_mss(r: Run) -> None:
    assert r.mid.advertised_mss == r.client.mss == Config().mss_for(1472)


def _check_pmtu(r: Run) -> None:
    assert r.mid.pmtu == r.client._send_cap + 20
    assert r.mid.pmtu <= 1472  # within the IPv4 UDP payload budget


def _check_sack_enabled(r: Run) -> None:
    assert (r.fresh.sack_enabled, r.mid.sack_enabled) == (False, True)


def _check_timestamps_enabled(r: Run) -> None:
    assert (r.fresh.timestamps_enabled, r.mid.timestamps_enabled) == (False, True)


def _check_snd_wscale(r: Run) -> None:
    assert r.fresh.snd_wscale == 0
    assert r.mid.snd_wscale == r.mid_server.rcv_wscale > 0


def _check_rcv_wscale(r: Run) -> None:
    assert r.mid.rcv_wscale == r.mid_server.snd_wscale > 0


def _check_reassembly_pieces(r: Run) -> None:
    assert r.holed.reassembly_pieces > 0 and r.end_server.reassembly_pieces == 0


def _check_reassembly_bytes(r: Run) -> None:
    assert r.holed.reassembly_bytes >= r.holed.reassembly_pieces
    assert r.end_server.reassembly_bytes == 0


def _check_reassembly_charge(r: Run) -> None:
    assert r.holed.reassembly_charge >= r.holed.reassembly_bytes


def _check_segments_sent(r: Run) -> None:
    assert r.fresh.segments_sent == 1  # the SYN
    assert r.end.segments_sent > SIZE // r.end.mss


def _check_segments_received(r: Run) -> None:
    assert r.end_server.segments_received > SIZE // r.end.mss
    assert r.end_server.segments_received < r.end.segments_sent * 1.05  # loss, duplicates


def _check_bytes_sent(r: Run) -> None:
    assert r.end.bytes_sent >= SIZE + r.end.retransmits  # every byte, plus what was resent


def _check_bytes_received(r: Run) -> None:
    assert r.end_server.bytes_received == SIZE


def _check_bytes_acked(r: Run) -> None:
    assert r.end.bytes_acked == SIZE + 1  # and the FIN, as Linux counts it


def _check_duplicate_bytes_received(r: Run) -> None:
    assert r.end_server.duplicate_bytes_received > 0  # the link duplicates 2 %


def _check_out_of_order_segments(r: Run) -> None:
    assert r.end_server.out_of_order_segments > 0


def _check_retransmits(r: Run) -> None:
    assert r.end.retransmits > 0 and r.fresh.retransmits == 0


def _check_timeouts(r: Run) -> None:
    assert _rto_expired().timeouts == 1


def _check_fast_retransmits(r: Run) -> None:
    assert 0 < r.end.fast_retransmits <= r.end.retransmits


def _check_sack_recoveries(r: Run) -> None:
    assert r.recovering.sack_recoveries >= 1


def _check_dsacks_received(r: Run) -> None:
    assert r.end.dsacks_received > 0  # duplicated data segments come back as D-SACKs


FOLLOWS_CORE = "follows"  # a counter whose counting is tested where it is counted

CHECKS: dict[str, Callable[[Run], None] | str] = {
    "state": _check_state,
    "local_port": _check_ports,
    "remote_port": _check_ports,
    "sockname": _check_addresses,
    "peername": _check_addresses,
    "srtt": _check_srtt,
    "rttvar": _check_rttvar,
    "min_rtt": _check_min_rtt,
    "latest_rtt": _check_latest_rtt,
    "rto": _check_rto,
    "rto_backoffs": _check_rto_backoffs,
    "congestion_control": _check_congestion_control,
    "cwnd": _check_cwnd,
    "ssthresh": _check_ssthresh,
    "in_recovery": _check_in_recovery,
    "bytes_in_flight": _check_bytes_in_flight,
    "sacked_bytes": _check_sacked_bytes,
    "snd_wnd": _check_snd_wnd,
    "rcv_wnd": _check_rcv_wnd,
    "unsent_bytes": _check_unsent_bytes,
    "pacing_rate": _check_pacing_rate,
    "mss": _check_mss,
    "peer_mss": _check_peer_mss,
    "advertised_mss": _check_advertised_mss,
    "pmtu": _check_pmtu,
    "sack_enabled": _check_sack_enabled,
    "timestamps_enabled": _check_timestamps_enabled,
    "snd_wscale": _check_snd_wscale,
    "rcv_wscale": _check_rcv_wscale,
    "reassembly_pieces": _check_reassembly_pieces,
    "reassembly_bytes": _check_reassembly_bytes,
    "reassembly_charge": _check_reassembly_charge,
    "segments_sent": _check_segments_sent,
    "segments_received": _check_segments_received,
    "bytes_sent": _check_bytes_sent,
    "bytes_received": _check_bytes_received,
    "bytes_acked": _check_bytes_acked,
    "duplicate_bytes_received": _check_duplicate_bytes_received,
    "out_of_order_segments": _check_out_of_order_segments,
    "retransmits": _check_retransmits,
    "timeouts": _check_timeouts,
    "fast_retransmits": _check_fast_retransmits,
    "sack_recoveries": _check_sack_recoveries,
    "dsacks_received": _check_dsacks_received,
    # Rare events with their own behaviour tests (tests/core/test_sack.py,
    # test_hostile_peer.py, test_keepalive.py, test_icmp.py, test_amplification.py,
    # tests/sim/test_pmtu.py, test_zero_window.py ...); here: the field is that counter.
    "tail_loss_probes": FOLLOWS_CORE,
    "spurious_recoveries_undone": FOLLOWS_CORE,
    "excess_duplicate_acks": FOLLOWS_CORE,
    "window_probes": FOLLOWS_CORE,
    "keepalive_probes": FOLLOWS_CORE,
    "pmtu_probes": FOLLOWS_CORE,
    "pmtu_probe_failures": FOLLOWS_CORE,
    "pmtu_black_holes": FOLLOWS_CORE,
    "challenge_acks": FOLLOWS_CORE,
    "invalid_acks_suppressed": FOLLOWS_CORE,
    "paws_rejected": FOLLOWS_CORE,
    "missing_timestamp_dropped": FOLLOWS_CORE,
    "peer_mss_clamped": FOLLOWS_CORE,
    "reassembly_dropped": FOLLOWS_CORE,
    "reassembly_pruned": FOLLOWS_CORE,
    "beyond_fin_dropped": FOLLOWS_CORE,
    "persist_timeouts": FOLLOWS_CORE,
    "icmp_rejected": FOLLOWS_CORE,
    "amplification_limited": FOLLOWS_CORE,
    "syn_acks_rate_limited": FOLLOWS_CORE,
}


def test_every_field_has_a_check() -> None:
    assert set(CHECKS) == set(FIELDS)


def test_every_core_counter_is_a_field() -> None:
    conn = Connection.connect(Config(), local_port=1, remote_port=2, iss=1, mss=1400, now=0)
    assert set(conn.stats_counters) == set(_COUNTERS)


@pytest.mark.parametrize("name", FIELDS)
def test_field(name: str) -> None:
    check = CHECKS[name]
    run = lossy_run()
    if callable(check):
        check(run)
    # Every counter field reads the connection's own counter, whatever else is checked.
    if name in _COUNTERS:
        conn = run.client
        before = conn.stats_counters[name]
        assert getattr(ConnectionStats.of(conn), name) == before
        conn.stats_counters[name] += 3
        try:
            assert getattr(ConnectionStats.of(conn), name) == before + 3
        finally:
            conn.stats_counters[name] -= 3
    else:
        assert check != FOLLOWS_CORE


def test_as_dict_has_every_field_in_order() -> None:
    st = lossy_run().end
    assert list(st.as_dict()) == FIELDS
    assert st.as_dict()["bytes_received"] == 0 and st.as_dict()["state"] == "TIME-WAIT"
