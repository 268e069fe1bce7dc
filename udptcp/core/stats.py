"""One connection's statistics as a documented, stable record (like ``ss -ti``).

:class:`ConnectionStats` is what ``transport.get_extra_info("stats")`` returns and what
:meth:`udptcp.aio.endpoint.Endpoint.connection_stats` lists. It is computed on call from
the connection's own state: nothing here runs per segment. Times are in seconds, sizes and
windows in bytes, counters count since the connection was made. Field names follow the
RFCs (``srtt``, ``rttvar``, ``cwnd``, ``ssthresh``) and, where they have the same meaning,
Linux's ``tcp_info``.

New fields may be added in later versions; existing ones keep their name, unit and meaning.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["ConnectionStats", "pacing_rate"]


def pacing_rate(conn: Connection) -> float | None:
    """The rate pacing spreads segments at, in bytes per second: gain × cwnd / SRTT (gain 2
    in slow start, 1.2 after it); None when pacing is off or there is no RTT sample yet."""
    srtt = conn.rtt.srtt
    if not conn.config.pacing or not srtt:
        return None
    gain = 2.0 if conn.cc.cwnd < conn.cc.ssthresh else 1.2
    return gain * conn.cc.cwnd / srtt


@dataclass(frozen=True)
class ConnectionStats:
    """A snapshot of one connection: state, estimators, windows and counters.

    Build one with :meth:`of`; :meth:`as_dict` gives the same figures as a plain ``dict``
    (JSON-ready apart from the address tuples).
    """

    # --- who and where
    state: str
    """RFC 9293 state name: ``"SYN-SENT"``, ``"ESTABLISHED"``, ``"TIME-WAIT"`` ..."""
    local_port: int
    """Local virtual port (the TCP header's port on our side)."""
    remote_port: int
    """Remote virtual port."""
    sockname: Any
    """Local UDP address (``None`` when the core is used without an endpoint)."""
    peername: Any
    """Remote UDP address as this endpoint sees it (behind a relay or NAT: the relay's)."""

    # --- round-trip time (RFC 6298), seconds
    srtt: float | None
    """Smoothed round-trip time; None before the first sample."""
    rttvar: float | None
    """Round-trip time variation; None before the first sample."""
    min_rtt: float | None
    """Smallest round-trip time sampled; None before the first sample."""
    latest_rtt: float | None
    """The most recent round-trip time sample; None before the first."""
    rto: float
    """Current retransmission timeout, backoff included."""
    rto_backoffs: int
    """Retransmission timeouts in a row without progress (the backoff exponent)."""

    # --- congestion and flow control, bytes
    congestion_control: str
    """Name of the congestion controller (``"cubic"``, ``"newreno"`` ...)."""
    cwnd: int
    """Congestion window."""
    ssthresh: int
    """Slow-start threshold (``1 << 30`` until the first loss: unbounded)."""
    in_recovery: bool
    """True during fast recovery (RFC 6675 / 6582), until the recovery point is acknowledged."""
    bytes_in_flight: int
    """Sent and neither acknowledged nor SACKed nor deemed lost (RFC 6675 "pipe")."""
    sacked_bytes: int
    """Outstanding bytes the peer reported received out of order (SACK)."""
    snd_wnd: int
    """The peer's advertised receive window, scaled."""
    rcv_wnd: int
    """The receive window we advertise now, scaled."""
    unsent_bytes: int
    """Written by the application and not yet transmitted once (the write buffer)."""
    pacing_rate: float | None
    """Pacing rate in bytes per second; None when ``Config.pacing`` is off."""

    # --- segment sizes, bytes
    mss: int
    """Data bytes per segment we send now (path MTU probing may raise it)."""
    peer_mss: int
    """MSS the peer announced in its SYN (536 when it announced none)."""
    advertised_mss: int
    """MSS we announced in our SYN: the most data the peer may put in one segment."""
    pmtu: int
    """Largest TCP segment (header included) we send: the UDP payload size in use."""

    # --- options agreed in the handshake
    sack_enabled: bool
    """Both SYNs carried SACK-permitted (RFC 2018)."""
    timestamps_enabled: bool
    """Both SYNs carried timestamps (RFC 7323)."""
    snd_wscale: int
    """Shift the peer applies to its window field (0 without window scaling)."""
    rcv_wscale: int
    """Shift we apply to ours (0 without window scaling)."""

    # --- receive side
    reassembly_pieces: int
    """Out-of-order runs held for reassembly."""
    reassembly_bytes: int
    """Out-of-order data held for reassembly."""
    reassembly_charge: int
    """Memory charged to the reassembly queue (data plus per-piece overhead)."""

    # --- counters: traffic
    segments_sent: int
    """Segments sent, retransmissions and pure ACKs included."""
    segments_received: int
    """Segments received and accepted for processing."""
    bytes_sent: int
    """Data bytes sent, retransmissions included."""
    bytes_received: int
    """Data bytes received in order (delivered or held for the application)."""
    bytes_acked: int
    """Sequence space the peer acknowledged cumulatively: the data, and 1 for our FIN (as
    Linux's ``tcpi_bytes_acked`` counts it)."""
    duplicate_bytes_received: int
    """Data bytes that arrived again after they had been received."""
    out_of_order_segments: int
    """Segments that arrived ahead of a hole."""

    # --- counters: loss recovery
    retransmits: int
    """Segments sent again, for any reason."""
    timeouts: int
    """Retransmission timer expiries (RFC 6298 §5.4), the handshake's included."""
    fast_retransmits: int
    """Retransmissions before the timer: duplicate ACKs, SACK, RACK (RFC 5681/6675/8985)."""
    sack_recoveries: int
    """Fast recoveries driven by the SACK scoreboard (RFC 6675)."""
    tail_loss_probes: int
    """RACK-TLP tail loss probes sent (RFC 8985 §7)."""
    dsacks_received: int
    """D-SACK reports received: the peer got a segment twice (RFC 2883)."""
    spurious_recoveries_undone: int
    """Recoveries undone because D-SACKs showed them needless (RFC 3708)."""
    excess_duplicate_acks: int
    """Duplicate ACKs beyond what our flight can explain, ignored (a peer's ACK division)."""
    window_probes: int
    """Zero-window probes sent (RFC 9293 §3.8.6.1)."""
    keepalive_probes: int
    """Keepalive probes sent (RFC 1122 §4.2.3.6)."""

    # --- counters: path MTU probing (RFC 8899)
    pmtu_probes: int
    """Path MTU probes sent."""
    pmtu_probe_failures: int
    """Path MTU probes that were lost."""
    pmtu_black_holes: int
    """Times the segment size fell back to the base MSS because full segments vanished."""

    # --- counters: hostile or broken peer input, limit hits
    challenge_acks: int
    """Challenge ACKs sent for suspicious RSTs and SYNs (RFC 5961)."""
    invalid_acks_suppressed: int
    """ACKs for data never sent that were dropped without an answer (rate limit)."""
    paws_rejected: int
    """Segments dropped by PAWS: an old timestamp (RFC 7323 §5)."""
    missing_timestamp_dropped: int
    """Segments without the timestamps both sides agreed on, dropped (RFC 7323 §3.2)."""
    peer_mss_clamped: int
    """Absurd MSS values in the peer's SYN clamped to ``Config.min_mss``."""
    reassembly_dropped: int
    """Out-of-order segments dropped at ``Config.max_reassembly_pieces`` or the receive
    buffer's charge."""
    reassembly_pruned: int
    """Times held out-of-order data was dropped (highest first) so that in-order data the
    window promised fits in ``Config.receive_buffer`` (RFC 2018 §8 reneging)."""
    beyond_fin_dropped: int
    """Segments whose data lay beyond the peer's FIN, dropped (the stream ends there)."""
    persist_timeouts: int
    """Connections ended because window probes behind a shut window went unanswered for
    ``Config.user_timeout``."""
    icmp_rejected: int
    """ICMP errors ignored because they quoted no segment we have outstanding."""
    amplification_limited: int
    """Segments held back by the 3× anti-amplification rule before the peer's address was
    proven (a passive open)."""
    syn_acks_rate_limited: int
    """Duplicate SYNs that got no SYN-ACK of their own (rate limit)."""

    @classmethod
    def of(cls, conn: Connection, *, sockname: Any = None, peername: Any = None) -> ConnectionStats:
        """The statistics of ``conn`` now."""
        c = conn.stats_counters
        rtt = conn.rtt
        have_rtt = rtt.srtt is not None
        counters = {name: c[name] for name in _COUNTERS}
        return cls(
            state=conn.state.value,
            local_port=conn.local_port,
            remote_port=conn.remote_port,
            sockname=sockname,
            peername=peername,
            srtt=rtt.srtt,
            rttvar=rtt.rttvar if have_rtt else None,
            min_rtt=rtt.min_rtt,
            latest_rtt=rtt.latest,
            rto=rtt.rto,
            rto_backoffs=conn._retries,
            congestion_control=conn.config.congestion_control,
            cwnd=conn.cc.cwnd,
            ssthresh=conn.cc.ssthresh,
            in_recovery=conn._in_recovery,
            bytes_in_flight=conn._flight,
            sacked_bytes=conn._log.sacked_bytes(),
            snd_wnd=conn.snd_wnd,
            rcv_wnd=conn.rcv_wnd,
            unsent_bytes=conn.unsent_bytes,
            pacing_rate=pacing_rate(conn),
            mss=conn._eff_mss,
            peer_mss=conn.peer_mss,
            advertised_mss=conn.mss,
            pmtu=conn._send_cap + 20,
            sack_enabled=conn.sack_ok,
            timestamps_enabled=conn.ts_enabled,
            snd_wscale=conn.snd_wscale,
            rcv_wscale=conn.rcv_wscale,
            reassembly_pieces=len(conn._reassembly),
            reassembly_bytes=conn._reassembly.size,
            reassembly_charge=conn._reassembly.charge,
            **counters,
        )

    def as_dict(self) -> dict[str, Any]:
        """The same figures as a ``dict``, in field order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


_NAMES = [f.name for f in dataclasses.fields(ConnectionStats)]
#: The fields copied from ``Connection.stats_counters``: every one of its counters.
_COUNTERS = tuple(_NAMES[_NAMES.index("segments_sent") :])
