"""The RFC 9293 connection state machine, sans I/O.

A :class:`Connection` is fed segments (:meth:`Connection.receive`), application calls
(:meth:`send`, :meth:`shutdown`, :meth:`close`, :meth:`abort`) and timer expiries
(:meth:`handle_timer`), each with the current time as an argument. It answers with segments to
transmit (:meth:`take_segments`), events for the application (:meth:`take_events`) and its
next deadline (:meth:`get_timer`). It never touches a socket, an event loop or a clock.

Incoming segments are processed in the order of RFC 9293 §3.10.7.4 ("SEGMENT ARRIVES", other
states): sequence check, RST, SYN, ACK, text, FIN. Section numbers in comments refer to RFC 9293
unless another RFC is named.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from .amplification import AmplificationBudget, received_size, sent_size
from .buffers import DROPPED, ReassemblyQueue, SendBuffer
from .config import Config
from .congestion import CongestionControl, create
from .cookies import encode_ts_choices
from .errors import refused, reset, timed_out
from .events import Connected, ConnectionClosed, DataReceived, EofReceived, Event
from .rack import SentLog
from .rtt import RttEstimator
from .sack import DUP_THRESH, Scoreboard
from .segment import ACK, FIN, PSH, RST, SYN, Options, Segment
from .seq import seq_add, seq_diff, seq_ge, seq_gt, seq_le, seq_lt, seq_min

_MASK = 0xFFFFFFFF
_HALF = 0x80000000
# RFC 9293 §3.7.1: the MSS to assume when the peer sends no MSS option (IPv4).
_DEFAULT_PEER_MSS = 536
# The window field is 16 bits; RFC 7323 §2.3 caps the scale shift at 14.
_MAX_WINDOW_FIELD = 0xFFFF
_MAX_WSCALE = 14
# NOP, NOP, timestamps: what RFC 7323 Appendix A lays out on every segment once agreed.
_TIMESTAMPS_LEN = 12
# RFC 5961 §7: bound challenge ACKs so they cannot be used as an amplifier.
_CHALLENGE_ACKS_PER_SECOND = 10
# One ACK per this interval for unacceptable segments (out of window, PAWS-old, acknowledging
# unsent data), as Linux's net.ipv4.tcp_invalid_ratelimit (500 ms).
_INVALID_ACK_INTERVAL = 0.5
# Out-of-order arrivals remembered for SACK blocks: one more than the blocks that fit.
_SACK_RECENT = 5
# RFC 8985 §7.2 adds a worst-case delayed-ACK time to a lone segment's probe timeout; it
# suggests 200 ms, but both udptcp (Config.delayed_ack) and Linux acknowledge within 40 ms.
_WC_DELACK = 0.04
# Probes allowed before the RTO takes over. RFC 8985 sends one; a second halves the
# chance that a lost probe (or its ACK) leaves the repair to the RTO on a lossy path.
_MAX_TLPS = 2
# Receive-buffer auto-tuning starts from this much window and grows towards
# Config.receive_buffer as the application proves it consumes more per round trip.
_INITIAL_RCV_SPACE = 128 * 1024
# Persist timer bounds (RFC 1122 §4.2.2.17 leaves them open; Linux uses RTO-based backoff).
_PERSIST_MAX = 60.0
# Least time between two SYN-ACKs that duplicate SYNs earn in SYN-RECEIVED (Linux bounds
# such out-of-window answers by tcp_invalid_ratelimit, 500 ms): a burst of copies of one
# SYN gets one answer, not one each.
_SYNACK_MIN_INTERVAL = 0.5
#: Consecutive timer-driven retransmissions (RTO, zero-window or keepalive probe), each
#: answered by ICMP port unreachable with nothing from the peer meanwhile, after which a
#: connection is taken to be dead (see Connection.icmp_unreachable).
ICMP_DEAD_ROUNDS = 2
#: SYN transmissions answered only by datagrams that are not udptcp segments after which a
#: connect is refused (see Connection.foreign_datagram).
FOREIGN_SYN_ROUNDS = 2


class State(enum.Enum):
    """The eleven connection states of RFC 9293 §3.3.2."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


S = State

#: The legal transitions (RFC 9293 Figure 5, plus simultaneous open and the error paths of
#: §3.10.7: any state may drop to CLOSED on RST, abort or timeout). A listener never becomes a
#: connection here: the endpoint creates a connection in LISTEN and moves it to SYN-RECEIVED.
TRANSITIONS: dict[State, frozenset[State]] = {
    S.CLOSED: frozenset({S.SYN_SENT}),
    S.LISTEN: frozenset({S.SYN_RECEIVED, S.CLOSED}),
    S.SYN_SENT: frozenset({S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSED}),
    S.SYN_RECEIVED: frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.CLOSED}),
    S.ESTABLISHED: frozenset({S.FIN_WAIT_1, S.CLOSE_WAIT, S.CLOSED}),
    S.FIN_WAIT_1: frozenset({S.FIN_WAIT_2, S.CLOSING, S.TIME_WAIT, S.CLOSED}),
    S.FIN_WAIT_2: frozenset({S.TIME_WAIT, S.CLOSED}),
    S.CLOSE_WAIT: frozenset({S.LAST_ACK, S.CLOSED}),
    S.CLOSING: frozenset({S.TIME_WAIT, S.CLOSED}),
    S.LAST_ACK: frozenset({S.CLOSED}),
    S.TIME_WAIT: frozenset({S.CLOSED}),
}

# States in which the connection is synchronized (§3.5: both ISNs known and acknowledged).
_SYNCHRONIZED = frozenset(
    {S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK, S.TIME_WAIT}
)
# States in which an idle connection is probed (RFC 1122 §4.2.3.6).
_KEEPALIVE_STATES = frozenset({S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_2})
# States in which an owed ACK is sent. In SYN-RECEIVED that is only the answer to an
# unacceptable segment or a challenge (RFC 9293 §3.10.7.4, RFC 5961 §3.2/§4.2): a repeated
# SYN is answered with the SYN,ACK instead.
_ACKS = _SYNCHRONIZED | {S.SYN_RECEIVED}
# States whose incoming text is delivered (§3.10.7.4, seventh step).
_RECEIVES_TEXT = frozenset({S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2})
# States from which our own data (and FIN) may still be transmitted.
_SENDS_DATA = frozenset({S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.CLOSING, S.LAST_ACK})
# States in which the application may still queue data.
_ACCEPTS_WRITES = frozenset({S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT})


#: Connection counters of hostile or broken peer input (and the limits it hit), which an
#: endpoint also totals over all its connections (``Endpoint.statistics()``).
PEER_INPUT_COUNTERS = (
    "peer_mss_clamped",
    "challenge_acks",
    "invalid_acks_suppressed",
    "excess_duplicate_acks",
    "missing_timestamp_dropped",
    "paws_rejected",
    "reassembly_dropped",
    "icmp_rejected",
)


class LocalProtocolError(RuntimeError):
    """The local caller asked for something the connection's state does not allow."""


def rst_for(seg: Segment) -> Segment | None:
    """The reset a CLOSED port answers ``seg`` with (§3.10.7.1), or ``None`` for a RST."""
    if seg.flags & RST:
        return None
    if seg.flags & ACK:
        return Segment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
    return Segment(seg.dst_port, seg.src_port, 0, seq_add(seg.seq, seg.seg_len), RST | ACK, 0)


