"""``getsockopt(IPPROTO_TCP, TCP_INFO)`` for a udptcp connection: Linux's ``struct tcp_info``.

Tools written for kernel TCP read a socket's ``TCP_INFO`` (``ss -ti`` does, and so do
monitoring libraries); :class:`~udptcp.aio.connsocket.ConnectionSocket` answers it with the
same layout, filled from :class:`~udptcp.core.stats.ConnectionStats`. The layout is the one
in Linux's ``include/uapi/linux/tcp.h`` (280 bytes as of Linux 6.18; a caller that asks for
fewer bytes gets the prefix, as from the kernel). Units as the kernel's: times in
microseconds, ``cwnd`` and ``ssthresh`` in segments, byte counters in bytes.

Fields udptcp does not track are zero: ``ato``, ``lost``, ``retrans`` (in flight),
``fackets``, the ``last_*`` times, ``delivery_rate``, the ``busy``/``limited`` times,
``delivered``, ``bytes_retrans``, ``reord_seen``, ``rehash``, ``total_rto_time`` and the ECN counters.
``pmtu`` is the IP datagram that carries our largest segment: its UDP payload plus the UDP
and IP headers.
"""

from __future__ import annotations

import struct

from udptcp.core.stats import ConnectionStats

__all__ = ["TCP_INFO_SIZE", "TCP_STATES", "pack_tcp_info"]

#: Linux's ``TCP_INFO`` option number (``socket.TCP_INFO`` where Python defines it).
TCP_INFO = 11
#: tcp_states.h: the kernel's numbers for the RFC 9293 states.
TCP_STATES = {
    "ESTABLISHED": 1,
    "SYN-SENT": 2,
    "SYN-RECEIVED": 3,
    "FIN-WAIT-1": 4,
    "FIN-WAIT-2": 5,
    "TIME-WAIT": 6,
    "CLOSED": 7,
    "CLOSE-WAIT": 8,
    "LAST-ACK": 9,
    "LISTEN": 10,
    "CLOSING": 11,
}
# tcpi_ca_state (tcp.h enum tcp_ca_state).
_CA_OPEN, _CA_RECOVERY, _CA_LOSS = 0, 3, 4
# tcpi_options bits.
_OPT_TIMESTAMPS, _OPT_SACK, _OPT_WSCALE = 1, 2, 4
# Linux's "no ssthresh yet" (TCP_INFINITE_SSTHRESH) and "no pacing limit" (~0ULL).
_INFINITE_SSTHRESH = 0x7FFFFFFF
_NO_PACING = (1 << 64) - 1
_U32 = 0xFFFFFFFF

# Native byte order and alignment, as the kernel hands it to user space.
_LAYOUT = struct.Struct(
    "="
    "8B"  # state, ca_state, retransmits, probes, backoff, options, wscales, app_limited
    "4I"  # rto, ato, snd_mss, rcv_mss
    "5I"  # unacked, sacked, lost, retrans, fackets
    "4I"  # last_data_sent, last_ack_sent, last_data_recv, last_ack_recv
    "8I"  # pmtu, rcv_ssthresh, rtt, rttvar, snd_ssthresh, snd_cwnd, advmss, reordering
    "2I"  # rcv_rtt, rcv_space
    "I"  # total_retrans
    "4Q"  # pacing_rate, max_pacing_rate, bytes_acked, bytes_received
    "2I"  # segs_out, segs_in
    "4I"  # notsent_bytes, min_rtt, data_segs_in, data_segs_out
    "Q"  # delivery_rate
    "3Q"  # busy_time, rwnd_limited, sndbuf_limited
    "2I"  # delivered, delivered_ce
    "2Q"  # bytes_sent, bytes_retrans
    "2I"  # dsack_dups, reord_seen
    "I"  # rcv_ooopack
    "2I"  # snd_wnd, rcv_wnd
    "I"  # rehash
    "2H"  # total_rto, total_rto_recoveries
    "I"  # total_rto_time
    "7I"  # received_ce and the Accurate ECN byte counters (Linux 6.18)
    "2H"  # accecn_fail_mode, accecn_opt_seen
)
#: ``sizeof(struct tcp_info)`` of the layout above.
TCP_INFO_SIZE = _LAYOUT.size


def _us(seconds: float | None) -> int:
    return 0 if seconds is None else min(int(seconds * 1e6), _U32)


def _u32(value: int) -> int:
    return max(0, min(value, _U32))


def pack_tcp_info(st: ConnectionStats, ip_header: int = 20) -> bytes:
    """``struct tcp_info`` for ``st``; ``ip_header`` is 20 (IPv4) or 40 (IPv6)."""
    mss = max(st.mss, 1)
    options = (
        (_OPT_TIMESTAMPS if st.timestamps_enabled else 0)
        | (_OPT_SACK if st.sack_enabled else 0)
        | (_OPT_WSCALE if st.snd_wscale or st.rcv_wscale else 0)
    )
    if st.rto_backoffs:
        ca_state = _CA_LOSS
    elif st.in_recovery:
        ca_state = _CA_RECOVERY
    else:
        ca_state = _CA_OPEN
    ssthresh = st.ssthresh // mss if st.ssthresh < 1 << 30 else _INFINITE_SSTHRESH
    pacing = _NO_PACING if st.pacing_rate is None else int(st.pacing_rate)
    return _LAYOUT.pack(
        TCP_STATES.get(st.state, 7),
        ca_state,
        min(st.rto_backoffs, 255),
        0,  # probes: zero-window / keepalive probes unanswered now (not tracked)
        min(st.rto_backoffs, 255),
        options,
        (st.snd_wscale & 0xF) | (st.rcv_wscale & 0xF) << 4,
        0,
        _us(st.rto),
        0,  # ato
        _u32(st.mss),
        _u32(st.advertised_mss),
        _u32(-(-st.bytes_in_flight // mss)),  # unacked, in segments
        _u32(-(-st.sacked_bytes // mss)),  # sacked, in segments
        0,  # lost
        0,  # retrans
        0,  # fackets
        0,
        0,
        0,
        0,  # last_* times
        _u32(st.pmtu + 8 + ip_header),
        _u32(st.rcv_wnd),  # rcv_ssthresh: the window we would offer
        _us(st.srtt),
        _us(st.rttvar),
        _u32(ssthresh),
        _u32(st.cwnd // mss),
        _u32(st.advertised_mss),
        3,  # reordering: the duplicate-ACK threshold
        0,  # rcv_rtt
        _u32(st.rcv_wnd),  # rcv_space
        _u32(st.retransmits),
        pacing,
        _NO_PACING,
        st.bytes_acked,
        st.bytes_received,
        _u32(st.segments_sent),
        _u32(st.segments_received),
        _u32(st.unsent_bytes),
        _us(st.min_rtt),
        0,  # data_segs_in (not counted apart from pure ACKs)
        0,  # data_segs_out
        0,  # delivery_rate
        0,
        0,
        0,  # busy / rwnd_limited / sndbuf_limited times
        0,  # delivered
        0,  # delivered_ce
        st.bytes_sent,
        0,  # bytes_retrans
        _u32(st.dsacks_received),
        0,  # reord_seen
        _u32(st.out_of_order_segments),
        _u32(st.snd_wnd),
        _u32(st.rcv_wnd),
        0,  # rehash
        min(st.timeouts, 0xFFFF),
        0,  # total_rto_recoveries
        0,  # total_rto_time
        *(0,) * 9,  # no ECN
    )
