"""The transmission control block (RFC 9293 §3.3.1): one connection's variables.

Names follow the RFCs (SND.UNA is ``snd_una``, RCV.NXT ``rcv_nxt``, ...). The parts of a
connection (:mod:`.receiver`, :mod:`.sender`, :mod:`.pmtu`, :mod:`.recovery`,
:mod:`.arrival`, and :mod:`.connection` on top) are classes stacked on this one that add
behaviour only; every variable they share is created here, in ``__slots__``. The timers
are one :class:`~udptcp.core.timers.Timers` value, the state moves only through
:meth:`ControlBlock._transition` and the table of :mod:`udptcp.core.state`.
"""

from __future__ import annotations

import functools

from .amplification import AmplificationBudget
from .buffers import ReassemblyQueue, SendBuffer
from .config import Config
from .congestion import CongestionControl, create
from .events import ConnectionClosed, DataReceived, EofReceived, Event
from .pacing import Pacer
from .rack import SentLog
from .rtt import RttEstimator
from .sack import Scoreboard
from .segment import Options, Segment
from .seq import seq_diff, seq_le
from .state import Cause, State, next_state
from .timers import KEEPALIVE_GRAIN, Timers, keepalive_wait

S = State
C = Cause

_MASK = 0xFFFFFFFF
_HALF = 0x80000000
# RFC 9293 §3.7.1: the MSS to assume when the peer sends no MSS option (IPv4).
_DEFAULT_PEER_MSS = 536
# The window field is 16 bits; RFC 7323 §2.3 caps the scale shift at 14.
_MAX_WINDOW_FIELD = 0xFFFF
_MAX_WSCALE = 14
# NOP, NOP, timestamps: what RFC 7323 Appendix A lays out on every segment once agreed.
_TIMESTAMPS_LEN = 12
# One ACK per this interval for unacceptable segments (out of window, PAWS-old, acknowledging
# unsent data), as Linux's net.ipv4.tcp_invalid_ratelimit (500 ms).
_INVALID_ACK_INTERVAL = 0.5
# Receive-buffer auto-tuning starts from this much window and grows towards
# Config.receive_buffer as the application proves it consumes more per round trip.
_INITIAL_RCV_SPACE = 128 * 1024


#: A new connection's counters, all zero (copied: building the dict afresh for every
#: connection costs five times as much).
_ZERO_COUNTERS: dict[str, int] = dict.fromkeys(
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
        "reassembly_pruned",
        "beyond_fin_dropped",
        "persist_timeouts",
        "icmp_rejected",
    ),
    0,
)