class Connection:
    """One TCP connection: the transmission control block and its state machine."""

    def __init__(self, config: Config, *, local_port: int, remote_port: int, iss: int, mss: int):
        self.config = config
        self.state = State.CLOSED
        #: Every state entered, in order, starting with the initial one (for tests and tracing).
        self.state_history: list[State] = [State.CLOSED]
        self.local_port = local_port
        self.remote_port = remote_port
        self.passive = False

        # Send sequence space (§3.3.1).
        self.iss = iss & _MASK
        self.snd_una = self.iss
        self.snd_nxt = self.iss
        self.snd_max = self.iss  # highest sequence number sent + 1 (snd_nxt rewinds on RTO)
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        # Receive sequence space.
        self.irs = 0
        self.rcv_nxt = 0
        self._rcv_adv = 0  # right edge of the window last advertised (never moves left)

        # Largest payload we accept (advertised in our SYN): the base size, or the probing
        # ceiling when path MTU probing may send bigger segments our way.
        self.mss = mss if config.pmtu_max is None else max(mss, config.pmtu_max - 20)
        # Path MTU probing (RFC 8899/4821): sizes are TCP payload + 20, i.e. MSS units.
        self._base_mss = mss  # proven to fit without probing
        self._send_cap = mss  # largest segment (data + options) we currently send
        self._pmtu_low = mss
        self._pmtu_high = mss if config.pmtu_max is None else config.pmtu_max - 20
        self._probe: tuple[int, int, int] | None = None  # (start_off, end_off, size)
        self._probe_after = 0.0  # no new probe before this time
        self.peer_mss = _DEFAULT_PEER_MSS
        # RFC 7323 window scaling: the shift we apply to our window field, and the one the
        # peer applies to its own. Both stay 0 unless both SYNs carried the option.
        self._wscale_offer = _wscale_for(config.receive_buffer)
        self.wscale_ok = False
        self.rcv_wscale = 0
        self.snd_wscale = 0
        # RFC 2018 selective acknowledgments.
        self.sack_ok = False
        self._sb = Scoreboard()  # sender: what the peer SACKed (stream offsets)
        self._log = SentLog()  # sender: outstanding segments and their send times (RACK)
        self._rack_deadline: float | None = None  # RACK reordering-window timer
        self._pace_deadline: float | None = None  # next paced send (token bucket refill)
        self._pace_credit = 0.0  # bytes that may go out now
        self._pace_time = 0.0  # when the credit was last topped up
        # Undoing a congestion response to reordering (RFC 3708 D-SACK detection): the
        # window before the response, and the retransmissions not yet reported as duplicates.
        self._undo_cwnd: int | None = None
        self._undo_ssthresh = 0
        self._undo_retrans = 0
        # Stream offset -> copies of that segment resent during the last recovery (at most
        # one entry per segment it resent): only a D-SACK for one of these says a
        # retransmission was needless; a duplicate the network made says nothing of the kind.
        self._undo_ranges: dict[int, int] = {}
        # Proportional Rate Reduction (RFC 6937) during SACK recovery: bytes the peer
        # reported delivered since recovery began, the send counter when it began (so
        # prr_out = bytes_sent - base), and RecoverFS, the flight at its start.
        self._prr_delivered = 0
        self._prr_out_base = 0
        self._recover_fs = 1
        # RFC 9438 §5.8 / RFC 7661: whether the congestion window, not the peer's window
        # or the application, bounded the flight in the current window of data, and the
        # largest flight in it (Linux's tcp_cwnd_validate keeps the same two facts).
        self._cwnd_limited = False
        self._max_flight = 0
        self._cwnd_usage_end = iss
        self._reo_mult = 1  # RFC 8985 §6.2: grows with each D-SACK
        # Receiver: offsets of the latest out-of-order arrivals, newest first, one per run
        # (RFC 2018 §4: the first SACK block holds the newest, then the most recent others).
        self._sack_recent: list[int] = []
        self._dsack: tuple[int, int] | None = None  # receiver: duplicate to report (seqs)
        # RFC 7323 timestamps.
        self.ts_enabled = False
        self.ts_recent = 0
        self._ts_offset = iss & _MASK  # TSval = ms clock + a per-connection offset (§5.4)
        self._retx_tsval = self._ts_offset  # our TSval at the latest retransmission
        self._ts_last: int | None = None  # the highest TSval sent
        self._last_ack_sent = 0
        self._now = 0.0  # time of the call being processed (every entry point sets it)
        self.nodelay = not config.nagle

        self._sendbuf = SendBuffer()
        self._fin_queued = False
        self._reassembly = ReassemblyQueue()
        self._rcv_off = 0  # stream offset of rcv_nxt (bytes received in order)
        self._held = bytearray()  # in-order data held while reading is paused
        # Receive-buffer auto-tuning (like Linux's tcp_rcv_space_adjust): the buffer in use,
        # and the bytes delivered since the current measurement round began.
        self._rcv_space = min(config.receive_buffer, _INITIAL_RCV_SPACE)
        self._drs_bytes = 0
        self._drs_start = 0.0
        self._drs_last = 0  # bytes delivered in the last complete measurement round
        self._rcv_rtt: float | None = None  # receiver-side RTT from echoed timestamps
        self._reading = True
        self._eof_pending = False  # FIN arrived while data was held
        self._fin_off: int | None = None  # stream offset of an out-of-order FIN
        self._discard_input = False  # set by close(): no more data for the application

        self.rtt = RttEstimator(config.rto_initial, config.rto_min, config.rto_max)
        self.cc: CongestionControl = create(config.congestion_control, mss, config.initial_window)
        self._dupacks = 0
        self._inflation_left = 0  # bytes of duplicate-ACK inflation this recovery may still take
        self._in_recovery = False
        self._recover = self.iss  # RFC 6582 "recover"
        self._rtt_seq: int | None = None  # Karn: one timed segment at a time
        self._rtt_time = 0.0
        self._retries = 0
        self._handshake_lost = False  # a SYN or SYN,ACK had to be sent again
        self._syn_sent_at: float | None = None  # when our SYN or SYN,ACK last went out
        # Passive open until ESTABLISHED: the peer's address is unproven, so what we send
        # it is bounded by what it sent us (RFC 9000 §8.1's rule; see .amplification).
        self._amp: AmplificationBudget | None = None
        # Bytes a layer between us and the wire adds to each SYN/SYN-ACK and to every other
        # segment (secure mode's handshake message, its sealing): the budget counts them.
        self._wire_syn_extra = 0
        self._wire_extra = 0
        self._una_since: float | None = None  # when the oldest unacknowledged data went out

        self._rto_deadline: float | None = None
        self._delack_deadline: float | None = None
        self._persist_deadline: float | None = None
        self._pto_deadline: float | None = None  # RFC 8985 tail loss probe
        self._tlp_out = 0  # probes sent since the last ACK progress (at most _MAX_TLPS)
        self._persist_backoff = 1
        self._close_deadline: float | None = None  # TIME-WAIT or FIN-WAIT-2 timer
        self._keepalive_deadline: float | None = None
        self._keepalive_unanswered = 0
        self.keepalive = config.keepalive
        self.keepalive_idle = config.keepalive_idle
        self.keepalive_interval = config.keepalive_interval
        self.keepalive_count = config.keepalive_count
        self._ack_now = False
        self._unacked_bytes = 0  # in-order bytes received since our last ACK
        # receive_many(): a train is being processed; the ACK owed for its in-order data,
        # and the one DataReceived event that collects the data it delivers.
        self._batch = False
        self._ack_owed = False
        self._rx_event: DataReceived | None = None
        self._rx_chunks: list[bytes] = []
        # _send_data(): a run of segments is being built; the window field and options
        # they share, once the first of them has computed them.
        self._bursting = False
        self._burst: tuple[int, Options | None] | None = None
        self._challenge_window = 0.0
        self._challenge_count = 0
        self._invalid_ack_time = -_INVALID_ACK_INTERVAL
        self._closed_reported = False
        self._app_closed = False  # close() called: FIN-WAIT-2 timeout applies
        #: The latest ICMP error that did not end the connection (RFC 1122 §4.2.3.9).
        self.soft_error: str | None = None
        # The peer's port answering ICMP port unreachable (see icmp_unreachable): timer-
        # driven retransmissions since the peer last sent anything, the latest of them that
        # drew an unreachable, and how many in a row did.
        self._silent_rounds = 0
        self._unreach_round = 0
        self._unreach_streak = 0
        # SYN-SENT: SYN transmissions answered by datagrams that are not segments (see
        # foreign_datagram), and the latest such transmission (_retries + 1; 0: none).
        self._foreign_rounds = 0
        self._foreign_round = 0

        self._out: list[Segment] = []
        self._events: list[Event] = []
        self.stats_counters: dict[str, int] = dict.fromkeys(
            (
                "segments_sent",
                "segments_received",
                "bytes_sent",
                "bytes_received",
                "bytes_acked",
                "retransmits",
                "timeouts",
                "fast_retransmits",
                "duplicate_bytes_received",
                "out_of_order_segments",
                "challenge_acks",
                "window_probes",
                "paws_rejected",
                "missing_timestamp_dropped",
                "invalid_acks_suppressed",
                "keepalive_probes",
                "dsacks_received",
                "sack_recoveries",
                "tail_loss_probes",
                "excess_duplicate_acks",
                "spurious_recoveries_undone",
                "peer_mss_clamped",
                "pmtu_probes",
                "pmtu_probe_failures",
                "pmtu_black_holes",
                "amplification_limited",
                "syn_acks_rate_limited",
                "reassembly_dropped",
                "icmp_rejected",
            ),
            0,
        )

    # ------------------------------------------------------------------ opening

    @classmethod
    def connect(
        cls, config: Config, *, local_port: int, remote_port: int, iss: int, mss: int, now: float
    ) -> Connection:
        """Active open (§3.10.1): send SYN, enter SYN-SENT."""
        conn = cls(config, local_port=local_port, remote_port=remote_port, iss=iss, mss=mss)
        conn._now = now
        conn._set_state(S.SYN_SENT)
        conn._send_syn(now)
        return conn

    @classmethod
    def accept(
        cls,
        config: Config,
        syn: Segment,
        *,
        iss: int,
        mss: int,
        now: float,
        received: int | None = None,
        wire_extra: tuple[int, int] = (0, 0),
    ) -> Connection:
        """Passive open from a listener receiving ``syn`` (§3.10.7.2): answer SYN-ACK.

        ``received`` is the size of the datagram that carried ``syn`` (by default the
        least its segment can take): until the handshake completes, the connection sends
        the peer at most three times the bytes it received from it, SYN-ACK
        retransmissions and resets included (see :mod:`udptcp.core.amplification`).
        ``wire_extra`` is what the layer below adds to each SYN-ACK and to each other
        segment on its way out (secure mode), which that budget counts too.
        """
        conn = cls(config, local_port=syn.dst_port, remote_port=syn.src_port, iss=iss, mss=mss)
        conn._now = now
        conn._wire_syn_extra, conn._wire_extra = wire_extra
        conn.passive = True
        conn.state = S.LISTEN
        conn.state_history = [S.LISTEN]
        conn._amp = AmplificationBudget(received if received is not None else received_size(syn))
        conn._take_peer_syn(syn)
        conn._set_state(S.SYN_RECEIVED)
        conn._send_syn(now)
        return conn

    @classmethod
    def from_cookie(
        cls,
        config: Config,
        ack: Segment,
        *,
        iss: int,
        mss: int,
        peer_mss: int,
        wscale: int | None,
        sack: bool,
        now: float,
    ) -> Connection:
        """Passive open completed by a SYN cookie (RFC 4987 §3.6).

        The caller has checked that ``ack`` acknowledges the cookie ``iss`` and recovered
        from it the peer's MSS and, from its timestamps, the peer's window-scale shift
        (``None``: no window scaling) and SACK-permitted choices. The connection is built
        as :meth:`accept` would have built it from that SYN, as though the SYN-ACK of
        :meth:`cookie_syn_ack` had been sent, and then takes ``ack`` as its final
        handshake segment: LISTEN, SYN-RECEIVED, ESTABLISHED, with data carried on the ACK
        delivered. It never holds an amplification budget: the ACK proved the address.
        """
        ts = ack.options.timestamps if ack.options is not None else None
        use_ts = ts is not None and config.timestamps
        syn = Segment(
            ack.src_port,
            ack.dst_port,
            seq_add(ack.seq, -1),
            0,
            SYN,
            0,
            Options(
                mss=peer_mss,
                wscale=wscale if use_ts else None,
                sack_permitted=sack and use_ts,
                timestamps=(ts[0], 0) if use_ts and ts is not None else None,
            ),
        )
        conn = cls(config, local_port=ack.dst_port, remote_port=ack.src_port, iss=iss, mss=mss)
        conn._now = now
        conn.passive = True
        conn.state = S.LISTEN
        conn.state_history = [S.LISTEN]
        conn._take_peer_syn(syn)
        conn._set_state(S.SYN_RECEIVED)
        # What sending the cookie's SYN,ACK would have recorded: our SYN is outstanding,
        # the window it advertised (a fresh connection's, as in cookie_syn_ack), the ACK.
        conn.snd_nxt = conn.snd_max = seq_add(conn.iss, 1)
        conn._window_field(syn=True)
        conn._ack_sent(conn.rcv_nxt)
        conn.receive(ack, now)
        return conn

    @staticmethod
    def cookie_syn_ack(config: Config, syn: Segment, *, iss: int, mss: int, now: float) -> Segment:
        """The SYN-ACK that answers ``syn`` with SYN cookie ``iss``, keeping no state.

        It is the SYN-ACK :meth:`accept` would send (a fresh connection's window, our MSS,
        and only options the SYN offered), except that without timestamps it offers neither
        window scaling nor SACK, and with them its TSval carries the peer's window-scale
        and SACK choices (``udptcp.core.cookies.encode_ts_choices``) for the final ACK to
        echo back. :meth:`from_cookie` rebuilds the same connection from that ACK.
        """
        opts = syn.options
        our_mss = mss if config.pmtu_max is None else max(mss, config.pmtu_max - 20)
        wscale: int | None = None
        sack = False
        timestamps: tuple[int, int] | None = None
        if opts is not None and opts.timestamps is not None and config.timestamps:
            peer_wscale = opts.wscale if config.window_scaling else None
            sack = opts.sack_permitted and config.sack
            tsval = encode_ts_choices(
                (int(now * 1000) + iss) & _MASK,  # _tsval()'s clock with _ts_offset = iss
                None if peer_wscale is None else min(peer_wscale, _MAX_WSCALE),
                sack,
            )
            timestamps = (tsval, opts.timestamps[0])
            if peer_wscale is not None:
                wscale = _wscale_for(config.receive_buffer)
        window = min(config.receive_buffer, _INITIAL_RCV_SPACE, _MAX_WINDOW_FIELD)
        return Segment(
            syn.dst_port,
            syn.src_port,
            iss & _MASK,
            seq_add(syn.seq, 1),
            SYN | ACK,
            window,
            Options(mss=our_mss, wscale=wscale, sack_permitted=sack, timestamps=timestamps),
        )

    def _take_peer_syn(self, syn: Segment) -> None:
        # The window our own SYN offered (active side) holds from the peer's ISN + 1 on.
        offered = seq_diff(self._rcv_adv, self.rcv_nxt) if self.state is S.SYN_SENT else 0
        self.irs = syn.seq
        self.rcv_nxt = seq_add(syn.seq, 1)
        self._rcv_adv = seq_add(self.rcv_nxt, max(offered, 0))
        opts = syn.options
        cfg = self.config
        if opts is not None:
            if opts.mss is not None:
                # A hostile MSS (0, 1, 13 ...) would cost a segment per byte: raise it.
                self.peer_mss = max(opts.mss, cfg.min_mss)
                if opts.mss < cfg.min_mss:
                    self.stats_counters["peer_mss_clamped"] += 1
            # An option is in use only when both SYNs carried it (RFC 7323 §2.2, §3.2). On
            # the active side our SYN offered what the config enables; on the passive side
            # our SYN,ACK will answer exactly what is agreed here.
            if opts.wscale is not None and cfg.window_scaling:
                self.wscale_ok = True
                self.snd_wscale = min(opts.wscale, _MAX_WSCALE)
                self.rcv_wscale = self._wscale_offer
            if opts.sack_permitted and cfg.sack:
                self.sack_ok = True
            if opts.timestamps is not None and cfg.timestamps:
                self.ts_enabled = True
                self.ts_recent = opts.timestamps[0]
        # The SYN's window is never scaled (RFC 7323 §2.2).
        self.snd_wnd = syn.window
        self.snd_wl1 = syn.seq
        self.max_snd_wnd = syn.window
        # Now the segment size is known: the congestion window counts in it (RFC 5681 SMSS).
        self.cc = create(self.config.congestion_control, self._eff_mss, self.config.initial_window)
        self.cc.srtt = self.rtt.srtt

    def _send_syn(self, now: float) -> None:
        flags = SYN | ACK if self.state is S.SYN_RECEIVED else SYN
        seg = Segment(
            self.local_port,
            self.remote_port,
            self.iss,
            self.rcv_nxt if flags & ACK else 0,
            flags,
            self._window_field(syn=True),
            self._syn_options(),
        )
        if self._retries == 0:
            self._rtt_seq, self._rtt_time = self.iss, now
        self._syn_sent_at = now
        self.snd_nxt = seq_add(self.iss, 1)
        self.snd_max = self.snd_nxt
        self._emit(seg, now)
        self._rto_deadline = now + self.rtt.rto

    # ------------------------------------------------------------------ application calls

    def send(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Queue ``data``; it is never dropped, only delayed by the windows (§3.10.2)."""
        self._now = now
        if self.state not in _ACCEPTS_WRITES or self._fin_queued:
            raise LocalProtocolError(f"cannot send in state {self.state.value}")
        if not data:
            return
        self._sendbuf.append(data)
        self._output(now)

    def shutdown(self, now: float) -> None:
        """Half-close: send FIN after the queued data; keep receiving (§3.10.4)."""
        self._now = now
        if self._fin_queued:
            return
        st = self.state
        if st in (S.SYN_SENT, S.LISTEN, S.CLOSED):
            # §3.10.4: no data could have been sent yet; there is nobody to tell.
            self._enter_closed(None)
            return
        if st not in (S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT):
            return
        self._fin_queued = True
        if st is S.CLOSE_WAIT:
            self._set_state(S.LAST_ACK)
        elif st is S.ESTABLISHED:
            self._set_state(S.FIN_WAIT_1)
        # In SYN-RECEIVED the FIN waits for ESTABLISHED (§3.10.4), then FIN-WAIT-1.
        self._output(now)

    def close(self, now: float) -> None:
        """Close: FIN after queued data; the application reads nothing more.

        Closing with received data still unread resets the connection instead, and so does
        new data arriving after the close: the peer must learn that what it sent was not
        read (RFC 9293 §3.10.4 and RFC 2525 §2.17; RFC 1122 §4.2.2.13), as kernel TCP does.
        """
        self._now = now
        self._app_closed = True
        self._discard_input = True
        if self._held and self.state in _SYNCHRONIZED | {S.SYN_RECEIVED}:
            self._held.clear()
            self.abort(now)
            return
        self._held.clear()
        self.shutdown(now)
        if self.state is S.FIN_WAIT_2 and self._close_deadline is None:
            self._close_deadline = now + self.config.fin_wait2_timeout

    def abort(self, now: float) -> None:
        """Reset the connection (§3.10.5): RST to the peer when synchronized, then CLOSED."""
        self._now = now
        if self.state in (S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT):
            # SND.MAX, not the possibly rewound SND.NXT, so the peer finds it in its window.
            self._emit(Segment(self.local_port, self.remote_port, self.snd_max, 0, RST, 0), now)
        self._enter_closed(None)

    def fail(self, error: BaseException, now: float) -> None:
        """End the connection at once with ``error``, sending nothing: a layer above the
        state machine (secure mode) refused the peer and has answered it itself."""
        self._now = now
        if self.state is not S.CLOSED:
            self._enter_closed(error)

    def pause_reading(self) -> None:
        """Hold in-order data in the core; the advertised window shrinks as it fills."""
        self._reading = False

    def resume_reading(self, now: float) -> None:
        """Deliver held data and reopen the window, telling the peer if it had closed."""
        self._now = now
        if self._reading:
            return
        self._reading = True
        if self._held:
            data = bytes(self._held)
            self._held.clear()
            self._events.append(DataReceived(data))
        if self._eof_pending:
            self._eof_pending = False
            self._events.append(EofReceived())
        # §3.8.6.2.2: tell the peer once the window has opened by a useful amount.
        if self.state in _SYNCHRONIZED and self._window_update_due():
            self._ack_now = True
        self._output(now)

    def set_keepalive(
        self,
        enabled: bool,
        idle: float | None = None,
        interval: float | None = None,
        count: int | None = None,
    ) -> None:
        """Turn keepalive on or off and change its timing (``SO_KEEPALIVE``, ``TCP_KEEPIDLE``,
        ``TCP_KEEPINTVL``, ``TCP_KEEPCNT``); takes effect from the next segment or timer."""
        self.keepalive = enabled
        if idle is not None:
            self.keepalive_idle = idle
        if interval is not None:
            self.keepalive_interval = interval
        if count is not None:
            self.keepalive_count = count
        if not enabled:
            self._keepalive_deadline = None
        elif self._keepalive_deadline is None and self.state in _KEEPALIVE_STATES:
            self._keepalive_deadline = self._now + self.keepalive_idle

    def set_nodelay(self, nodelay: bool) -> None:
        """Turn Nagle's algorithm off (``True``) or on (``False``)."""
        self.nodelay = nodelay

    def accepts_reopen(self, syn: Segment) -> bool:
        """In TIME-WAIT: may ``syn`` open a new incarnation of this connection's 4-tuple?

        RFC 6191 §2: when timestamps would be in use for the new incarnation (the old one
        had them and the SYN carries one), a SYN is new if its TSval is newer than the
        last one seen, or equal with a higher sequence number; otherwise (RFC 1122
        §4.2.2.13) its sequence number must lie beyond RCV.NXT. Anything else is left to
        TIME-WAIT's own handling (an old duplicate SYN draws a challenge ACK).
        """
        if self.state is not S.TIME_WAIT:
            return False
        ts = syn.options.timestamps if syn.options is not None else None
        if self.ts_enabled and ts is not None and self.config.timestamps:
            if seq_gt(ts[0], self.ts_recent):
                return True
            return ts[0] == self.ts_recent and seq_gt(syn.seq, self.rcv_nxt)
        return seq_gt(syn.seq, self.rcv_nxt)

    def reopen_iss(self) -> int:
        """The ISN for a new incarnation reopened from this TIME-WAIT connection: beyond
        every sequence number the old one used, so no old duplicate of ours lands in the
        new window (RFC 1122 §4.2.2.13). Linux steps SND.NXT + 65537 past it likewise."""
        return seq_add(self.snd_max, 65537)

    def icmp_unreachable(self, now: float, seq: int | None = None) -> None:
        """The peer's UDP port answered a datagram of ours with ICMP port unreachable.

        ``seq`` is the sequence number of the segment the ICMP message quotes, when it
        quotes one; an error that quotes a segment this connection cannot have sent
        recently (outside SND.UNA - 1 .. SND.MAX, where probes and ACKs sit; the ISS in
        SYN-SENT) is ignored, as RFC 5927 §4.1 asks of TCP, so that a blind attacker must
        guess sequence numbers to forge one.

        * SYN-SENT: the connection is refused (RFC 1122 §4.2.3.9 allows a port
          unreachable to abort a connection being opened; kernel TCP does).
        * Other states: one unreachable is soft (RFC 1122 §4.2.3.9, RFC 5461): a
          transient routing change, a NAT rebooting, a forged message. But a port
          unreachable from the peer's own host means no socket is bound to the port any
          more: the peer process died without a FIN or RST. The connection fails with
          ``ConnectionResetError`` once unreachables have answered ``ICMP_DEAD_ROUNDS``
          (2) consecutive timer-driven retransmissions (RTO retransmissions, zero-window
          probes or keepalive probes), with no segment at all from the peer since the
          first of them. Unreachables answering the original transmission or a tail-loss
          probe do not count. With the default timers that is about three RTOs after the
          first loss (RTO, then the backed-off 2 RTO) instead of the user timeout.
        """
        self._now = now
        st = self.state
        if st in (S.CLOSED, S.LISTEN, S.TIME_WAIT) or not self._icmp_quote_ok(seq):
            return
        if st is S.SYN_SENT:
            self._enter_closed(refused("ICMP port unreachable: nothing is bound to that UDP port"))
            return
        self.soft_error = "port unreachable"
        rounds = self._silent_rounds
        if rounds == 0 or rounds == self._unreach_round:
            return  # the first transmission's answer, or this round already counted
        if rounds == self._unreach_round + 1:
            self._unreach_streak += 1
        else:
            self._unreach_streak = 1
        self._unreach_round = rounds
        if self._unreach_streak >= ICMP_DEAD_ROUNDS:
            self._enter_closed(
                reset(
                    f"ICMP port unreachable answered {self._unreach_streak} retransmissions "
                    "in a row: the peer's endpoint is gone"
                )
            )

    def icmp_soft_error(self, now: float, detail: str, seq: int | None = None) -> None:
        """An ICMP error other than port unreachable (host or network unreachable, time
        exceeded, ...) about a datagram of ours: remembered in :attr:`soft_error`, never
        fatal (RFC 1122 §4.2.3.9: these are soft errors, the retransmissions go on)."""
        self._now = now
        if self.state not in (S.CLOSED, S.LISTEN) and self._icmp_quote_ok(seq):
            self.soft_error = detail

    def foreign_datagram(self, now: float) -> None:
        """A datagram that is not a udptcp segment (too short, bad header or options, bad
        checksum) came from the peer's UDP address while this connection was opening.

        Something other than udptcp answers at that address (a DNS server, a game
        server, any UDP service), and left alone the connect would retransmit its SYN
        into it for the whole SYN timeout (63 s by default). The connect is refused
        once such datagrams have answered ``FOREIGN_SYN_ROUNDS`` (2) different
        transmissions of the SYN (the first and a retransmission, so about one initial
        RTO after the connect began) and no segment from the peer has ended SYN-SENT.
        Only in SYN-SENT: an established connection only counts and drops them.

        Why two, and why only here: one corrupted SYN,ACK on a lossy path must not fail
        a good connect (it takes answers to two SYNs in a row corrupted, with no valid
        one between, to do it); and anyone can send a datagram with the peer's source
        address, so this is kept to the few seconds a connection is opening, where a
        forged ICMP error or a RST acknowledging the SYN already ends it.
        """
        self._now = now
        if self.state is not S.SYN_SENT:
            return
        transmission = self._retries + 1
        if transmission != self._foreign_round:
            self._foreign_round = transmission
            self._foreign_rounds += 1
        if self._foreign_rounds >= FOREIGN_SYN_ROUNDS:
            self._enter_closed(
                refused(
                    f"the UDP service there answered {self._foreign_rounds} SYNs with "
                    "datagrams that are not udptcp segments"
                )
            )

    def reflects_own_syn(self, seg: Segment) -> bool:
        """True if ``seg`` is this connection's own SYN, come back: a SYN, no ACK, and our
        ISS (a peer choosing the same ISN has a chance of 2**-32), while opening."""
        return (
            self.state is S.SYN_SENT
            and seg.flags & (SYN | ACK | RST) == SYN
            and seg.seq == self.iss
        )

    def _icmp_quote_ok(self, seq: int | None) -> bool:
        if seq is None:
            return True
        if self.state is S.SYN_SENT:
            ok = seq == self.iss
        else:
            ok = seq_le(seq_add(self.snd_una, -1), seq) and seq_le(seq, self.snd_max)
        if not ok:
            self.stats_counters["icmp_rejected"] += 1
        return ok

    # ------------------------------------------------------------------ outputs

    def take_segments(self) -> list[Segment]:
        """Segments to transmit, oldest first; the queue is emptied."""
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[Event]:
        """Events for the application, oldest first; the queue is emptied."""
        events, self._events = self._events, []
        return events

    def get_timer(self) -> float | None:
        """The earliest pending deadline, or ``None`` when nothing is timed."""
        best: float | None = None
        for t in (
            self._rto_deadline,
            self._delack_deadline,
            self._persist_deadline,
            self._close_deadline,
            self._keepalive_deadline,
            self._pto_deadline,
            self._rack_deadline,
            self._pace_deadline,
        ):
            if t is not None and (best is None or t < best):
                best = t
        return best

    @property
    def unsent_bytes(self) -> int:
        """Bytes written by the application and not yet transmitted once."""
        if self.state not in _SYNCHRONIZED and self.state is not S.SYN_RECEIVED:
            return len(self._sendbuf)
        sent = max(self._stream_offset(self.snd_max) - self._sendbuf.start, 0)
        return max(len(self._sendbuf) - sent, 0)

    @property
    def is_closed(self) -> bool:
        """True once the connection reached CLOSED and can be forgotten."""
        return self.state is S.CLOSED

    @property
    def rcv_wnd(self) -> int:
        """Receive window the connection would advertise now."""
        return self._receive_window()

    def stats(self) -> dict[str, float | int | str | None]:
        """Counters and estimator state, for ``get_extra_info`` and the demo."""
        out: dict[str, float | int | str | None] = dict(self.stats_counters)
        out.update(
            state=self.state.value,
            srtt=self.rtt.srtt,
            rttvar=self.rtt.rttvar,
            min_rtt=self.rtt.min_rtt,
            rto=self.rtt.rto,
            cwnd=self.cc.cwnd,
            ssthresh=self.cc.ssthresh,
            snd_wnd=self.snd_wnd,
            rcv_wnd=self.rcv_wnd,
            mss=self._eff_mss,
            pmtu=self._send_cap + 20,
            bytes_in_flight=self._flight,
            reassembly_pieces=len(self._reassembly),
            reassembly_bytes=self._reassembly.size,
            reassembly_charge=self._reassembly.charge,
        )
        return out

    # ------------------------------------------------------------------ timers

    def handle_timer(self, now: float) -> None:
        """Run every timer whose deadline is at or before ``now``."""
        self._now = now
        if self._close_deadline is not None and now >= self._close_deadline:
            self._close_deadline = None
            if self.state is S.TIME_WAIT:
                self._enter_closed(None)  # §3.10.8: 2 MSL elapsed
                return
            if self.state is S.FIN_WAIT_2:
                self._enter_closed(None)  # the peer never sent its FIN
                return
        if (
            self._pto_deadline is not None
            and now >= self._pto_deadline
            and (self._rto_deadline is None or self._pto_deadline <= self._rto_deadline)
        ):
            self._send_tlp(now)  # a probe due with (or before) the RTO replaces it (§7.2)
        if self._rto_deadline is not None and now >= self._rto_deadline:
            self._rto_deadline = None
            self._on_retransmission_timeout(now)
            if self.state is S.CLOSED:
                return
        if self._persist_deadline is not None and now >= self._persist_deadline:
            self._persist_deadline = None
            self._send_window_probe(now)
        if self._delack_deadline is not None and now >= self._delack_deadline:
            self._delack_deadline = None
            self._ack_now = True
        if self._pace_deadline is not None and now >= self._pace_deadline:
            self._pace_deadline = None  # the credit has grown: _output below sends
        if self._rack_deadline is not None and now >= self._rack_deadline:
            self._rack_deadline = None
            self._detect_losses(now)  # RFC 8985 §6.3 reordering timer
        if self._pto_deadline is not None and now >= self._pto_deadline:
            self._send_tlp(now)
        if self._keepalive_deadline is not None and now >= self._keepalive_deadline:
            self._on_keepalive_timer(now)
            if self.state is S.CLOSED:
                return
        self._output(now)

    def _on_keepalive_timer(self, now: float) -> None:
        """RFC 1122 §4.2.3.6: probe an idle peer; fail after enough silence."""
        self._keepalive_deadline = None
        if not self.keepalive or self.state not in _KEEPALIVE_STATES:
            return
        if self.snd_una != self.snd_max or self.unsent_bytes:
            # Data is outstanding: the retransmission or persist timer speaks for us.
            self._keepalive_deadline = now + self.keepalive_idle
            return
        if self._keepalive_unanswered >= self.keepalive_count:
            self._enter_closed(
                timed_out(f"{self._keepalive_unanswered} keepalive probes unanswered")
            )
            return
        # An already-acknowledged sequence number with no data: any live peer answers with
        # an ACK (§3.10.7.4), and the probe needs no window.
        self._keepalive_unanswered += 1
        self._silent_rounds += 1
        self.stats_counters["keepalive_probes"] += 1
        self._emit(self._segment(ACK, seq_add(self.snd_una, -1)), now)
        self._keepalive_deadline = now + self.keepalive_interval

    def _on_retransmission_timeout(self, now: float) -> None:
        st = self.state
        self.stats_counters["timeouts"] += 1
        self._rtt_seq = None  # Karn's rule: no sample from a retransmitted segment
        if st in (S.SYN_SENT, S.SYN_RECEIVED):
            limit = self.config.syn_retries if st is S.SYN_SENT else self.config.synack_retries
            if self._retries >= limit:
                what = "SYN" if st is S.SYN_SENT else "SYN,ACK"
                self._enter_closed(timed_out(f"no answer to {self._retries + 1} {what}s"))
                return
            self._retries += 1
            self._silent_rounds += 1
            self._handshake_lost = True
            self.rtt.back_off()
            self.stats_counters["retransmits"] += 1
            self._send_syn(now)
            return
        if self.snd_una == self.snd_max:
            return  # everything was acknowledged meanwhile
        if self._una_since is not None and now - self._una_since >= self.config.user_timeout:
            self._enter_closed(timed_out(f"data unacknowledged for {now - self._una_since:.0f} s"))
            return
        # RFC 5681 §3.1: ssthresh is only reduced by the first timeout of a series.
        if self._retries == 0:
            self.cc.on_timeout(self._flight, now)
        else:
            self.cc.cwnd = self._eff_mss
            # RFC 2018 §8: a receiver may renege on what it SACKed; after repeated timeouts
            # stop trusting the scoreboard so go-back-N resends everything.
            self._sb.clear()
            self._log.forget_sacks()
        if self._probe is not None:
            self._probe_lost(now)
        if self._send_cap > self._base_mss:
            # RFC 8899 §4.3 black hole detection: big segments stopped arriving. Back to
            # the base size, and search again later.
            self._send_cap = self._pmtu_low = self._base_mss
            self._pmtu_high = (self.config.pmtu_max or 20) - 20
            self.cc.mss = self._eff_mss
            self.stats_counters["pmtu_black_holes"] += 1
        self._log.mark_all_lost()  # RFC 8985 §6.3
        self._rack_deadline = None
        self._undo_cwnd = None  # a timeout is not undone
        self._undo_ranges.clear()
        self._retries += 1
        self._silent_rounds += 1
        self._in_recovery = False
        self._dupacks = 0
        self._recover = self.snd_max  # RFC 6582 §3.2 step 4 after a timeout
        self.rtt.back_off()
        # Go back N: everything outstanding is sent again as the window allows.
        self.snd_nxt = self.snd_una
        self._output(now)
        if self._rto_deadline is None:
            self._rto_deadline = now + self.rtt.rto

    def _send_window_probe(self, now: float) -> None:
        """Persist timer expiry (§3.8.6.1): make the peer repeat its window.

        The probe carries an already-acknowledged sequence number (SND.UNA - 1), which any
        receiver must answer with an ACK stating its current window (§3.10.7.4 first step).
        Unlike a byte sent beyond the window, it never becomes outstanding data, so it
        cannot count as a duplicate ACK or a retransmission, and probing may go on for as
        long as the peer keeps answering (RFC 1122 §4.2.2.17).
        """
        if self.state not in _SENDS_DATA:
            return
        if self.snd_wnd > 0:
            # RFC 1122 §4.2.3.4 (d): the SWS override timeout. A window smaller than
            # both a segment and half the largest window was held back; fill it now.
            self._persist_backoff = 1
            self._send_data(now, override_sws=True)
            return
        self.stats_counters["window_probes"] += 1
        self._silent_rounds += 1
        self._emit(self._segment(ACK, seq_add(self.snd_una, -1)), now)
        self._persist_backoff = min(self._persist_backoff * 2, 64)
        self._persist_deadline = now + min(self.rtt.rto * self._persist_backoff, _PERSIST_MAX)

    # ------------------------------------------------------------------ segment arrival

    def receive(self, seg: Segment, now: float) -> None:
        """Process one incoming segment addressed to this connection."""
        self._receive_one(seg, now)
        self._output(now)

    def receive_many(self, segments: Sequence[Segment], now: float) -> int:
        """Process a train of segments that arrived together (one socket read burst).

        The same as :meth:`receive` for each in turn, except for what a train allows: the
        ACK that the delayed-ACK rule owes for in-order data is sent once, after the
        train, rather than after every second segment (RFC 9293 §3.8.6.3 and RFC 1122
        §4.2.3.2 bound the delay, not the count; Linux acknowledges a GRO train the same
        way); in-order data reaches the application as one ``DataReceived``; and new data
        is sent once, with the whole train's acknowledgments taken into account. ACKs
        the RFCs want at once (out-of-order data, a filled gap, a duplicate, a window
        probe) still go out segment by segment, so duplicate-ACK counting is unchanged.

        Returns how many segments were taken. It stops after one that closed the
        connection (the caller treats the rest as addressed to a closed port) or that
        raised an event other than data (EOF, established): the caller delivers it and
        hands over the rest afterwards, so the application's reaction (closing on EOF,
        say) comes before later segments are processed, as it would one by one.
        """
        taken = 0
        events = self._events
        before = len(events)
        self._batch = True
        try:
            for seg in segments:
                taken += 1
                self._receive_one(seg, now)
                if self.state is S.CLOSED or (
                    len(events) > before
                    and any(type(ev) is not DataReceived for ev in events[before:])
                ):
                    break
                if self._ack_now and self.state in _ACKS:
                    self._emit(self._segment(ACK, self._ack_seq), now)
        finally:
            self._batch = False
            self._end_batch()
        if self._ack_owed:
            self._ack_owed = False
            self._ack_now = True
        self._output(now)
        return taken

    def _receive_one(self, seg: Segment, now: float) -> None:
        self._now = now
        self.stats_counters["segments_received"] += 1
        self._keepalive_unanswered = 0
        # The peer is there: ICMP errors from before this say nothing about it any more.
        self._silent_rounds = self._unreach_round = self._unreach_streak = 0
        st = self.state
        if st is S.ESTABLISHED and self._predicted(seg, now):
            pass
        elif st is S.SYN_SENT:
            self._receive_in_syn_sent(seg, now)
        elif st is not S.CLOSED and st is not S.LISTEN:
            if self._amp is not None:
                self._amp.credit(received_size(seg))
            self._receive_synchronizing(seg, now)
        if self.keepalive and self.state in _KEEPALIVE_STATES:
            self._keepalive_deadline = now + self.keepalive_idle

    def _end_batch(self) -> None:
        """Hand the data a train delivered to the application as one event."""
        chunks = self._rx_chunks
        if chunks:
            assert self._rx_event is not None
            self._rx_event.data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._rx_chunks = []
        self._rx_event = None

    def _receive_in_syn_sent(self, seg: Segment, now: float) -> None:
        """§3.10.7.3."""
        flags = seg.flags
        # First: the ACK must acknowledge our SYN.
        if flags & ACK and (seq_le(seg.ack, self.iss) or seq_gt(seg.ack, self.snd_nxt)):
            if not flags & RST:
                self._emit(Segment(self.local_port, self.remote_port, seg.ack, 0, RST, 0), now)
            return
        # Second: a reset with an acceptable ACK refuses the connection.
        if flags & RST:
            if flags & ACK:
                self._enter_closed(refused("RST answered the SYN: nothing listens on that port"))
            return
        # Fourth: the SYN.
        if not flags & SYN:
            return
        if self.reflects_own_syn(seg):
            # Our SYN came back as sent: a UDP echo service, not udptcp. Without this it
            # would look like a simultaneous open with ourselves, and "connect".
            self._enter_closed(
                refused("the SYN came back unchanged: the UDP service there echoes datagrams")
            )
            return
        self._take_peer_syn(seg)
        if flags & ACK:
            self._ack_advances(seg.ack, now)
            self.snd_wl2 = seg.ack
            self._enter_established()
            self._ack_now = True  # third segment of the handshake: ACK ack=y+1
            if seg.payload or flags & FIN:
                # §3.10.7.3: text (or a FIN) on the SYN,ACK is processed from the sixth
                # step on, as in ESTABLISHED; it starts one past the SYN.
                text = Segment(
                    seg.src_port,
                    seg.dst_port,
                    seq_add(seg.seq, 1),
                    seg.ack,
                    flags & ~SYN,
                    seg.window,
                    seg.options,
                    seg.payload,
                )
                self._receive_text(text, now)
        else:
            # Simultaneous open (§3.5, Figure 8): SYN-RECEIVED, answer SYN,ACK with our ISS.
            self._set_state(S.SYN_RECEIVED)
            self._retries = 0
            self._send_syn(now)

    def _predicted(self, seg: Segment, now: float) -> bool:
        """Header prediction (Van Jacobson's, as BSD and Linux have it): take the next
        in-order segment of an established connection without the general path, when it
        is data, an ACK of new data, or both (bulk transfer, request and response).

        It applies only where every step of §3.10.7.4 has a foregone outcome: ACK (and
        PSH) only, exactly RCV.NXT, within the window, the same window, no SACK blocks,
        a timestamp passing PAWS, nothing held for reassembly, an application reading;
        an ACK that moves SND.UNA outside any loss recovery, or data while nothing of ours
        is outstanding. Returns False, having changed nothing, for anything else.
        """
        payload = seg.payload
        ack = seg.ack
        if (
            seg.flags & ~PSH != ACK
            or seg.seq != self.rcv_nxt
            or seg.window << self.snd_wscale != self.snd_wnd
            or self._fin_off is not None
        ):
            return False
        if payload and (
            len(payload) > seq_diff(self._rcv_adv, self.rcv_nxt)
            or self._reassembly
            or not self._reading
            or self._discard_input
        ):
            return False
        new_ack = ack != self.snd_una
        if new_ack:
            if (
                not seq_lt(self.snd_una, ack)
                or seq_gt(ack, self.snd_max)
                or self._in_recovery
                or self._sb
                or self._dupacks
                or self._rack_deadline is not None
            ):
                return False
        elif not payload or self.snd_una != self.snd_max:
            return False  # a duplicate ACK, or data beside ours in flight: the general path
        options = seg.options
        if options is not None and options.sack_blocks:
            return False
        tsecr = 0
        if self.ts_enabled:
            ts = options.timestamps if options is not None else None
            if ts is None or seq_lt(ts[0], self.ts_recent):
                return False
            tsecr = ts[1]
            self._take_timestamps(seg, ts)
        # _process_ack, with its outcomes known: the window update (same window)...
        self._update_send_window(seg)
        if self._log:
            self._log.start_ack()
        if new_ack:
            self._on_new_ack(ack, now, tsecr)  # ...and new data acknowledged
        if payload:
            self._accept_in_order(payload)  # _receive_text, in sequence and in the window
            self._schedule_ack(len(payload), now)
        return True

    def _take_timestamps(self, seg: Segment, ts: tuple[int, int]) -> None:
        """Record an acceptable segment's timestamps, PAWS having passed (RFC 7323 §4.3)."""
        if seq_le(seg.seq, self._last_ack_sent):
            self.ts_recent = ts[0]
            if seg.payload and ts[1]:
                # Data echoing one of our timestamps: a receiver-side RTT sample, as
                # Linux's tcp_rcv_rtt_measure_ts takes for auto-tuning.
                sample = ((self._tsval() - ts[1]) & _MASK) / 1000
                if sample < 60:
                    self._rcv_rtt = max(sample, 0.001)

    def _receive_synchronizing(self, seg: Segment, now: float) -> None:
        """§3.10.7.4 for SYN-RECEIVED and the synchronized states."""
        st = self.state
        flags = seg.flags
        seg_len = seg.seg_len
        wnd = max(seq_diff(self._rcv_adv, self.rcv_nxt), 0)

        if st is S.SYN_RECEIVED and flags & SYN and seg.seq == self.irs:
            if flags & ACK and seg.ack == self.snd_nxt and not flags & RST:
                # Simultaneous open: the peer's SYN,ACK crossed ours; it acknowledges our SYN.
                self._establish(seg, now)
                self._ack_now = True
            elif not flags & (ACK | RST):
                # The peer's SYN again: our SYN,ACK was lost. Answer it again, but not every
                # copy of a burst (a forged one multiplies what goes to its victim).
                self._handshake_lost = True
                last = self._syn_sent_at
                if last is None or now - last >= _SYNACK_MIN_INTERVAL or now < last:
                    self._syn_sent_at = now
                    self._emit(self._syn_ack_again(), now)
                else:
                    self.stats_counters["syn_acks_rate_limited"] += 1
            return

        ts = seg.options.timestamps if self.ts_enabled and seg.options is not None else None
        if self.ts_enabled and ts is None and not flags & RST:
            # RFC 7323 §3.2: once timestamps are agreed, a non-RST segment without one is
            # not from our peer's stack (or was mangled); drop it silently.
            self.stats_counters["missing_timestamp_dropped"] += 1
            return
        if ts is not None and not flags & RST and seq_lt(ts[0], self.ts_recent):
            # RFC 7323 §5.3 PAWS: an old duplicate from an earlier pass over the sequence
            # space (or an earlier incarnation); acknowledge and drop it.
            self.stats_counters["paws_rejected"] += 1
            self._invalid_ack(now)
            return

        # First: sequence number check (§3.10.7.4 table).
        if not self._acceptable(seg.seq, seg_len, wnd):
            if flags & RST:
                return
            retransmission = False
            if seg.payload and seq_lt(seg.seq, self.rcv_nxt):
                # Data below RCV.NXT. Within a window's reach it is a retransmission our
                # ACK must answer at once (with a D-SACK, RFC 2883); further back it is
                # a guess at our sequence numbers, answered like any invalid segment.
                retransmission = seq_diff(self.rcv_nxt, seg.seq) <= max(self._rcv_space, wnd)
                self.stats_counters["duplicate_bytes_received"] += len(seg.payload)
                if retransmission:
                    self._dsack = (seg.seq, seq_add(seg.seq, len(seg.payload)))
            if st is S.TIME_WAIT and flags & FIN and seq_add(seg.seq, seg_len) == self.rcv_nxt:
                # A retransmitted FIN: the peer lost our last ACK. ACK again, restart 2 MSL.
                self._close_deadline = now + 2 * self.config.msl
                retransmission = True
            elif wnd == 0 and seg.seq == self.rcv_nxt and flags & ACK:
                # Zero window: the ACK field is still processed (§3.10.7.4 "special allowance"),
                # and the answer tells a probing sender the window is still shut.
                self._process_ack(seg, now)
                retransmission = True
            if retransmission:
                self._ack_now = True
            else:
                self._invalid_ack(now)
            return

        if ts is not None:
            self._take_timestamps(seg, ts)

        # Second: RST (RFC 5961 §3.2: only an exact match resets).
        if flags & RST:
            if seg.seq != self.rcv_nxt:
                self._challenge_ack(now)
                return
            if st is S.TIME_WAIT:
                return  # RFC 1337: ignore RST in TIME-WAIT
            if st is S.SYN_RECEIVED:
                self._enter_closed(refused("RST answered the SYN,ACK"))
            elif st in (S.CLOSING, S.LAST_ACK):
                self._enter_closed(None)
            else:
                self._enter_closed(reset("RST received"))
            return

        # Fourth: SYN in a synchronized state gets a challenge ACK (RFC 5961 §4.2).
        if flags & SYN:
            self._challenge_ack(now)
            return

        # Fifth: ACK.
        if not flags & ACK:
            return
        if st is S.SYN_RECEIVED:
            if not (seq_lt(self.snd_una, seg.ack) and seq_le(seg.ack, self.snd_nxt)):
                self._emit(Segment(self.local_port, self.remote_port, seg.ack, 0, RST, 0), now)
                return
            self._establish(seg, now)
            st = self.state
        elif not self._process_ack(seg, now):
            return
        st = self.state
        if st is S.CLOSED:
            return

        # Seventh: segment text. Eighth: FIN.
        if st in _RECEIVES_TEXT:
            self._receive_text(seg, now)
        elif flags & FIN and st is S.TIME_WAIT:
            self._close_deadline = now + 2 * self.config.msl
            self._ack_now = True

    def _syn_ack_again(self) -> Segment:
        return Segment(
            self.local_port,
            self.remote_port,
            self.iss,
            self.rcv_nxt,
            SYN | ACK,
            self._window_field(syn=True),
            self._syn_options(),
        )

    def _syn_options(self) -> Options:
        """Our SYN offers every option the config enables; a SYN,ACK answers only the ones
        the peer's SYN offered (which ``_take_peer_syn`` recorded)."""
        cfg = self.config
        answering = self.state is S.SYN_RECEIVED
        wscale = None
        if cfg.window_scaling and (not answering or self.wscale_ok):
            wscale = self._wscale_offer
        timestamps = None
        if cfg.timestamps and (not answering or self.ts_enabled):
            timestamps = (self._tsval(), self.ts_recent if answering else 0)
        sack_permitted = cfg.sack and (not answering or self.sack_ok)
        return Options(
            mss=self.mss, wscale=wscale, sack_permitted=sack_permitted, timestamps=timestamps
        )

    def _establish(self, seg: Segment, now: float) -> None:
        """SYN-RECEIVED -> ESTABLISHED on an ACK of our SYN (§3.10.7.4 fifth step)."""
        self._ack_advances(seg.ack, now)
        self.snd_wnd = seg.window << self.snd_wscale
        self.snd_wl1 = seg.seq
        self.snd_wl2 = seg.ack
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
        self._enter_established()
        if self._fin_queued:
            self._set_state(S.FIN_WAIT_1)

    def _enter_established(self) -> None:
        self._set_state(S.ESTABLISHED)
        self._amp = None  # the peer answered our ISN: its address is proven
        self._retries = 0
        self._events.append(Connected())
        if self._handshake_lost:
            # RFC 5681 §3.1: the initial window is one segment when the SYN or SYN,ACK was
            # lost. RFC 6298 §5.7: without an RTT sample, restart from a 3 s timeout (here
            # three times the configured initial RTO, which is 1 s by default).
            self.cc.cwnd = self._eff_mss
            if self.rtt.srtt is None:
                self.rtt.reinitialize(3 * self.config.rto_initial)

    def _acceptable(self, seq: int, seg_len: int, wnd: int) -> bool:
        """The four-case acceptability test of §3.10.7.4."""
        rcv_nxt = self.rcv_nxt
        if seg_len == 0:
            if wnd == 0:
                return seq == rcv_nxt
            # §3.10.7.4 says SEG.SEQ < RCV.NXT+RCV.WND; like Linux and BSD we also accept a
            # bare ACK at the right edge itself, which is where a sender that filled the
            # window puts it (our own ``_ack_seq`` does the same).
            return seq_le(rcv_nxt, seq) and seq_le(seq, seq_add(rcv_nxt, wnd))
        if wnd == 0:
            return False
        last = seq_add(seq, seg_len - 1)
        end = seq_add(rcv_nxt, wnd)
        return (seq_le(rcv_nxt, seq) and seq_lt(seq, end)) or (
            seq_le(rcv_nxt, last) and seq_lt(last, end)
        )

    def _invalid_ack(self, now: float) -> None:
        """The ACK an unacceptable segment asks for (§3.10.7.4), at most one per
        ``_INVALID_ACK_INTERVAL`` (as Linux's tcp_invalid_ratelimit): whoever sends
        out-of-window segments by the thousand, a blind attacker guessing sequence
        numbers among them, must not get one ACK back for each."""
        if now - self._invalid_ack_time >= _INVALID_ACK_INTERVAL or now < self._invalid_ack_time:
            self._invalid_ack_time = now
            self._ack_now = True
        else:
            self.stats_counters["invalid_acks_suppressed"] += 1

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 §3.2/§4.2 challenge ACK, rate-limited per RFC 5961 §7."""
        if now - self._challenge_window >= 1.0:
            self._challenge_window = now
            self._challenge_count = 0
        if self._challenge_count < _CHALLENGE_ACKS_PER_SECOND:
            self._challenge_count += 1
            self.stats_counters["challenge_acks"] += 1
            self._ack_now = True

    def _process_ack(self, seg: Segment, now: float) -> bool:
        """Fifth step for synchronized states; False when the segment must be dropped."""
        ack = seg.ack
        if seq_gt(ack, self.snd_max):
            # §3.10.7.4: it acknowledges something not yet sent: ACK and drop (within the
            # limit on ACKs that invalid segments draw).
            self._invalid_ack(now)
            return False
        if seq_lt(ack, seq_add(self.snd_una, -self.max_snd_wnd)):
            # RFC 5961 §5.2: far too old to be from this connection: a challenge ACK.
            self._challenge_ack(now)
            return False

        window_changed = self._update_send_window(seg)

        newly_sacked = 0
        una_before = self.snd_una
        sacked_before = self._log.sacked_bytes()
        if self._log:
            self._log.start_ack()
        if self.sack_ok and seg.options is not None and seg.options.sack_blocks:
            newly_sacked = self._take_sack_blocks(seg.options.sack_blocks, ack, now)
        if seq_gt(ack, self.snd_una):
            ts = seg.options.timestamps if self.ts_enabled and seg.options is not None else None
            self._on_new_ack(ack, now, ts[1] if ts is not None else 0)
        elif (
            ack == self.snd_una
            and self.snd_max != self.snd_una
            and (
                newly_sacked > 0  # RFC 6675 §2: an ACK bringing new SACK information
                or (not seg.payload and not seg.flags & (SYN | FIN) and not window_changed)
            )
        ):
            self._on_duplicate_ack(now)
        if self.sack_ok and (self._sb or self._in_recovery or self._rack_deadline is not None):
            # RACK needs evidence: SACKed data, a recovery under way, or a pending timer.
            self._detect_losses(now)
            if self._in_recovery and self._undo_cwnd is not None:
                # What this ACK reports delivered: SND.UNA's advance plus the change in
                # SACKed bytes (RFC 6937 DeliveredData).
                delivered = seq_diff(self.snd_una, una_before)
                self._prr_on_ack(delivered + self._log.sacked_bytes() - sacked_before)

        st = self.state
        fin_acked = self._fin_queued and seq_gt(self.snd_una, self._fin_seq)
        if st is S.FIN_WAIT_1 and fin_acked:
            self._set_state(S.FIN_WAIT_2)
            if self._app_closed:
                self._close_deadline = now + self.config.fin_wait2_timeout
        elif st is S.CLOSING and fin_acked:
            self._enter_time_wait(now)
        elif st is S.LAST_ACK and fin_acked:
            self._enter_closed(None)
            return False
        return True

    def _update_send_window(self, seg: Segment) -> bool:
        """§3.10.7.4 fifth step: take the window from a segment newer than the last one
        that set it (SND.WL1/WL2). Returns True if the window changed."""
        ack = seg.ack
        if not (
            seq_lt(self.snd_wl1, seg.seq) or (self.snd_wl1 == seg.seq and seq_le(self.snd_wl2, ack))
        ):
            return False
        window = seg.window << self.snd_wscale  # RFC 7323 §2.3
        changed = window != self.snd_wnd
        self.snd_wnd = window
        self.snd_wl1 = seg.seq
        self.snd_wl2 = ack
        if window > self.max_snd_wnd:
            self.max_snd_wnd = window
        if window > 0:
            self._persist_deadline = None
            self._persist_backoff = 1
        return changed

    def _ack_advances(self, ack: int, now: float, tsecr: int = 0) -> int:
        """Move SND.UNA to ``ack``: free acknowledged data, take an RTT sample, re-arm RTO."""
        acked = seq_diff(ack, self.snd_una)
        self.snd_una = ack
        if seq_lt(self.snd_nxt, ack):
            self.snd_nxt = ack  # after a go-back-N rewind, originals were acknowledged
        self._sendbuf.acknowledge(self._stream_offset(ack))
        if self._sb:
            self._sb.prune(self._stream_offset(ack))
        if self._log:
            self._log.acknowledge(self._stream_offset(ack), now, self.rtt.min_rtt or 0.0)
        if self._probe is not None:
            self._probe_acknowledged(self._stream_offset(ack))
        if self._rtt_seq is not None and seq_gt(ack, self._rtt_seq):
            self.rtt.sample(now - self._rtt_time)
            self.cc.on_rtt_sample(now - self._rtt_time, self.rtt.srtt)
            self._rtt_seq = None
        elif tsecr and seq_ge(tsecr, self._retx_tsval):
            # RFC 7323 §4: the echoed timestamp names the transmission being acknowledged,
            # so it measures RTT even for retransmitted data, where Karn's rule stops the
            # sequence-timed sample. An echo older than our last retransmission is skipped:
            # it answers an original whose ACK was lost, and would count our whole backoff
            # wait as path delay (seen as 4 s samples on a 200 ms path at 10% loss).
            elapsed = ((self._tsval() - tsecr) & _MASK) / 1000
            if elapsed < self.config.rto_max:
                self.rtt.sample(elapsed)
                self.cc.on_rtt_sample(elapsed, self.rtt.srtt)
        self._retries = 0
        # RFC 6298 §5.2/5.3: stop the timer when all is acknowledged, else restart it.
        self._tlp_out = 0
        if self.snd_una == self.snd_max:
            self._rto_deadline = None
            self._una_since = None
            self._pto_deadline = None
        else:
            self._rto_deadline = now + self.rtt.rto
            self._una_since = now
            self._arm_tlp(now)
        return acked

    def _take_sack_blocks(self, blocks: tuple[tuple[int, int], ...], ack: int, now: float) -> int:
        """Merge the peer's SACK blocks into the scoreboard; return the bytes newly SACKed.

        A first block below the cumulative ACK, or inside the second block, is a D-SACK
        (RFC 2883 §4): a report of a duplicate, not of new data.
        """
        new = 0
        una_off = self._stream_offset(self.snd_una)
        max_off = self._stream_offset(self.snd_max)
        for i, (left, right) in enumerate(blocks):
            if i == 0 and (
                seq_le(right, ack)
                or (len(blocks) > 1 and seq_ge(left, blocks[1][0]) and seq_le(right, blocks[1][1]))
            ):
                self.stats_counters["dsacks_received"] += 1
                self._on_dsack(self._stream_offset(left))
                continue
            start, end = self._stream_offset(left), self._stream_offset(right)
            # Ignore blocks that do not lie within what is outstanding (RFC 2018 §3).
            start, end = max(start, una_off), min(end, max_off)
            if start < end:
                # A receiver's runs each hold at least one whole segment we logged, so more
                # ranges than twice that is a peer splitting them to make every ACK dearer:
                # a block that would add one more is ignored.
                fresh: list[tuple[int, int]] = []
                added = self._sb.add(start, end, fresh, 2 * len(self._log) + 8)
                if added:
                    new += added
                    # Only the newly SACKed sub-ranges can complete a segment: the log
                    # visits those, so a block repeated a byte longer each time stays cheap.
                    run = self._sb.find(start) or (start, end)  # the run the block joined
                    self._log.sack(run[0], run[1], now, self.rtt.min_rtt or 0.0, fresh)
                    if (
                        self._probe is not None
                        and start <= self._probe[0]
                        and self._probe[1] <= end
                    ):
                        self._probe_acknowledged(self._probe[1])
        return new

    def _on_dsack(self, start: int) -> None:
        """A duplicate of the data from stream offset ``start`` reached the peer: the path
        reorders or duplicates, or a retransmission was spurious.

        RFC 8985 §6.2: widen the reordering window. RFC 3708 §3: once every retransmission
        of the last recovery has come back as a duplicate, nothing had been lost; restore
        the congestion window the recovery cut. Only a D-SACK for a segment resent in that
        recovery counts (Linux's tcp_sacktag_one checks the same): a path that duplicates
        datagrams sends D-SACKs for originals, which prove nothing about the losses.
        """
        self._reo_mult = min(self._reo_mult + 1, 16)
        copies = self._undo_ranges.get(start)
        if self._undo_cwnd is None or not copies:
            return
        if copies > 1:
            self._undo_ranges[start] = copies - 1
        else:
            del self._undo_ranges[start]
        self._undo_retrans -= 1
        if self._undo_retrans == 0:
            self.cc.on_undo(self._undo_cwnd, self._undo_ssthresh)
            self._undo_cwnd = None
            self._undo_ranges.clear()
            self.stats_counters["spurious_recoveries_undone"] += 1

    def _on_new_ack(self, ack: int, now: float, tsecr: int = 0) -> None:
        acked = self._ack_advances(ack, now, tsecr)
        self.stats_counters["bytes_acked"] += acked
        cc = self.cc
        if self._in_recovery:
            if seq_ge(ack, self._recover):
                # RFC 6582 §3.2 step 3 / RFC 6675 §5: full acknowledgment ends recovery.
                self._in_recovery = False
                if not self.sack_ok:
                    cc.on_recovery_end(self._flight, now)
                elif self._undo_cwnd is not None:
                    # SACK recovery ends with cwnd = ssthresh (RFC 6675 §5; RFC 6937 §3),
                    # as Linux's does, unless D-SACKs undid its cut meanwhile. RFC 6582's
                    # min(ssthresh, FlightSize + SMSS) guards against the burst a window
                    # inflated by duplicate ACKs would release; sending by pipe inflates
                    # nothing, and a sender the peer's window held back ends recovery
                    # with little in flight, which the guard made a 1-segment window.
                    cc.on_recovery_end(cc.ssthresh, now)
            elif self.sack_ok:
                pass  # RFC 6675: the scoreboard decides; _output sends by pipe
            else:
                # Partial acknowledgment: the next hole was lost too; repair it now and
                # deflate the window by what was acknowledged (RFC 6582 §3.2 step 3).
                self._retransmit_una(now)
                mss = self._eff_mss
                cc.cwnd = max(cc.cwnd - acked + (mss if acked >= mss else 0), mss)
        else:
            # RFC 9438 §5.8: no growth for a window the flight did not fill (a sender held
            # by the peer's window or the application would otherwise grow cwnd without
            # bound, and a loss would then cut nothing it actually sends). Slow start may
            # still grow to twice the largest flight of the window, as Linux lets it.
            if self._cwnd_limited or (cc.cwnd < cc.ssthresh and cc.cwnd < 2 * self._max_flight):
                cc.on_ack(acked, self._flight, now)
            if seq_gt(ack, self._recover):
                # Keep "recover" trailing SND.UNA so it never falls 2^31 behind and flips
                # the comparison above (FreeBSD pulls snd_recover forward the same way).
                self._recover = ack
        self._dupacks = 0

    def _on_duplicate_ack(self, now: float) -> None:
        """RFC 5681 §3.2 fast retransmit, RFC 6582 fast recovery, RFC 6675 SACK recovery."""
        self._dupacks += 1
        if self.sack_ok:
            return  # _process_ack runs loss detection on every ACK
        mss = self._eff_mss
        if self._in_recovery:
            # RFC 6582 §3.2 step 4: each further duplicate says a segment left the network.
            # An honest receiver sends one per segment that arrived above the hole, so the
            # inflation is bounded by what was outstanding at recovery entry; duplicates
            # beyond that (a receiver lying to grow our window) inflate nothing.
            if self._inflation_left >= mss:
                self._inflation_left -= mss
                self.cc.cwnd += mss
            else:
                self.stats_counters["excess_duplicate_acks"] += 1
            return
        # RFC 6582 §3.2 step 2: only when the ACK covers more than "recover" (our
        # ``_recover`` is one past it: SND.MAX at the time, hence >=).
        if self._dupacks == 3 and seq_ge(self.snd_una, self._recover):
            self._in_recovery = True
            self._recover = self.snd_max
            self._inflation_left = max(self._flight - 3 * mss, 0)
            self.cc.on_loss(self._flight, now)
            self.stats_counters["fast_retransmits"] += 1
            self._retransmit_una(now)

    def _detect_losses(self, now: float) -> None:
        """Deem outstanding segments lost (RACK, RFC 8985 §6; DupThresh, RFC 6675 §4) and
        enter recovery when something is (RFC 6675 §5, with RFC 6582's "recover" guard)."""
        log = self._log
        if not log:
            self._rack_deadline = None
            return
        # RFC 8985 §6.2 step 4: until reordering has been seen, a loss is declared as soon
        # as DupThresh segments are SACKed (or during recovery); once it has, wait a
        # quarter of the minimum RTT for stragglers.
        if not log.reordering_seen and (self._in_recovery or log.sacked_segments() >= DUP_THRESH):
            reo_wnd = 0.0
        else:
            min_rtt = self.rtt.min_rtt or 0.0
            reo_wnd = min(min_rtt / 4 * self._reo_mult, self.rtt.srtt or 0.0)
        _newly, wait = log.detect_losses(now, reo_wnd)
        self._rack_deadline = wait
        if self._dupacks >= 3 and not self._sb:
            # A peer that agreed to SACK but sends no blocks: classic fast retransmit.
            log.mark_lost_below(self._stream_offset(self.snd_una) + 1)
        first = log.first_lost()
        if first is None:
            return
        if self._probe is not None and first.start == self._probe[0]:
            # RFC 4821 §7.6.2: a lost probe says the packet was too big, not that the path
            # is congested. Resend its data at the proven size, outside loss recovery.
            probe_end = self._probe[1]
            self._probe_lost(now)
            if log.lost_bytes() == probe_end - first.start:
                off = first.start
                while off < probe_end and self._retransmit_range(off, now, probe_end):
                    off += min(self._eff_mss, probe_end - off)
                return
        if not self._in_recovery and seq_ge(self.snd_una, self._recover):
            self._in_recovery = True
            self._recover = self.snd_max
            self._undo_cwnd, self._undo_ssthresh = self.cc.cwnd, self.cc.ssthresh
            self._undo_retrans = 0
            self._undo_ranges.clear()
            self.cc.on_loss(self._flight, now)
            # RFC 6937: from here deliveries clock the sending, ssthresh / RecoverFS of
            # each (no window inflation, RFC 6675 §5 step 4.2, and no silence while the
            # flight drains to ssthresh either). Until an ACK reports one, nothing but
            # the retransmission below.
            self._prr_delivered = 0
            self._prr_out_base = self.stats_counters["bytes_sent"]
            self._recover_fs = max(self._flight, self._eff_mss)
            self.cc.cwnd = max(log.pipe(), self._eff_mss)
            self.stats_counters["fast_retransmits"] += 1
            self.stats_counters["sack_recoveries"] += 1
            # Step 4.3: the first segment deemed lost goes out whatever pipe says.
            first = log.first_lost()
            if first is not None:
                self._retransmit_range(first.start, now, first.end)

    def _prr_on_ack(self, delivered: int) -> None:
        """RFC 6937 §3.1: set cwnd for an ACK in SACK recovery that reported ``delivered``
        bytes (Linux's tcp_cwnd_reduction does the same in segments)."""
        if delivered <= 0:
            return
        self._prr_delivered += delivered
        cc = self.cc
        pipe = self._log.pipe()
        prr_out = self.stats_counters["bytes_sent"] - self._prr_out_base
        if pipe > cc.ssthresh:
            # Proportional: ssthresh / RecoverFS of what has been delivered (rounded up).
            sndcnt = -(-self._prr_delivered * cc.ssthresh // self._recover_fs) - prr_out
        else:
            # Slow start reduction bound: back towards ssthresh, no faster than slow start.
            bound = max(self._prr_delivered - prr_out, delivered) + self._eff_mss
            sndcnt = min(cc.ssthresh - pipe, bound)
        cc.cwnd = max(pipe + max(sndcnt, 0), self._eff_mss)

    def _sack_send(self, now: float) -> None:
        """RFC 6675 §5 step (C): while cwnd - pipe >= 1 SMSS, send what NextSeg() picks."""
        mss = self._eff_mss
        while (
            self.cc.cwnd - self._log.pipe() >= mss
            and self._may_send(mss, now)
            and self._next_segment(now)
        ):
            pass
        if self._pto_deadline is None and self._rack_deadline is None:
            # Unlike RFC 8985 §7.2, probe in recovery too: with a small window, a lost
            # retransmission leaves nothing later in flight whose delivery would let RACK
            # see it, and only the RTO (200 RTTs on a 1 ms path) would otherwise repair it.
            self._arm_tlp(now)

    def _may_send(self, size: int, now: float) -> bool:
        """Pacing: a token bucket filled at gain x cwnd / SRTT; False (with the refill time
        armed as a timer) when a ``size``-byte segment must wait."""
        srtt = self.rtt.srtt
        if not self.config.pacing or not srtt:
            return True
        gain = 2.0 if self.cc.cwnd < self.cc.ssthresh else 1.2
        rate = gain * self.cc.cwnd / srtt
        burst = max(2 * self._eff_mss, rate * 0.001)
        self._pace_credit = min(burst, self._pace_credit + (now - self._pace_time) * rate)
        self._pace_time = now
        if self._pace_credit >= size or self._pace_credit >= burst:
            self._pace_credit -= size
            return True
        if self._pace_deadline is None:
            # At least 100 µs: a wait shorter than the clock's resolution would spin.
            self._pace_deadline = now + max((size - self._pace_credit) / rate, 1e-4)
        return False

    def _next_segment(self, now: float) -> bool:
        """RFC 6675 §4 NextSeg() with RACK's notion of lost; sends it and returns True.

        Rule 1: the lowest segment deemed lost (a lost retransmission included, which
        RACK finds and DupThresh cannot). Rule 2: new data the peer's window allows.
        (Rule 3's speculative retransmission is left to RACK's reordering timer.)
        """
        lost = self._log.first_lost()
        if lost is not None:
            return self._retransmit_range(lost.start, now, lost.end)
        una = self._stream_offset(self.snd_una)
        sent = self._stream_offset(self.snd_max)
        buf_end = self._sendbuf.end + (1 if self._fin_queued else 0)
        room = self.snd_wnd - (sent - una)
        if sent < buf_end and room > 0:
            size = min(self._eff_mss, self._sendbuf.end - sent, room)
            if size > 0 or sent == self._sendbuf.end:
                flags = ACK
                if sent + size == self._sendbuf.end:
                    flags |= PSH | (FIN if self._fin_queued else 0)
                self._transmit(flags, self.snd_max, self._sendbuf.get(sent, size), now)
                return True
        return False

    def _retransmit_range(self, off: int, now: float, end: int | None = None) -> bool:
        """Send again the data from stream offset ``off``, up to one segment (or ``end``),
        stopping at the next SACKed range; the FIN rides along when the data ends there."""
        buf = self._sendbuf
        sent_end = self._sent_end
        limit = self._sb.next_sacked(off)
        if end is not None:
            limit = end if limit is None else min(limit, end)
        # Only data sent before: a resend never carries bytes beyond SND.MAX, whatever a
        # peer's SACK blocks or window made of the log (new data goes by _transmit).
        size = min(self._eff_mss, sent_end - off, (limit - off) if limit is not None else 1 << 62)
        seq = seq_add(self.iss, 1 + off)
        if size > 0:
            flags = ACK
            if off + size == buf.end:
                flags |= PSH
                if self._fin_queued and seq_gt(self.snd_max, self._fin_seq):
                    flags |= FIN
            seg = self._segment(flags, seq, buf.get(off, size))
        elif self._fin_queued and off == buf.end and seq_gt(self.snd_max, self._fin_seq):
            seg = self._segment(ACK | FIN, seq)
        else:
            return False
        self._log.record(off, off + size, now)
        self._retx_tsval = self._tsval()
        if self._undo_cwnd is not None and self._in_recovery:
            # Counted for RFC 3708 while the recovery lasts (a probe sent after it is not
            # one of its retransmissions, and would grow the record without bound).
            self._undo_retrans += 1
            self._undo_ranges[off] = self._undo_ranges.get(off, 0) + 1
        self._rtt_seq = None
        self.stats_counters["retransmits"] += 1
        self._emit(seg, now)
        if self._rto_deadline is None:
            self._rto_deadline = now + self.rtt.rto
        return True

    def _retransmit_una(self, now: float) -> None:
        """Send the first unacknowledged segment again without moving SND.NXT."""
        seq = self.snd_una
        off = self._stream_offset(seq)
        size = min(self._eff_mss, self._sent_end - off)
        if size > 0:
            flags = ACK
            if off + size == self._sendbuf.end:
                flags |= PSH
                if self._fin_queued and seq_gt(self.snd_max, self._fin_seq):
                    flags |= FIN  # the FIN went out with this data originally
            seg = self._segment(flags, seq, self._sendbuf.get(off, size))
        elif self._fin_queued and seq == self._fin_seq:
            seg = self._segment(ACK | FIN, seq)
        else:
            return
        self._rtt_seq = None
        self.stats_counters["retransmits"] += 1
        self._emit(seg, now)
        self._rto_deadline = now + self.rtt.rto

    def _receive_text(self, seg: Segment, now: float) -> None:
        """Seventh and eighth steps: queue the data, then the FIN, in sequence order."""
        if (
            self._discard_input
            and seg.payload
            and seq_gt(seq_add(seg.seq, len(seg.payload)), self.rcv_nxt)
        ):
            # New data for an application that closed: nobody will read it. Reset, so
            # the sender's writes fail rather than vanish (RFC 1122 §4.2.2.13; Linux too).
            self._emit(Segment(self.local_port, self.remote_port, self.snd_max, 0, RST, 0), now)
            self._enter_closed(None)
            return
        payload = seg.payload
        seq = seg.seq
        fin = bool(seg.flags & FIN)
        # Trim what we already have (§3.10.7.4: "already received" portion).
        early = seq_diff(self.rcv_nxt, seq)
        if early > 0:
            dup = min(early, len(payload))
            self.stats_counters["duplicate_bytes_received"] += dup
            if dup:
                self._dsack = (seq, seq_add(seq, dup))  # RFC 2883: report the duplicate
            payload = payload[early:]
            seq = self.rcv_nxt
            if early > len(seg.payload):
                fin = False  # the FIN itself was already processed
            self._ack_now = True
        # Trim what lies beyond the window; a FIN beyond it waits for a retransmission.
        room = seq_diff(self._rcv_adv, seq)
        if len(payload) > room:
            payload = payload[: max(room, 0)]
            fin = False
        if not payload and not fin:
            return
        offset = self._rcv_off + seq_diff(seq, self.rcv_nxt)
        if offset > self._rcv_off:
            # Out of order: hold it and send a duplicate ACK at once (RFC 5681 §4.2).
            self.stats_counters["out_of_order_segments"] += 1
            self._ack_now = True
            if payload:
                kept = self._reassembly.add(
                    offset,
                    payload,
                    self.config.receive_buffer - len(self._held),
                    self.config.max_reassembly_pieces,
                )
                if kept == DROPPED:
                    # No room (the per-piece charge or the piece cap): drop it, as Linux
                    # drops what its receive buffer cannot take; it was not SACKed, so the
                    # sender will send it again. The FIN, if any, comes again with it.
                    self.stats_counters["reassembly_dropped"] += 1
                    return
                if not kept:
                    self._dsack = (seq, seq_add(seq, len(payload)))  # all of it held already
                self._note_ooo_arrival(offset)
            if fin:
                self._fin_off = offset + len(payload)
            return
        filled_hole = len(self._reassembly) > 0
        if payload:
            more = self._reassembly.pop_from(offset + len(payload)) if filled_hole else b""
            self._accept_in_order(payload + more if more else payload)
            if filled_hole:
                self._ack_now = True  # RFC 5681 §4.2: ACK at once when a gap is filled
            else:
                self._schedule_ack(len(payload), now)
        if fin or (self._fin_off is not None and self._fin_off == self._rcv_off):
            self._receive_fin(now)

    def _note_ooo_arrival(self, offset: int) -> None:
        """Remember an out-of-order arrival for the SACK blocks (RFC 2018 §4): it goes first,
        and earlier arrivals now in the same run (or beyond the five kept) drop out."""
        run = self._reassembly.run_at(offset)
        recent = [offset]
        for off in self._sack_recent:
            if len(recent) == _SACK_RECENT:
                break
            if run is None or not run[0] <= off < run[1]:
                recent.append(off)
        self._sack_recent = recent

    def _accept_in_order(self, data: bytes) -> None:
        n = len(data)
        self.rcv_nxt = seq_add(self.rcv_nxt, n)
        self._rcv_off += n
        self.stats_counters["bytes_received"] += n
        if self._reading and not self._discard_input:
            self._tune_receive_space(n)
        if self._discard_input:
            return
        if not self._reading:
            self._held += data
        elif not self._batch:
            self._events.append(DataReceived(data))
        else:
            events = self._events
            if self._rx_event is None or not events or events[-1] is not self._rx_event:
                self._end_batch()
                self._rx_event = DataReceived(b"")
                events.append(self._rx_event)
            self._rx_chunks.append(data)

    def _tune_receive_space(self, delivered: int) -> None:
        """Receive-buffer auto-tuning (the idea of Linux's tcp_rcv_space_adjust).

        Once per round trip, let the window grow to twice what the application consumed
        in the last one, up to ``Config.receive_buffer``: a fast reader on a long path gets
        the window it needs, while a slow one (or loopback, where a round trip is short)
        never has megabytes in flight that would only overflow socket buffers.

        A sender in slow start doubles its rate every round trip, and the window offered
        now is used a round later: twice the last round would hold it back to ~1.6x per
        round. So when consumption grew, the window grows by that ratio again, at most
        twice (Linux extrapolates the same way, by up to 3x): four times a doubling round
        keeps ahead of the sender, yet a noisy round on a short path adds little.
        """
        self._drs_bytes += delivered
        rtt = self._rcv_rtt or self.rtt.srtt or 0.1
        if self._now - self._drs_start < rtt:
            return
        copied = self._drs_bytes
        wanted = 2 * copied
        last = self._drs_last
        if last and copied > last:
            wanted += wanted * min(copied - last, last) // last
        if wanted > self._rcv_space:
            self._rcv_space = min(wanted, self.config.receive_buffer)
        self._drs_last = copied
        self._drs_bytes = 0
        self._drs_start = self._now

    def _schedule_ack(self, nbytes: int, now: float) -> None:
        """Delayed ACK (RFC 1122 §4.2.3.2, RFC 5681 §4.2): at least every second full segment."""
        self._unacked_bytes += nbytes
        if self.config.delayed_ack <= 0 or self._unacked_bytes >= 2 * self._eff_mss:
            if self._batch:
                self._ack_owed = True  # once, after the train (receive_many)
            else:
                self._ack_now = True
        elif self._delack_deadline is None:
            self._delack_deadline = now + self.config.delayed_ack

    def _receive_fin(self, now: float) -> None:
        """Eighth step: the peer's FIN, in sequence."""
        self.rcv_nxt = seq_add(self.rcv_nxt, 1)
        self._fin_off = None
        self._ack_now = True
        if not self._discard_input:
            if self._held:
                self._eof_pending = True
            else:
                self._events.append(EofReceived())
        st = self.state
        if st is S.ESTABLISHED:
            self._set_state(S.CLOSE_WAIT)
        elif st is S.FIN_WAIT_1:
            if seq_gt(self.snd_una, self._fin_seq):
                self._enter_time_wait(now)
            else:
                self._set_state(S.CLOSING)  # simultaneous close (§3.6, Figure 13)
        elif st is S.FIN_WAIT_2:
            self._enter_time_wait(now)

    # ------------------------------------------------------------------ sending

    def _output(self, now: float) -> None:
        """Send what the windows allow, then any ACK still owed."""
        if self.state in _SENDS_DATA:
            if self._in_recovery and self.sack_ok:
                self._sack_send(now)
            else:
                self._send_data(now)
        if self._ack_now and self.state in _ACKS:
            self._emit(self._segment(ACK, self._ack_seq), now)

    def _send_data(self, now: float, override_sws: bool = False) -> None:
        if not self._fin_queued and self._sendbuf.end == self._stream_offset(self.snd_nxt):
            self._note_cwnd_use()  # the application, not cwnd, limits this window
            return  # nothing to send (most ACKs of a request/response exchange)
        self._burst = None  # a run of segments starts: _segment may reuse what they share
        self._bursting = True
        sent = self.stats_counters["segments_sent"]
        try:
            self._send_run(now, override_sws)
        finally:
            self._bursting = False
            self._burst = None
        self._note_cwnd_use()
        if self.stats_counters["segments_sent"] != sent:
            self._arm_tlp(now)

    def _send_run(self, now: float, override_sws: bool) -> None:
        buf = self._sendbuf
        mss = self._eff_mss - (self._sack_option_len() if self.sack_ok else 0)
        sb = self._sb
        while True:
            off = self._stream_offset(self.snd_nxt)
            unsent = buf.end - off
            run = unsent  # contiguous bytes this segment may take
            if sb and seq_lt(self.snd_nxt, self.snd_max):
                # Go-back-N after a timeout passes over what the peer already SACKed.
                skip = sb.skip_sacked(off)
                if skip > off:
                    self.snd_nxt = seq_min(seq_add(self.iss, 1 + skip), self.snd_max)
                    continue
                limit = sb.next_sacked(off)
                if limit is not None:
                    run = min(unsent, limit - off)
            if unsent > 0 and self._pmtu_high > self._pmtu_low and self._maybe_probe(off, now):
                continue
            cwnd = self.cc.cwnd
            if 0 < self._dupacks < 3 and not self._in_recovery:
                # RFC 3042 limited transmit: each of the first two duplicate ACKs lets one
                # new segment out, so a small window still produces three duplicates.
                cwnd += self._dupacks * mss
            wnd = min(self.snd_wnd, cwnd)
            usable = wnd - seq_diff(self.snd_nxt, self.snd_una)
            if unsent > 0:
                size = min(run, mss, usable)
                if size <= 0:
                    break
                if size < run and size < mss and size < self.max_snd_wnd // 2 and not override_sws:
                    break  # sender-side silly window avoidance (RFC 1122 §4.2.3.4)
                if not self.nodelay and size < mss and self.snd_nxt != self.snd_una:
                    break  # Nagle (RFC 896): one small segment outstanding at a time
                if not self._may_send(size, now):
                    break
                if size == mss < unsent and self.snd_nxt == self.snd_max and not sb:
                    # New data in full segments, more waiting behind them: send as many as
                    # the window allows in one go.
                    count = min((unsent - 1) // mss, usable // mss)
                    if not self.config.pacing and self._pmtu_high <= self._pmtu_low:
                        self._transmit_new(off, mss, count, now)
                        continue
                flags = ACK
                last = size == unsent
                if last:
                    flags |= PSH
                    if self._fin_queued:
                        flags |= FIN
                self._transmit(flags, self.snd_nxt, buf.get(off, size), now)
            elif self._fin_queued and self.snd_nxt == self._fin_seq and usable > 0:
                # The FIN takes a sequence number, so it waits for window like a data byte
                # (a shut window is probed by the persist timer instead).
                self._transmit(ACK | FIN, self.snd_nxt, b"", now)
            else:
                break
        # Persist timer (§3.8.6.1): data waits and nothing is outstanding, so no ACK will
        # come to open the window. With a shut window it sends probes; with a window too
        # small to use it is the SWS override timer.
        if (
            self.snd_nxt == self.snd_una
            and self._persist_deadline is None
            and (buf.end > self._stream_offset(self.snd_nxt) or self._fin_unsent)
        ):
            self._persist_deadline = now + self.rtt.rto

    def _note_cwnd_use(self) -> None:
        """After sending: record whether cwnd bounded the flight (RFC 7661 §4.1's
        "validated" window), per window of data, keeping the strongest signal of it."""
        flight = self._flight
        limited = flight + self._eff_mss > self.cc.cwnd
        if (
            limited
            or seq_ge(self.snd_una, self._cwnd_usage_end)
            or (not self._cwnd_limited and flight > self._max_flight)
        ):
            self._cwnd_limited = limited
            self._max_flight = flight
            self._cwnd_usage_end = self.snd_max

    def _maybe_probe(self, off: int, now: float) -> bool:
        """Send a path MTU probe (RFC 8899 §5.3 search, a binary one here) when the time is
        right: established, not recovering, nothing resent, a probe's worth of data waiting
        and window for it. Returns True when one went out."""
        if (
            self._probe is not None
            or now < self._probe_after
            or self._in_recovery
            or self.snd_nxt != self.snd_max
            or self.state not in (S.ESTABLISHED, S.CLOSE_WAIT)
            or self.peer_mss <= self._send_cap
        ):
            return False
        size = min((self._pmtu_low + self._pmtu_high + 1) // 2, self.peer_mss)
        if size - self._pmtu_low < 32:
            self._pmtu_high = self._pmtu_low  # close enough: the search is over
            return False
        data = size - (_TIMESTAMPS_LEN if self.ts_enabled else 0) - self._sack_option_len()
        room = min(self.snd_wnd, self.cc.cwnd) - seq_diff(self.snd_nxt, self.snd_una)
        if self._sendbuf.end - off < data or room < data:
            return False
        self._probe = (off, off + data, size)
        self.stats_counters["pmtu_probes"] += 1
        last = off + data == self._sendbuf.end
        self._transmit(ACK | (PSH if last else 0), self.snd_nxt, self._sendbuf.get(off, data), now)
        return True

    def _probe_acknowledged(self, upto: int) -> None:
        """Everything up to stream offset ``upto`` arrived: a probe below it proved its size."""
        if self._probe is not None and self._probe[1] <= upto:
            size = self._probe[2]
            self._probe = None
            self._pmtu_low = self._send_cap = size
            self.cc.mss = self._eff_mss

    def _probe_lost(self, now: float) -> None:
        """The probe did not make it: the path takes less (RFC 8899 §5.2 PROBE_FAILED)."""
        assert self._probe is not None
        self._pmtu_high = self._probe[2] - 1
        self._probe = None
        self._probe_after = now + (self.rtt.srtt or 0.1)
        self.stats_counters["pmtu_probe_failures"] += 1

    def _transmit(self, flags: int, seq: int, payload: bytes, now: float) -> None:
        seg = self._segment(flags, seq, payload)
        end = seq_add(seq, seg.seg_len)
        if seq_lt(seq, self.snd_max):
            self.stats_counters["retransmits"] += 1
            self._retx_tsval = self._tsval()
        elif self._rtt_seq is None and self._retries == 0:
            self._rtt_seq, self._rtt_time = seq, now
        if self.snd_una == self.snd_max:
            self._una_since = now
        self.snd_nxt = end
        if seq_gt(end, self.snd_max):
            self.snd_max = end
        if payload:
            off = self._stream_offset(seq)
            self._log.record(off, off + len(payload), now)
        self._emit(seg, now)
        if self._rto_deadline is None:
            self._rto_deadline = now + self.rtt.rto
        if not self._bursting:
            self._arm_tlp(now)  # a run arms it once, at its end

    def _transmit_new(self, off: int, size: int, count: int, now: float) -> None:
        """_transmit() for ``count`` new full segments of plain data from stream offset
        ``off``: one pass of the bookkeeping, the same segments."""
        seq = self.snd_nxt
        if self._rtt_seq is None and self._retries == 0:
            self._rtt_seq, self._rtt_time = seq, now
        if self.snd_una == self.snd_max:
            self._una_since = now
        get = self._sendbuf.get
        segment = self._segment
        out = self._out
        for i in range(count):
            out.append(segment(ACK, (seq + i * size) & _MASK, get(off + i * size, size)))
        self._log.record_run(off, size, count, now)
        self.snd_nxt = self.snd_max = (seq + count * size) & _MASK
        self._ack_sent(self.rcv_nxt)  # as _emit() does for each: every one carries our ACK
        counters = self.stats_counters
        counters["segments_sent"] += count
        counters["bytes_sent"] += count * size
        if self._rto_deadline is None:
            self._rto_deadline = now + self.rtt.rto
        # (Only _send_data runs this, and arms the tail loss probe after the whole run.)

    def _arm_tlp(self, now: float) -> None:
        """RFC 8985 §7.2: schedule a tail loss probe about two round trips out.

        If the last segments of a flight are lost, no duplicate ACK or SACK will ever
        announce it; the probe draws an ACK (with SACK information) that lets recovery
        start long before the retransmission timeout.
        """
        srtt = self.rtt.srtt
        if not self.sack_ok or srtt is None or self._tlp_out >= _MAX_TLPS or self._retries:
            self._pto_deadline = None
            return
        if self.snd_una == self.snd_max:
            self._pto_deadline = None
            return
        pto = 2 * srtt
        if self._flight <= self._eff_mss:
            pto += _WC_DELACK  # a lone segment may be waiting on a delayed ACK
        pto = max(pto, 0.01)
        deadline = now + pto
        if self._rto_deadline is not None and deadline > self._rto_deadline:
            # §7.2: if the RTO would fire first, the probe goes out at the RTO's time in its
            # place (and restarts it, §7.3). On a long path the RTO floor is below 2 SRTT:
            # without this, a lost ACK (one per train of a small window) or a lost
            # retransmission always ends in a timeout and a one-segment window.
            deadline = self._rto_deadline
        self._pto_deadline = deadline

    def _send_tlp(self, now: float) -> None:
        """RFC 8985 §7.3: send one new segment if allowed, else the last one again."""
        self._pto_deadline = None
        if self.state not in _SENDS_DATA or self.snd_una == self.snd_max:
            return
        self._tlp_out += 1
        self.stats_counters["tail_loss_probes"] += 1
        sent = self._stream_offset(self.snd_max)
        room = self.snd_wnd - self._flight
        if sent < self._sendbuf.end and room > 0:
            size = min(self._eff_mss, self._sendbuf.end - sent, room)
            flags = ACK | (PSH if sent + size == self._sendbuf.end else 0)
            self._transmit(flags, self.snd_max, self._sendbuf.get(sent, size), now)
        else:
            # The highest segment the peer has not SACKed, again: its ACK (or SACK, D-SACK)
            # says what the tail needs.
            unsacked = self._log.highest_unsacked()
            if unsacked is not None:
                self._retransmit_range(unsacked.start, now, unsacked.end)
            else:
                # Everything sent was SACKed (or only the FIN is outstanding): the last
                # segment sent, measured back from SND.MAX, never from the buffer's end.
                last = max(self._sent_end - self._eff_mss, self._stream_offset(self.snd_una))
                self._retransmit_range(last, now)
        self._rto_deadline = now + self.rtt.rto  # §7.3: restart the RTO

    def _segment(self, flags: int, seq: int, payload: bytes = b"") -> Segment:
        burst = self._burst
        if burst is not None and self._dsack is None:
            # The same instant and receive state as the run's previous segment: the same
            # window field and options (segments are never changed once built).
            window, options = burst
        else:
            options = None
            blocks = self._sack_blocks() if self.sack_ok else ()
            dsack = self._dsack is not None
            if self.ts_enabled or blocks:
                # RFC 7323 §3.2: once agreed, every segment carries a timestamp.
                ts = (self._tsval(), self.ts_recent) if self.ts_enabled else None
                options = Options(timestamps=ts, sack_blocks=blocks)
                self._dsack = None
            window = self._window_field()
            if self._bursting and not dsack:
                self._burst = (window, options)  # a D-SACK block is reported once only
        return Segment(
            self.local_port, self.remote_port, seq, self.rcv_nxt, flags, window, options, payload
        )

    def _sack_blocks(self) -> tuple[tuple[int, int], ...]:
        """SACK blocks for the next segment (RFC 2018 §4, RFC 2883 §4).

        A D-SACK block comes first when a duplicate arrived; then the run holding the
        newest out-of-order data, then the runs of the arrivals before it, most recent
        first (so each run is reported in several ACKs, in case some are lost); any room
        left goes to the highest runs. Three fit beside timestamps in the 40 option bytes,
        four without. A few lookups, O(log n) each, whatever the number of runs.
        """
        reassembly = self._reassembly
        if not reassembly and self._dsack is None:
            return ()
        limit = 3 if self.ts_enabled else 4
        blocks: list[tuple[int, int]] = []
        if self._dsack is not None:
            blocks.append(self._dsack)
        if reassembly:
            runs: list[tuple[int, int]] = []
            want = limit - len(blocks)
            for off in self._sack_recent:
                run = reassembly.run_at(off)  # None once delivered
                if run is not None and run not in runs:
                    runs.append(run)
                    if len(runs) == want:
                        break
            if len(runs) < want:
                for run in reassembly.highest_runs(want):
                    if run not in runs:
                        runs.append(run)
                        if len(runs) == want:
                            break
            base_off, base_seq = self._rcv_off, self.rcv_nxt
            for start, end in runs:
                blocks.append(
                    (seq_add(base_seq, start - base_off), seq_add(base_seq, end - base_off))
                )
        return tuple(blocks)

    def _sack_option_len(self) -> int:
        """Bytes the SACK blocks add to a segment (NOP, NOP, kind, length, 8 per block)."""
        n = (1 if self._dsack is not None else 0) + self._reassembly.run_count  # O(1)
        n = min(n, 3 if self.ts_enabled else 4)
        return 4 + 8 * n if n else 0

    def _tsval(self) -> int:
        """Our timestamp clock: milliseconds plus a per-connection offset (RFC 7323 §5.4).

        Never goes backwards (RFC 7323 §5.4 wants it monotonic): a caller may hand us a
        time a little behind the previous one (an event loop runs a timer slightly early
        and the endpoint passes its deadline), and one older TSval would make the peer
        drop everything after it as PAWS-old until our clock caught up.
        """
        ts = (int(self._now * 1000) + self._ts_offset) & _MASK
        last = self._ts_last
        if last is not None and seq_lt(ts, last):
            return last
        self._ts_last = ts
        return ts

    def _emit(self, seg: Segment, now: float) -> None:
        if self._amp is not None and not self._amp.spend(
            sent_size(seg) + (self._wire_syn_extra if seg.flags & SYN else self._wire_extra)
        ):
            # Beyond three times what the unproven address sent us (RFC 9000 §8.1): not
            # sent. A retransmitted SYN from a real peer earns the next SYN,ACK.
            self.stats_counters["amplification_limited"] += 1
            return
        if seg.flags & ACK:
            self._ack_sent(seg.ack)
        self.stats_counters["segments_sent"] += 1
        self.stats_counters["bytes_sent"] += len(seg.payload)
        self._out.append(seg)

    def _ack_sent(self, ack: int) -> None:
        """A segment carrying ACK went out: it settles what we owed (RFC 1122 §4.2.3.2)."""
        self._last_ack_sent = ack
        self._ack_now = self._ack_owed = False
        self._delack_deadline = None
        self._unacked_bytes = 0

    # ------------------------------------------------------------------ windows

    def _receive_window(self) -> int:
        """Bytes of window to offer now, with receiver-side SWS avoidance (RFC 1122 §4.2.3.3).

        The right edge never moves left (§3.8.6.2.1); it moves right only in steps of at
        least min(buffer/2, MSS).
        """
        limit = _MAX_WINDOW_FIELD << self.rcv_wscale
        space = self._rcv_space
        free = min(space - len(self._held), limit)
        reassembly = self._reassembly
        if reassembly:
            # Out-of-order pieces are charged their bookkeeping on top of their bytes
            # (buffers.PIECE_OVERHEAD): offer no more than the buffer can still hold if the
            # window fills. Never below the edge already offered (the return below and
            # _window_field keep it); arrivals that no longer fit are dropped, as Linux does.
            free = min(
                free,
                self.config.receive_buffer - len(self._held) - reassembly.charge + reassembly.size,
            )
        current = max(seq_diff(self._rcv_adv, self.rcv_nxt), 0)
        if free - current < min(space // 2, self.mss) and free != current:
            return min(current, limit)
        return max(free, 0)

    def _window_field(self, syn: bool = False) -> int:
        """The window field of an outgoing segment; records the right edge it advertises.

        Scaled by RFC 7323 except in SYNs. Scaling rounds down, so when the right edge must
        hold still the field rounds up instead (as Linux does): the edge never moves left.
        """
        shift = 0 if syn else self.rcv_wscale
        current = max(seq_diff(self._rcv_adv, self.rcv_nxt), 0)
        field = min(max(self._receive_window() >> shift, -(-current >> shift)), _MAX_WINDOW_FIELD)
        self._rcv_adv = seq_add(self.rcv_nxt, max(field << shift, current))
        return field

    def _window_update_due(self) -> bool:
        current = max(seq_diff(self._rcv_adv, self.rcv_nxt), 0)
        return self._receive_window() > current

    # ------------------------------------------------------------------ helpers

    @property
    def _eff_mss(self) -> int:
        """Data bytes per full segment: the smaller MSS, less the options every segment
        carries (DESIGN §8: options shrink the data, the datagram stays within budget)."""
        return min(self._send_cap, self.peer_mss) - (_TIMESTAMPS_LEN if self.ts_enabled else 0)

    @property
    def _flight(self) -> int:
        return seq_diff(self.snd_max, self.snd_una)

    @property
    def _ack_seq(self) -> int:
        """Sequence number for a segment without data: SND.MAX, kept inside the peer's window.

        After a timeout SND.NXT rewinds to SND.UNA for go-back-N, so it may lie below the
        peer's RCV.NXT; an ACK carrying it would be unacceptable there (§3.10.7.4), answered
        by another ACK, and two rewound peers would trade ACKs forever without either one
        processing the other's acknowledgment. BSD sends SND.MAX for this reason.
        """
        right_edge = seq_add(self.snd_una, self.snd_wnd)
        return self.snd_max if seq_le(self.snd_max, right_edge) else right_edge

    @property
    def _sent_end(self) -> int:
        """Stream offset just past the last data byte ever sent (SND.MAX, less the FIN)."""
        return min(self._stream_offset(self.snd_max), self._sendbuf.end)

    @property
    def _fin_seq(self) -> int:
        """Sequence number of our FIN: just past the last data byte."""
        return seq_add(self.iss, 1 + self._sendbuf.end)

    @property
    def _fin_unsent(self) -> bool:
        return self._fin_queued and seq_le(self.snd_nxt, self._fin_seq)

    def _stream_offset(self, seq: int) -> int:
        """Stream offset of sequence number ``seq`` (data starts at ISS + 1)."""
        # seq_diff(seq, ISS + 1 + start) + start, inline: this runs several times a segment.
        start = self._sendbuf.start
        return start + ((seq - self.iss - 1 - start + _HALF) & _MASK) - _HALF

    def _set_state(self, new: State) -> None:
        assert new in TRANSITIONS[self.state], f"illegal {self.state.value} -> {new.value}"
        self.state = new
        self.state_history.append(new)

    def _enter_time_wait(self, now: float) -> None:
        """§3.10.7.4: TIME-WAIT for 2 MSL; the application is told it is closed now."""
        self._set_state(S.TIME_WAIT)
        self._rto_deadline = None
        self._persist_deadline = None
        self._keepalive_deadline = self._pto_deadline = self._rack_deadline = None
        self._pace_deadline = None
        self._close_deadline = now + 2 * self.config.msl
        self._report_closed(None)

    def _enter_closed(self, error: BaseException | None) -> None:
        if self.state is not S.CLOSED:
            self._set_state(S.CLOSED)
        self._rto_deadline = self._delack_deadline = None
        self._persist_deadline = self._close_deadline = None
        self._keepalive_deadline = self._pto_deadline = self._rack_deadline = None
        self._pace_deadline = None
        self._ack_now = False
        self._report_closed(error)

    def _report_closed(self, error: BaseException | None) -> None:
        if not self._closed_reported:
            self._closed_reported = True
            if not self._discard_input:
                # Closing ends the pause: nothing the peer sent in order is lost.
                if self._held:
                    self._events.append(DataReceived(bytes(self._held)))
                    self._held.clear()
                if self._eof_pending:
                    self._eof_pending = False
                    self._events.append(EofReceived())
            self._events.append(ConnectionClosed(error))


def _wscale_for(buffer: int) -> int:
    """The smallest shift that lets the 16-bit window field cover ``buffer`` bytes."""
    shift = 0
    while (_MAX_WINDOW_FIELD << shift) < buffer and shift < _MAX_WSCALE:
        shift += 1
    return shift