class ControlBlock:
    """The variables of one connection and the helpers every part of it uses."""

    cc: CongestionControl

    __slots__ = (
        "config",
        "timers",
        "state",
        "state_history",
        "transitions",
        "local_port",
        "remote_port",
        "passive",
        "iss",
        "snd_una",
        "snd_nxt",
        "snd_max",
        "snd_wnd",
        "snd_wl1",
        "snd_wl2",
        "max_snd_wnd",
        "irs",
        "rcv_nxt",
        "_rcv_adv",
        "mss",
        "_base_mss",
        "_send_cap",
        "_pmtu_low",
        "_pmtu_high",
        "_probe",
        "_probe_after",
        "peer_mss",
        "_wscale_offer",
        "wscale_ok",
        "rcv_wscale",
        "snd_wscale",
        "sack_ok",
        "_sb",
        "_log",
        "_pacer",
        "_undo_cwnd",
        "_undo_ssthresh",
        "_undo_retrans",
        "_undo_ranges",
        "_prr_delivered",
        "_prr_out_base",
        "_recover_fs",
        "_cwnd_limited",
        "_max_flight",
        "_cwnd_usage_end",
        "_reo_mult",
        "_sack_recent",
        "_dsack",
        "ts_enabled",
        "ts_recent",
        "_ts_offset",
        "_retx_tsval",
        "_ts_last",
        "_last_ack_sent",
        "_now",
        "nodelay",
        "_more",
        "tail_held",
        "_sendbuf",
        "_fin_queued",
        "_reassembly",
        "_rcv_off",
        "_held",
        "_rcv_space",
        "_rcv_clamp",
        "_drs_bytes",
        "_drs_start",
        "_drs_last",
        "_rcv_rtt",
        "_reading",
        "_eof_pending",
        "_fin_off",
        "_discard_input",
        "rtt",
        "cc",
        "_dupacks",
        "_inflation_left",
        "_in_recovery",
        "_recover",
        "_rtt_seq",
        "_rtt_time",
        "_retries",
        "_handshake_lost",
        "_syn_sent_at",
        "_amp",
        "_wire_syn_extra",
        "_wire_extra",
        "_una_since",
        "_tlp_out",
        "_persist_backoff",
        "_probing_since",
        "_keepalive_unanswered",
        "keepalive",
        "keepalive_idle",
        "keepalive_interval",
        "keepalive_count",
        "_keepalive_wait",
        "_keepalive_grain",
        "_ack_now",
        "_unacked_bytes",
        "_batch",
        "_ack_owed",
        "_rx_event",
        "_rx_chunks",
        "_bursting",
        "_burst",
        "_challenge_window",
        "_challenge_count",
        "_invalid_ack_time",
        "_closed_reported",
        "close_error",
        "_app_closed",
        "soft_error",
        "_silent_rounds",
        "_unreach_round",
        "_unreach_streak",
        "_foreign_rounds",
        "_foreign_round",
        "_out",
        "_events",
        "stats_counters",
    )

    def __init__(
        self,
        config: Config,
        *,
        local_port: int,
        remote_port: int,
        iss: int,
        mss: int,
        passive: bool = False,
    ):
        self.config = config
        #: Every deadline of the connection (retransmission, delayed ACK, persist, ...).
        self.timers = Timers()
        # A listener's connection is born in LISTEN (the endpoint's listener stands for the
        # LISTEN state of Figure 5); every later move goes through _transition.
        initial = State.LISTEN if passive else State.CLOSED
        self.state = initial
        #: Every state entered, in order, starting with the initial one (for tests and tracing).
        self.state_history: list[State] = [initial]
        #: The same entries with the cause of each (``None`` for an active connection's start).
        self.transitions: list[tuple[State, Cause | None]] = [
            (initial, Cause.PASSIVE_OPEN if passive else None)
        ]
        self.local_port = local_port
        self.remote_port = remote_port
        self.passive = passive

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
        self._pacer = Pacer()
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
        # send(more=True) (Linux's MSG_MORE): hold a last, short segment back while data
        # is in flight, until push(); tail_held says one is held (the driver owes a push).
        self._more = False
        self.tail_held = False

        self._sendbuf = SendBuffer()
        self._fin_queued = False
        self._reassembly = ReassemblyQueue()
        self._rcv_off = 0  # stream offset of rcv_nxt (bytes received in order)
        self._held = bytearray()  # in-order data held while reading is paused
        # Receive-buffer auto-tuning (like Linux's tcp_rcv_space_adjust): the buffer in use,
        # and the bytes delivered since the current measurement round began.
        self._rcv_space = min(config.receive_buffer, _INITIAL_RCV_SPACE)
        self._rcv_clamp = config.receive_buffer  # auto-tuning's ceiling (set_window_clamp)
        self._drs_bytes = 0
        self._drs_start = 0.0
        self._drs_last = 0  # bytes delivered in the last complete measurement round
        self._rcv_rtt: float | None = None  # receiver-side RTT from echoed timestamps
        self._reading = True
        self._eof_pending = False  # FIN arrived while data was held
        self._fin_off: int | None = None  # stream offset of an out-of-order FIN
        self._discard_input = False  # set by close(): no more data for the application

        self.rtt = RttEstimator(config.rto_initial, config.rto_min, config.rto_max)
        if not passive:
            # A passive open is built from the peer's SYN and makes its controller from it
            # at once (_take_peer_syn, which an active open reaches later, replacing this
            # one); only SYN-SENT reports a window before that.
            self.cc = create(config.congestion_control, mss, config.initial_window)
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

        self._tlp_out = 0  # probes sent since the last ACK progress (at most _MAX_TLPS)
        self._persist_backoff = 1
        self._probing_since: float | None = None  # first window probe the peer left unanswered
        self._keepalive_unanswered = 0
        self.keepalive = config.keepalive
        self.keepalive_idle = config.keepalive_idle
        self.keepalive_interval = config.keepalive_interval
        self.keepalive_count = config.keepalive_count
        # The silence before the first probe: keepalive_idle plus this connection's share
        # of the spread, rounded up to a grid (timers.keepalive_wait, keepalive_deadline).
        self._keepalive_wait = keepalive_wait(config.keepalive_idle, self.iss)
        self._keepalive_grain = config.keepalive_idle * KEEPALIVE_GRAIN
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
        #: Why the connection reached CLOSED: None after a clean close, else the error the
        #: application was (or would have been) given (for logs and statistics).
        self.close_error: BaseException | None = None
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
        self.stats_counters: dict[str, int] = _ZERO_COUNTERS.copy()

    @property
    def _eff_mss(self) -> int:
        """Data bytes per full segment: the smaller MSS, less the options every segment
        carries (options shrink the data, so the datagram stays within the payload budget:
        docs/architecture.md#wire-format)."""
        cap, peer = self._send_cap, self.peer_mss  # min() inline: asked several times a segment
        return (peer if peer < cap else cap) - (_TIMESTAMPS_LEN if self.ts_enabled else 0)

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
        # seq_add / seq_le written out: asked for every ACK sent.
        right_edge = (self.snd_una + self.snd_wnd) & _MASK
        snd_max = self.snd_max
        d = (snd_max - right_edge) & _MASK
        return snd_max if d == 0 or d >= _HALF else right_edge

    @property
    def _sent_end(self) -> int:
        """Stream offset just past the last data byte ever sent (SND.MAX, less the FIN)."""
        return min(self._stream_offset(self.snd_max), self._sendbuf.end)

    @property
    def _fin_seq(self) -> int:
        """Sequence number of our FIN: just past the last data byte."""
        return (self.iss + 1 + self._sendbuf.end) & _MASK  # seq_add, inline (per segment)

    @property
    def _fin_unsent(self) -> bool:
        return self._fin_queued and seq_le(self.snd_nxt, self._fin_seq)

    def _stream_offset(self, seq: int) -> int:
        """Stream offset of sequence number ``seq`` (data starts at ISS + 1)."""
        # seq_diff(seq, ISS + 1 + start) + start, inline: this runs several times a segment.
        start = self._sendbuf.start
        return start + ((seq - self.iss - 1 - start + _HALF) & _MASK) - _HALF

    def _tsval(self) -> int:
        """Our timestamp clock: milliseconds plus a per-connection offset (RFC 7323 §5.4).

        Never goes backwards (RFC 7323 §5.4 wants it monotonic): a caller may hand us a
        time a little behind the previous one (an event loop runs a timer slightly early
        and the endpoint passes its deadline), and one older TSval would make the peer
        drop everything after it as PAWS-old until our clock caught up.
        """
        ts = (int(self._now * 1000) + self._ts_offset) & _MASK
        last = self._ts_last
        if last is not None and ((ts - last) & _MASK) >= _HALF:  # seq_lt(ts, last)
            return last
        self._ts_last = ts
        return ts

    def _transition(self, cause: Cause) -> State:
        """Move to the state the table (:mod:`udptcp.core.state`) gives for ``cause``; raises
        :class:`IllegalTransition` (in every build) when it gives none."""
        new = next_state(self.state, cause)
        self.state = new
        self.state_history.append(new)
        self.transitions.append((new, cause))
        return new

    def _enter_time_wait(self, now: float, cause: Cause) -> None:
        """§3.10.7.4: TIME-WAIT for 2 MSL; the application is told it is closed now."""
        self._transition(cause)
        self.timers.cancel_all()  # TIME-WAIT keeps only its own timer
        self._restart_time_wait(now)
        self._report_closed(None)

    def _restart_time_wait(self, now: float) -> None:
        """(Re)start TIME-WAIT's 2 MSL timer (§3.10.7.4: again for a retransmitted FIN)."""
        self.timers.close = now + 2 * self.config.msl

    def _enter_closed(self, error: BaseException | None, cause: Cause) -> None:
        if self.state is not S.CLOSED:
            self._transition(cause)
            self.close_error = error
        self.timers.cancel_all()
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


@functools.lru_cache(maxsize=64)  # a few buffer sizes in use; asked once a connection
def _wscale_for(buffer: int) -> int:
    """The smallest shift that lets the 16-bit window field cover ``buffer`` bytes."""
    shift = 0
    while (_MAX_WINDOW_FIELD << shift) < buffer and shift < _MAX_WSCALE:
        shift += 1
    return shift
